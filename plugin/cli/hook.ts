/**
 * `kvm-devices hook NAME`: the shared entry of the scripts in hooks/.
 *
 * Ganeti runs hooks with the environment reset to PATH plus GANETI_*,
 * stdin /dev/null and cwd /; it shows their output to the operator and, for
 * a pre hook, aborts the operation on a non-zero exit. Policy when the
 * daemon cannot be reached or the environment is unusable: pre hooks fail
 * closed (exit 1: an unchecked start could put devices where a later hotplug
 * or migration breaks), post hooks fail open (exit 0: Ganeti only logs post
 * failures, and cleanup is repeated by the next one).
 */
import { loadConfig, type Config } from '../config';
// The client module alone: loading the daemon side (planner, ajv, pino) would
// add ~100 ms to every call and hook run.
import { RpcCallError, RpcClient } from '../rpc/client';
import type { Command } from './commands';
import { HookEnvError, hookContext } from './hook-env';
import { HOOKS, type HookDef } from './hook-table';

function help(): string {
  const rows = Object.entries(HOOKS).map(([n, h]) => `  ${n.padEnd(22)} ${h.summary}`);
  return `usage: kvm-devices hook NAME

Runs one Ganeti hook: reads the GANETI_* environment, makes one call to the
daemon and prints the verdict on stdout. Installed as
<hooks-dir>/<NAME>.d/kvm-devices by install.sh --hooks.

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
    const def = name === undefined ? undefined : HOOKS[name];
    if (name === undefined || def === undefined || rest.length > 0) {
      process.stderr.write(`kvm-devices hook: ${name === undefined ? 'NAME is required' : `unknown hook "${name}"`}\n\n${help()}`);
      return 2;
    }
    return runHook(name, def, process.env);
  },
};

/** Runs hook `name` against `env`; prints one line and resolves to the exit status. */
export async function runHook(name: string, def: HookDef, env: NodeJS.ProcessEnv): Promise<number> {
  // Daemon trouble (unreachable, timeout, internal error, unreadable environment) refuses a pre hook
  // only where the check guards something the operation cannot take back; a real refusal from the
  // daemon always refuses a pre hook.
  const failClosed = def.phase === 'pre' && def.whenUnsure !== 'pass';
  const say = (ok: boolean, message: string): number => {
    // A failing post hook cannot refuse anything: Ganeti prints it as a warning.
    process.stdout.write(`kvm-devices ${name}: ${ok ? 'ok' : def.phase === 'pre' ? 'refused' : 'warning'}: ${message}\n`);
    return ok ? 0 : 1;
  };
  const ctx = hookContext(env);
  if (def.perInstance && ctx.hypervisor !== undefined && ctx.hypervisor !== 'kvm') {
    return say(true, `${ctx.instance ?? 'instance'} uses hypervisor "${ctx.hypervisor}", nothing to check`);
  }
  let config: Config;
  try {
    config = loadConfig({ env });
  } catch (e) {
    return unreachable(say, failClosed, `cannot read the configuration: ${(e as Error).message}`, def.phase);
  }
  let client: RpcClient;
  try {
    // Ganeti gives hooks no timeout of its own (only its 15 min RPC budget): bound every call.
    client = await RpcClient.connect(config.socket, { connectTimeoutMs: 5000, callTimeoutMs: config.hookTimeoutMs });
  } catch (e) {
    return unreachable(say, failClosed, `daemon unreachable: ${(e as Error).message}`, def.phase);
  }
  try {
    const outcome = await def.run(env, client, config);
    return say(outcome.ok, outcome.message);
  } catch (e) {
    if (e instanceof RpcCallError && !daemonTrouble(e)) return say(def.phase !== 'pre', describe(e));
    if (e instanceof RpcCallError) return unreachable(say, failClosed, describe(e), def.phase);
    if (e instanceof HookEnvError) return unreachable(say, failClosed, e.message, def.phase);
    return unreachable(say, failClosed, (e as Error).message, def.phase);
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** Answers that say the daemon could not judge, rather than that it refuses. */
function daemonTrouble(e: RpcCallError): boolean {
  const code = (e.data as { code?: unknown } | undefined)?.code;
  return code === 'GKD_INTERNAL' || code === 'GKD_SHUTTING_DOWN' || code === 'GKD_OVERLOADED';
}

function unreachable(say: (ok: boolean, m: string) => number, failClosed: boolean, why: string, phase: 'pre' | 'post'): number {
  const policy = failClosed ? 'pre hook: failing closed' : phase === 'pre' ? 'this pre hook only refuses what QEMU would refuse: passing' : 'post hook: failing open';
  return say(!failClosed, `${why} (${policy})`);
}

/** The daemon's reason with its stable code and the field or device it names. */
function describe(e: RpcCallError): string {
  const d = e.data as { code?: string; field?: string; device?: string; errors?: { path: string; message: string }[] } | undefined;
  const bits = [d?.code ?? String(e.code)];
  if (d?.field !== undefined) bits.push(`field ${d.field}`);
  if (d?.device !== undefined) bits.push(`device ${d.device}`);
  const paths = (d?.errors ?? []).slice(0, 3).map((x) => `${x.path} ${x.message}`);
  return `${e.message} [${bits.join(', ')}]${paths.length ? `: ${paths.join('; ')}` : ''}`;
}
