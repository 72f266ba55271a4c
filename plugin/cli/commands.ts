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

export const COMMANDS: Record<string, Command> = {
  plan: require('./plan-command').planCommand as Command,
  serve: require('./serve').serveCommand as Command,
  call: require('./call').callCommand as Command,
  hook: require('./hook').hookCommand as Command,
  runtime: require('./runtime-command').runtimeCommand as Command,
};

export function usage(): string {
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
  return `usage: kvm-devices COMMAND [ARGS]   (kvm-devices COMMAND --help for details)\n\ncommands:\n${lines.join('\n')}\n`;
}
