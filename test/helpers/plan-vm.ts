/**
 * Start a paused QEMU from the planner's own argv, with sparse raw images
 * in the VM's temp dir, and compare what QEMU has with the plan.
 */
import { strict as assert } from 'node:assert';
import { closeSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { hvinfoDifferences, readLiveLayout } from '../../plugin/inspect';
import { buildArgv, planInstance, type Plan } from '../../plugin/planner';
import { prepareRunDir } from '../../plugin/process/host-facts';
import type { InstanceSpec } from '../../plugin/types';
import { QEMU_BINARY, startQemu, type TestQemu } from './qemu';

/** Creates a sparse raw image (a raw image is just a file). */
export function makeImage(path: string, bytes = 1 << 20): string {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
  return path;
}

/** Points every disk of `spec` at a fresh image in `dir` and sets the QEMU binary. */
export function localize(spec: InstanceSpec, dir: string, fileName = (i: number) => `disk${i}.raw`): InstanceSpec {
  const s = structuredClone(spec);
  s.hvparams = { ...s.hvparams, kvm_path: QEMU_BINARY };
  s.disks.forEach((d, i) => (d.path = makeImage(join(dir, fileName(i)))));
  s.nics.forEach((n) => (n.backend = { type: 'user' }));
  return s;
}

export interface PlannedVm {
  vm: TestQemu;
  plan: Plan;
  argv: string[];
}

/** Plans `spec` (made local to the VM dir) and starts QEMU paused from the resulting argv. */
export async function startPlanned(spec: InstanceSpec, opts: { fileName?: (i: number) => string; paused?: boolean } = {}): Promise<PlannedVm> {
  let plan!: Plan;
  let argv!: string[];
  const vm = await startQemu(
    (dir) => {
      prepareRunDir(dir);
      plan = planInstance(localize(spec, dir, opts.fileName));
      argv = buildArgv(plan.runtime, { accel: 'tcg', runDir: dir, qmp: join(dir, 'qmp.sock'), paused: opts.paused ?? true, nicBackends: plan.backends });
      return argv;
    },
  );
  return { vm, plan, argv };
}

/** Asserts QEMU has every planned device exactly where its hvinfo says. */
export async function assertLayoutMatches(p: PlannedVm): Promise<void> {
  const live = await readLiveLayout(p.vm.qmp);
  for (const d of p.plan.devices) {
    const l = live.find((x) => x.id === d.id);
    assert.ok(l, `QEMU has no device "${d.id}"`);
    assert.deepEqual(hvinfoDifferences(d.hvinfo as unknown as Record<string, unknown>, l), [], `device "${d.id}"`);
  }
}
