/**
 * A running instance for hotplug tests: planned, its runtime file written
 * to a store, QEMU started paused from the planner's argv with a QMP
 * socket of its own for the engine (the test keeps the helper's socket).
 */
import { strict as assert } from 'node:assert';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { HotplugEngine, QmpConnections, type HotplugEngineOptions } from '../../plugin/hotplug';
import { hvinfoDifferences, readLiveLayout } from '../../plugin/inspect';
import { buildArgv, planInstance, type Plan } from '../../plugin/planner';
import { prepareRunDir } from '../../plugin/process/host-facts';
import { RuntimeStore } from '../../plugin/runtime';
import type { InstanceSpec, RuntimeV2_16 } from '../../plugin/types';
import { localize, makeImage } from './plan-vm';
import { startQemu, type TestQemu } from './qemu';

export interface HotplugVm {
  vm: TestQemu;
  plan: Plan;
  store: RuntimeStore;
  engine: HotplugEngine;
  connections: QmpConnections;
  name: string;
  /** A fresh raw image in the VM dir. */
  image(file: string): string;
  runtime(): Promise<RuntimeV2_16>;
  close(): Promise<void>;
}

export async function startHotplugVm(
  spec: InstanceSpec,
  opts: { extraArgv?: (dir: string) => string[]; serials?: (dir: string) => string[]; engine?: Partial<HotplugEngineOptions>; paused?: boolean } = {},
): Promise<HotplugVm> {
  let plan!: Plan;
  let dir!: string;
  const vm = await startQemu((d) => {
    dir = d;
    prepareRunDir(d);
    plan = planInstance(localize(spec, d));
    const argv = buildArgv(plan.runtime, {
      accel: 'tcg',
      runDir: d,
      qmp: join(d, 'engine.qmp'),
      paused: opts.paused ?? true,
      nicBackends: plan.backends,
      ...(opts.serials === undefined ? {} : { serials: opts.serials(d) }),
    });
    return [...argv, ...(opts.extraArgv?.(d) ?? [])];
  });
  mkdirSync(join(dir, 'conf'));
  const store = new RuntimeStore(join(dir, 'conf'));
  await store.write(spec.name, plan.runtime);
  const connections = new QmpConnections();
  const engine = new HotplugEngine({ store, connections, qmpSocket: () => join(dir, 'engine.qmp'), accel: 'tcg', ...opts.engine });
  return {
    vm,
    plan,
    store,
    engine,
    connections,
    name: spec.name,
    image: (file) => makeImage(join(dir, file)),
    runtime: async () => (await store.read(spec.name)).upgraded,
    close: async () => {
      await connections.closeAll();
      await vm.stop();
    },
  };
}

/**
 * Asserts the runtime file and QEMU agree: every recorded disk and NIC is in
 * QEMU where its hvinfo says, and every disk-/nic- device QEMU has is recorded.
 */
export async function assertRuntimeMatchesQemu(h: HotplugVm): Promise<void> {
  const rt = await h.runtime();
  const live = await readLiveLayout(h.vm.qmp);
  const recorded = [...rt[3].map((e) => e[0].hvinfo), ...rt[1].map((n) => n.hvinfo)] as Array<Record<string, unknown>>;
  for (const hv of recorded) {
    const l = live.find((x) => x.id === hv.id);
    assert.ok(l, `runtime has "${String(hv.id)}" but QEMU does not`);
    assert.deepEqual(hvinfoDifferences(hv, l), [], `device "${String(hv.id)}"`);
  }
  for (const l of live) {
    if (/^(disk|nic)-/.test(l.id)) assert.ok(recorded.some((hv) => hv.id === l.id), `QEMU has "${l.id}" but the runtime does not`);
  }
  const blocks = await h.vm.qmp.execute<Array<{ inserted?: { 'node-name': string } }>>('query-block');
  const nodes = blocks.map((b) => b.inserted?.['node-name']).filter((n) => n !== undefined).sort();
  assert.deepEqual(nodes, rt[3].map((e) => String((e[0].hvinfo as { id: string }).id)).sort(), 'query-block nodes = runtime disks');
}
