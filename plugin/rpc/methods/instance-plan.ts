/**
 * `instance.plan`: instance spec → `{argv, runtime, devices}` exactly as the
 * daemon would start it (its run dir, accelerator and the instance's QMP
 * socket). No side effects.
 */
import { buildArgv, fillHvParams, parseInstanceSpec, planInstance } from '../../planner';
import { isBlockDevice, localMachineAliases } from '../../process/host-facts';
import { qmpSocketFor } from '../../config';
import type { CallContext, RpcMethod } from '../method';
import schema from '../../../schemas/rpc/instance.plan.schema.json';

interface PlanParams {
  instance: unknown;
  qmp?: string;
  accel?: 'kvm' | 'tcg';
}

/**
 * Plans and builds the argv; shared with `instance.start`. The machine alias
 * (`pc`, `q35`) is frozen to the local QEMU's versioned type, since a
 * migration target must run the very same machine.
 */
export async function planForDaemon(params: PlanParams, ctx: CallContext): Promise<{ argv: string[]; runtime: unknown; devices: unknown; qmp: string }> {
  const spec = parseInstanceSpec(params.instance);
  const plan = planInstance(spec, { machineAliases: await localMachineAliases(fillHvParams(spec.hvparams).hv.kvm_path), isBlockDevice });
  const qmp = params.qmp ?? qmpSocketFor(ctx.config, spec.name);
  const accel = params.accel ?? ctx.config.accel;
  const argv = buildArgv(plan.runtime, {
    qmp,
    runDir: ctx.config.runDir,
    nicBackends: plan.backends,
    isBlockDevice,
    ...(accel === undefined ? {} : { accel }),
  });
  return { argv, runtime: plan.runtime, devices: plan.devices, qmp };
}

export const instancePlan: RpcMethod = {
  name: 'instance.plan',
  summary: 'Plans an instance: argv, runtime and devices; no side effects',
  schema,
  handler: async (params, ctx) => {
    const { argv, runtime, devices } = await planForDaemon(params as unknown as PlanParams, ctx);
    return { argv, runtime, devices };
  },
};
