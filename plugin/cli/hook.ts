/**
 * `kvm-devices hook NAME`: a Ganeti hook run from the command line, over the
 * daemon's WebSocket. The scripts in hooks/ use it when curl is missing;
 * otherwise they post their environment to the daemon's hook endpoint,
 * which runs the same {@link runHook}.
 *
 * Ganeti runs hooks with the environment reset to PATH plus GANETI_*,
 * stdin /dev/null and cwd /; it shows their output to the operator and, for
 * a pre hook, aborts the operation on a non-zero exit.
 */
import { loadConfig } from '../config';
// The client module alone: loading the daemon side (planner, ajv, pino) would
// add ~100 ms to every call and hook run.
import { RpcClient } from '../rpc/client';
import type { Command } from './commands';
import { runHook } from './hook-run';
import { HOOKS } from './hook-table';

function help(): string {
  const rows = Object.entries(HOOKS).map(([n, h]) => `  ${n.padEnd(22)} ${h.summary}`);
  return `usage: kvm-devices hook NAME

Runs one Ganeti hook: reads the GANETI_* environment, makes its calls to the
daemon and prints the verdict on stdout. The scripts install.sh --hooks puts
in <hooks-dir>/<NAME>.d/kvm-devices have the daemon run the same hook
(POST /hook/NAME on its socket) and run this command when curl is missing.

hooks:
${rows.join('\n')}

When the daemon is unreachable or does not answer within hookTimeoutMs
(default 60 s): instance-add, -modify, -migrate and -failover pre hooks exit 1
(fail closed); instance-start and -reboot pre hooks and all post hooks exit 0
(fail open: they only refuse what QEMU would refuse too). The socket comes from the config file
(/etc/ganeti-kvm-devices/config.json, or GKD_CONFIG).

Exit status: 0 pass, 1 refused, 2 usage error.
`;
}

export const hookCommand: Command = {
  summary: 'run a Ganeti hook (used by the scripts in hooks/)',
  async run(args) {
    const [name, ...rest] = args;
    if (name === '--help' || name === '-h') {
      process.stdout.write(help());
      return 0;
    }
    const def = name === undefined || !Object.hasOwn(HOOKS, name) ? undefined : HOOKS[name];
    if (name === undefined || def === undefined || rest.length > 0) {
      process.stderr.write(`kvm-devices hook: ${name === undefined ? 'NAME is required' : `unknown hook "${name}"`}\n\n${help()}`);
      return 2;
    }
    const r = await runHook(name, def, process.env, {
      config: (env) => loadConfig({ env }),
      // Ganeti gives hooks no timeout of its own (only its 15 min RPC budget): bound every call.
      connect: (config) => RpcClient.connect(config.socket, { connectTimeoutMs: 5000, callTimeoutMs: config.hookTimeoutMs }),
    });
    process.stdout.write(r.out);
    return r.status;
  },
};
