/**
 * Hot-add and hot-remove latency of a SCSI disk (scsi-hd on virtio-scsi-pci)
 * through the HotplugEngine against the bare QMP sequence, on the same
 * paused QEMU in the same run, rounds interleaved so both see the same load.
 *
 * Bare add: blockdev-add + device_add. Bare remove: device_del, wait for
 * DEVICE_DELETED (armed before the command), blockdev-del. Both build their
 * arguments with the planner's builders, so the difference is what the
 * engine adds: the instance lock, reading the runtime file and the live
 * layout (query-pci, QOM), verification (QOM, query-block) and the atomic
 * runtime-file write. Nothing sleeps; every wait is on a QMP reply or event.
 *
 * Run: `npx tsc -p . && node dist/bench/hotplug.bench.js [iterationsPerRound]`
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HotplugEngine, QmpConnections } from '../plugin/hotplug';
import { blockdevArgs, buildArgv, diskDeviceArgs, diskIo, planInstance } from '../plugin/planner';
import { prepareRunDir } from '../plugin/process/host-facts';
import { launchQemu } from '../plugin/process';
import { RuntimeStore } from '../plugin/runtime';
import type { InstanceSpec, ScsiHvInfo } from '../plugin/types';

/** One measured series. */
export interface HotplugBenchRow {
  name: string;
  samples: number;
  medianMs: number;
  p95Ms: number;
}

export interface HotplugBenchResult {
  rows: HotplugBenchRow[];
  /** Engine median / bare median. */
  addRatio: number;
  removeRatio: number;
}

const ROUNDS = 5;
const WARMUP = 5;

const SPEC: InstanceSpec = {
  name: 'bench1.example.com',
  uuid: '4b6e0a2c-1f0e-4c1b-9a51-0d2f7c0e8b11',
  hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' },
  beparams: { maxmem: 64, vcpus: 1 },
  disks: [],
  nics: [],
};

/** Measures `iterations` add/remove pairs per series per round, {@link ROUNDS} rounds. */
export async function runHotplugBench(iterations = 40): Promise<HotplugBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-bench-hotplug-'));
  prepareRunDir(dir);
  mkdirSync(join(dir, 'conf'));
  const plan = planInstance(SPEC);
  const engineSock = join(dir, 'engine.qmp');
  const argv = buildArgv(plan.runtime, { accel: 'tcg', runDir: dir, qmp: engineSock, paused: true, serials: [] });
  const vm = await launchQemu(argv, { qmpSocket: join(dir, 'bare.qmp') });
  const store = new RuntimeStore(join(dir, 'conf'));
  await store.write(SPEC.name, plan.runtime);
  const connections = new QmpConnections();
  const engine = new HotplugEngine({ store, connections, qmpSocket: () => engineSock, accel: 'tcg' });
  const images = ['e.raw', 'b.raw'].map((f) => {
    const p = join(dir, f);
    writeFileSync(p, Buffer.alloc(1 << 20));
    return p;
  });
  const io = diskIo(plan.runtime);
  const qmp = vm.qmp;

  const samples = { engineAdd: [] as number[], bareAdd: [] as number[], engineRemove: [] as number[], bareRemove: [] as number[] };
  let seq = 0;
  const uuid = (): string => `${(0xb0000000 + seq++).toString(16)}-0000-4000-8000-000000000000`;

  const engineCycle = async (keep: boolean): Promise<void> => {
    const u = uuid();
    const t0 = process.hrtime.bigint();
    await engine.addDisk(SPEC.name, { uuid: u, path: images[0] });
    const t1 = process.hrtime.bigint();
    const r = await engine.removeDisk(SPEC.name, u);
    const t2 = process.hrtime.bigint();
    if (r.status !== 'removed' || r.warnings.length > 0) throw new Error(`engine removal not clean: ${JSON.stringify(r)}`);
    if (keep) {
      samples.engineAdd.push(Number(t1 - t0) / 1e6);
      samples.engineRemove.push(Number(t2 - t1) / 1e6);
    }
  };
  // The bare sequence gets the address for free (target 0: the engine's disk is gone by then).
  const bareCycle = async (keep: boolean): Promise<void> => {
    const id = `disk-${uuid().slice(0, 8)}`;
    const hvinfo: ScsiHvInfo = { driver: 'scsi-hd', id, bus: 'scsi.0', channel: 0, 'scsi-id': 0, lun: 0 };
    const t0 = process.hrtime.bigint();
    await qmp.execute('blockdev-add', blockdevArgs(id, { path: images[1], uri: null, readOnly: false, blockDevice: false }, io, 'disk'));
    await qmp.execute('device_add', diskDeviceArgs(hvinfo, io));
    const t1 = process.hrtime.bigint();
    const gone = qmp.expectEvent('DEVICE_DELETED', (d) => d.device === id, 5_000);
    await qmp.execute('device_del', { id });
    await gone;
    await qmp.execute('blockdev-del', { 'node-name': id });
    const t2 = process.hrtime.bigint();
    if (keep) {
      samples.bareAdd.push(Number(t1 - t0) / 1e6);
      samples.bareRemove.push(Number(t2 - t1) / 1e6);
    }
  };

  try {
    for (let i = 0; i < WARMUP; i++) {
      await engineCycle(false);
      await bareCycle(false);
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < iterations; i++) await engineCycle(true);
      for (let i = 0; i < iterations; i++) await bareCycle(true);
    }
    const rows = [
      row('HotplugEngine.addDisk', samples.engineAdd),
      row('bare blockdev-add + device_add', samples.bareAdd),
      row('HotplugEngine.removeDisk', samples.engineRemove),
      row('bare device_del + DEVICE_DELETED + blockdev-del', samples.bareRemove),
    ];
    return { rows, addRatio: round2(rows[0].medianMs / rows[1].medianMs), removeRatio: round2(rows[2].medianMs / rows[3].medianMs) };
  } finally {
    await connections.closeAll();
    await vm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function row(name: string, s: number[]): HotplugBenchRow {
  const sorted = [...s].sort((a, b) => a - b);
  return { name, samples: s.length, medianMs: round2(quantile(sorted, 0.5)), p95Ms: round2(quantile(sorted, 0.95)) };
}

if (require.main === module) {
  const n = Number(process.argv[2] ?? 40);
  runHotplugBench(n).then(
    (r) => {
      console.log('| series | samples | median ms | p95 ms |\n|---|---|---|---|');
      for (const x of r.rows) console.log(`| ${x.name} | ${x.samples} | ${x.medianMs} | ${x.p95Ms} |`);
      console.log(`\nengine / bare (medians): add ${r.addRatio}, remove ${r.removeRatio}`);
    },
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
