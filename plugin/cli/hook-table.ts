/**
 * What each Ganeti hook asks the daemon: one RPC call per hook, chosen by
 * `<hpath>-<phase>`. Only hooks whose methods the daemon serves are listed.
 */
import type { Config } from '../config';
import type { RpcClient } from '../rpc';
import { specFromHookEnv } from './hook-env';

/** A hook's verdict and the line Ganeti shows the operator. */
export interface HookOutcome {
  ok: boolean;
  message: string;
}

export interface HookDef {
  phase: 'pre' | 'post';
  /** One line for `kvm-devices hook --help`. */
  summary: string;
  /** Whether the hook concerns one instance (then non-KVM instances are skipped). */
  perInstance: boolean;
  run(env: NodeJS.ProcessEnv, client: RpcClient, config: Config): Promise<HookOutcome>;
}

interface PlanResult {
  devices?: { kind: string; id: string; hvinfo: Record<string, unknown> }[];
}

/** Preflight: the instance as Ganeti describes it must plan (slots, controller limits, ids). */
async function preflight(env: NodeJS.ProcessEnv, client: RpcClient): Promise<HookOutcome> {
  const spec = specFromHookEnv(env);
  const plan = await client.call<PlanResult>('instance.plan', { instance: spec });
  const devices = plan.devices ?? [];
  const where = devices.map((d) => `${d.id}@${String(d.hvinfo.bus)}${d.hvinfo.addr === undefined ? `:${String(d.hvinfo['scsi-id'])}` : `:${String(d.hvinfo.addr)}`}`);
  return {
    ok: true,
    message: `${spec.name}: ${spec.disks.length} disk(s) and ${spec.nics.length} NIC(s) fit${where.length ? ` (${where.join(', ')})` : ''}`,
  };
}

/** The hooks this release implements, by `<hpath>-<phase>`. */
export const HOOKS: Record<string, HookDef> = {
  'instance-start-pre': {
    phase: 'pre', perInstance: true,
    summary: 'preflight: the disks and NICs fit (slots, controller limits, ids) before QEMU starts',
    run: (env, client) => preflight(env, client),
  },
  'instance-add-pre': {
    phase: 'pre', perInstance: true,
    summary: 'preflight for a new instance, as for instance-start-pre',
    run: (env, client) => preflight(env, client),
  },
  'instance-modify-pre': {
    phase: 'pre', perInstance: true,
    summary: 'the requested NIC set (Ganeti exports the new NICs) still fits',
    run: (env, client) => preflight(env, client),
  },
};
