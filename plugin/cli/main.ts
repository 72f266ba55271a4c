#!/usr/bin/env node
/**
 * `kvm-devices` entry point: dispatches to one module per command.
 * Exit status: 0 success, 1 refused or failed, 2 usage error.
 */
import { COMMANDS, usage } from './commands';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    process.stdout.write(`${require('../../../package.json').version}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    process.stderr.write(`kvm-devices: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`kvm-devices: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
