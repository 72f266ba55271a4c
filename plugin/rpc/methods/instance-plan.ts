/**
 * `instance.plan`: instance spec → `{argv, runtime, devices}` exactly as the
 * daemon would start it (its run dir, accelerator and the instance's QMP
 * socket). No side effects.
 */
import { buildArgv, parseInstanceSpec, planInstance } from '../../planner';
import { isBlockDevice, localMachineAliases } from '../../process/host-facts';
import { qmpSocketFor } from '../../config';
import { defineMethod, type CallContext } from '../method';
import type { RpcParams } from '../param-types.generated';
import { checkSpecPaths, qemuBinaryFor } from './confine';
import schema from '../../../schemas/rpc/instance.plan.schema.json';

type PlanParams = RpcParams['instance.plan'];

/**
 * Plans and builds the argv; shared with `instance.start`. The machine alias
 * (`pc`, `q35`) is frozen to the local QEMU's versioned type, since a
 * migration target must run the very same machine.
 */
export async function planForDaemon(params: PlanParams, ctx: CallContext, method = 'instance.plan'): Promise<{ argv: string[]; runtime: unknown; devices: unknown; qmp: string }> {
  const spec = parseInstanceSpec(params.instance);
  // Before anything touches the host: which binary may run, which files QEMU may be handed.
  const qemu = qemuBinaryFor(spec, ctx.config);
  await checkSpecPaths(method, spec, '/instance', ctx.config);
  const plan = planInstance(spec, { machineAliases: await localMachineAliases(qemu), isBlockDevice });
  const qmp = params.qmp ?? qmpSocketFor(ctx.config, spec.name);
  const accel = params.accel ?? ctx.config.accel;
  const argv = buildArgv(plan.runtime, {
    qmp,
    runDir: ctx.config.runDir,
    nicBackends: plan.backends,
    isBlockDevice,
    ...(accel === undefined ? {} : { accel }),
  });
  // kvm_cmd keeps the instance's kvm_path (Ganeti's record); what runs here is the configured binary.
  argv[0] = qemu;
  return { argv, runtime: plan.runtime, devices: plan.devices, qmp };
}

export const instancePlan = defineMethod({
  name: 'instance.plan',
  summary: 'Plans an instance: argv, runtime and devices; no side effects',
  schema,
  handler: async (params, ctx) => {
    const { argv, runtime, devices } = await planForDaemon(params, ctx);
    return { argv, runtime, devices };
  },
});
