/**
 * A booted guest laid out the way the daemon (and Ganeti) finds an
 * instance: QEMU started from the planner's argv with the guest kit's
 * serial channels, its monitor at `<dir>/run/ctrl/<name>.qmp`, its runtime
 * file in `<dir>/conf`. Point a daemon at `dir` (spawnDaemon({dir})).
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

export interface DaemonGuest {
  vm: TestQemu;
  /** The instance's dir: `run/` (Ganeti's run dir layout), `conf/` (runtime files), disk images. */
  dir: string;
  runtime: RuntimeV2_16;
  store: RuntimeStore;
  /** Not yet ready: call waitReady(). */
  con: GuestConsole;
}

/** Starts `spec` (its hvparams must boot the guest kit) and writes its runtime file. */
export async function startDaemonGuest(spec: InstanceSpec): Promise<DaemonGuest> {
  let dir!: string;
  let runtime!: RuntimeV2_16;
  const serial = (d: string): { serialLog: string; cmdSocket: string } => ({ serialLog: join(d, 'ttyS0.log'), cmdSocket: join(d, 'ttyS1.sock') });
  const vm = await startQemu((d) => {
    dir = d;
    const runDir = join(d, 'run');
    prepareRunDir(runDir);
    const plan = planInstance(localize(spec, d));
    runtime = plan.runtime;
    return buildArgv(plan.runtime, {
      accel: 'tcg', runDir, qmp: join(runDir, 'ctrl', `${spec.name}.qmp`), paused: false, nicBackends: plan.backends,
      serials: guestSerialChardevs(serial(d)).map(serialArg),
    });
  });
  mkdirSync(join(dir, 'conf'));
  const store = new RuntimeStore(join(dir, 'conf'));
  await store.write(spec.name, runtime);
  return { vm, dir, runtime, store, con: new GuestConsole(serial(dir)) };
}
