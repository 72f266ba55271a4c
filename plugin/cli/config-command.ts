/**
 * `kvm-devices config [KEY]`: the effective configuration of this node
 * (defaults, then the config file, then GKD_* variables), as JSON, or one
 * key's value. Other nodes' migrate hooks ask it over SSH which runtime
 * format this node's Ganeti reads (see peer-format.ts).
 */
import { loadConfig, type Config } from '../config';
import type { Command } from './commands';

export const configCommand: Command = {
  summary: "print this node's effective configuration, or one key of it",
  async run(args) {
    if (args[0] === '--help' || args[0] === '-h' || args.length > 1) {
      (args.length > 1 ? process.stderr : process.stdout).write('usage: kvm-devices config [KEY]\n\nPrints the effective configuration as JSON, or the value of KEY (strings as they are).\n');
      return args.length > 1 ? 2 : 0;
    }
    let config: Config;
    try {
      config = loadConfig();
    } catch (e) {
      process.stderr.write(`kvm-devices config: ${(e as Error).message}\n`);
      return 1;
    }
    const key = args[0];
    if (key === undefined) {
      process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
      return 0;
    }
    if (!Object.hasOwn(config, key)) {
      process.stderr.write(`kvm-devices config: no key "${key}" (keys: ${Object.keys(config).join(', ')})\n`);
      return 2;
    }
    const v = (config as unknown as Record<string, unknown>)[key];
    process.stdout.write(`${typeof v === 'string' ? v : JSON.stringify(v)}\n`);
    return 0;
  },
};
