/**
 * The command table. Each command lives in its own module and exports a
 * `Command`; add new ones here.
 */
export interface Command {
  /** One line for the overview. */
  summary: string;
  /** Runs the command with the arguments after its name; resolves to the exit status. */
  run(args: string[]): Promise<number>;
}

/**
 * A command whose module loads only when it runs: `kvm-devices hook` and
 * `call` start fast because they don't load the daemon, ajv or the planner.
 */
function lazy(summary: string, load: () => Command): Command {
  return { summary, run: (args) => load().run(args) };
}

export const COMMANDS: Record<string, Command> = {
  plan: lazy('plan an instance: hvinfo, runtime file and QEMU command line', () => require('./plan-command').planCommand),
  serve: lazy('run the daemon (JSON-RPC 2.0 over WebSocket on a Unix socket)', () => require('./serve').serveCommand),
  call: lazy('make one JSON-RPC call to the daemon', () => require('./call').callCommand),
  hook: lazy('run a Ganeti hook (what the scripts in hooks/ call)', () => require('./hook').hookCommand),
  demo: lazy('the main job end to end on real QEMU, on an embedded instance', () => require('./demo').demoCommand),
  runtime: lazy('runtime files: detect, validate, convert, upgrade-all, downgrade-all', () => require('./runtime-command').runtimeCommand),
  config: lazy("print this node's effective configuration, or one key of it", () => require('./config-command').configCommand),
};

export function usage(): string {
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
  return `usage: kvm-devices COMMAND [ARGS]   (kvm-devices COMMAND --help for details)\n\ncommands:\n${lines.join('\n')}\n`;
}
