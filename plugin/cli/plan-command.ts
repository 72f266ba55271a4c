/**
 * `kvm-devices plan [--accel tcg] [--qmp PATH] [--run-dir DIR] FILE|-`:
 * reads an instance spec and prints `{"argv","runtime","devices"}`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GkdError, isGkdError } from '../errors';
import { buildArgv, DEFAULT_RUN_DIR, fillHvParams, parseInstanceSpec, planInstance } from '../planner';
import { isBlockDevice, localMachineAliases } from '../process/host-facts';
import type { Command } from './commands';

const HELP = `usage: kvm-devices plan [--accel kvm|tcg] [--qmp PATH] [--run-dir DIR] FILE|-

Reads an instance spec (JSON, see schemas/instance.schema.json) from FILE or
standard input and prints {"argv":[...],"runtime":[...],"devices":[...]}:
argv is a complete QEMU command line that starts the instance in the
foreground, runtime is the runtime file (Ganeti 2.16 format) and devices
lists every disk and NIC with its hvinfo.

  --accel kvm|tcg   accelerator (default kvm; tcg = software emulation)
  --qmp PATH        add a QMP server socket at PATH
  --run-dir DIR     node-local dir for the pid file and serial socket
                    (default ${DEFAULT_RUN_DIR})

Exit status: 0 planned, 1 refused (the reason names the field), 2 usage.
`;

export const planCommand: Command = {
  summary: 'plan an instance: hvinfo, runtime file and QEMU command line',
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        options: { accel: { type: 'string' }, qmp: { type: 'string' }, 'run-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      });
    } catch (e) {
      process.stderr.write(`kvm-devices plan: ${(e as Error).message}\n\n${HELP}`);
      return 2;
    }
    const { values, positionals } = parsed;
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (positionals.length !== 1 || (values.accel !== undefined && values.accel !== 'kvm' && values.accel !== 'tcg')) {
      process.stderr.write(HELP);
      return 2;
    }
    try {
      const file = positionals[0];
      let text: string;
      try {
        text = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (e) {
        throw new GkdError('GKD_SPEC_INVALID', `Cannot read instance spec "${file}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (e) {
        throw new GkdError('GKD_SPEC_INVALID', `Cannot parse instance spec "${file}": ${(e as Error).message}`);
      }
      const spec = parseInstanceSpec(json);
      const { hv } = fillHvParams(spec.hvparams);
      const plan = planInstance(spec, { machineAliases: await localMachineAliases(hv.kvm_path), isBlockDevice });
      const argv = buildArgv(plan.runtime, {
        accel: values.accel as 'kvm' | 'tcg' | undefined,
        qmp: values.qmp,
        runDir: values['run-dir'],
        nicBackends: plan.backends,
        isBlockDevice,
      });
      process.stdout.write(`${JSON.stringify({ argv, runtime: plan.runtime, devices: plan.devices })}\n`);
      return 0;
    } catch (e) {
      if (!isGkdError(e)) throw e;
      process.stderr.write(`kvm-devices plan: ${e.message}${e.field !== undefined ? ` [${e.field}]` : ''}\n`);
      return 1;
    }
  },
};
