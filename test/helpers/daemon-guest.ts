/**
 * An instance laid out the way the daemon (and Ganeti) finds it: QEMU
 * started from the planner's argv, its monitor at
 * `<dir>/run/ctrl/<name>.qmp`, its runtime file in `<dir>/conf`. Point a
 * daemon at `dir` (spawnDaemon({dir})). startDaemonGuest() boots the guest
 * kit with its serial channels.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildArgv, planInstance } from '../../plugin/planner';
import { prepareRunDir } from '../../plugin/process/host-facts';
import { RuntimeStore } from '../../plugin/runtime';
import type { InstanceSpec, RuntimeV2_16 } from '../../plugin/types';
import { GuestConsole, guestSerialChardevs, serialArg } from './guest';
import { localize } from './plan-vm';
import { startQemu, type TestQemu } from './qemu';

export interface DaemonInstance {
  vm: TestQemu;
  /** The instance's dir: `run/` (Ganeti's run dir layout), `conf/` (runtime files), disk images. */
  dir: string;
  runtime: RuntimeV2_16;
  store: RuntimeStore;
}

export interface DaemonGuest extends DaemonInstance {
  /** Not yet ready: call waitReady(). */
  con: GuestConsole;
}

/**
 * Starts `spec` (paused, or running with these `-serial` arguments per instance dir) and writes its
 * runtime file. `extraArgv` is appended to QEMU's command line and to the runtime file's kvm_cmd (as
 * Ganeti records what it starts, e.g. an IDE CD-ROM drive the planner does not lay out).
 */
export async function startDaemonInstance(spec: InstanceSpec, o: { paused: boolean; serials?: (dir: string) => string[]; extraArgv?: (dir: string) => string[] }): Promise<DaemonInstance> {
  let dir!: string;
  let runtime!: RuntimeV2_16;
  const vm = await startQemu((d) => {
    dir = d;
    const runDir = join(d, 'run');
    prepareRunDir(runDir);
    const plan = planInstance(localize(spec, d));
    runtime = plan.runtime;
    const extra = o.extraArgv?.(d) ?? [];
    const argv = buildArgv(plan.runtime, {
      accel: 'tcg', runDir, qmp: join(runDir, 'ctrl', `${spec.name}.qmp`), paused: o.paused, nicBackends: plan.backends,
      ...(o.serials === undefined ? {} : { serials: o.serials(d) }),
    });
    if (extra.length > 0) runtime = [[...runtime[0], ...extra], runtime[1], runtime[2], runtime[3]];
    return [...argv, ...extra];
  });
  mkdirSync(join(dir, 'conf'));
  const store = new RuntimeStore(join(dir, 'conf'));
  await store.write(spec.name, runtime);
  return { vm, dir, runtime, store };
}

/** Boots `spec` (its hvparams must boot the guest kit) with the kit's serial channels. */
export async function startDaemonGuest(spec: InstanceSpec): Promise<DaemonGuest> {
  const serial = (d: string): { serialLog: string; cmdSocket: string } => ({ serialLog: join(d, 'ttyS0.log'), cmdSocket: join(d, 'ttyS1.sock') });
  const i = await startDaemonInstance(spec, { paused: false, serials: (d) => guestSerialChardevs(serial(d)).map(serialArg) });
  return { ...i, con: new GuestConsole(serial(i.dir)) };
}

/** What a test started around a daemon: its client, the daemon, the QEMU. */
export interface DaemonRig {
  c: { close(): Promise<unknown> };
  d: { stop(): Promise<unknown> };
  vm: { stop(): Promise<unknown> };
}

/**
 * Takes down, after each test of the calling describe block, every rig in
 * `rigs` (client, daemon, QEMU) and empties the list. Call inside describe.
 */
export function useRigCleanup(rigs: DaemonRig[]): void {
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.c.close().catch(() => undefined);
      await r.d.stop();
      await r.vm.stop();
    }
  });
}
