/**
 * `instance.plan`: instance spec → `{argv, runtime, devices}` exactly as the
 * daemon would start it (its run dir, accelerator and the instance's QMP
 * socket). No side effects.
 */
import { buildArgv, parseInstanceSpec, planInstance } from '../../planner';
import { qmpSocketFor } from '../../config';
import type { CallContext, RpcMethod } from '../method';
import schema from '../../../schemas/rpc/instance.plan.schema.json';

interface PlanParams {
  instance: unknown;
  qmp?: string;
  accel?: 'kvm' | 'tcg';
}

/** Plans and builds the argv; shared with `instance.start`. */
export function planForDaemon(params: PlanParams, ctx: CallContext): { argv: string[]; runtime: unknown; devices: unknown; qmp: string } {
  const spec = parseInstanceSpec(params.instance);
  const plan = planInstance(spec);
  const qmp = params.qmp ?? qmpSocketFor(ctx.config, spec.name);
  const accel = params.accel ?? ctx.config.accel;
  const argv = buildArgv(plan.runtime, {
    qmp,
    runDir: ctx.config.runDir,
    nicBackends: plan.backends,
    ...(accel === undefined ? {} : { accel }),
  });
  return { argv, runtime: plan.runtime, devices: plan.devices, qmp };
}

export const instancePlan: RpcMethod = {
  name: 'instance.plan',
  summary: 'Plans an instance: argv, runtime and devices; no side effects',
  schema,
  handler: (params, ctx) => {
    const { argv, runtime, devices } = planForDaemon(params as unknown as PlanParams, ctx);
    return { argv, runtime, devices };
  },
};
