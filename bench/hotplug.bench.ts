/**
 * Hot-add and hot-remove latency of a SCSI disk (scsi-hd on virtio-scsi-pci)
 * three ways on the same paused QEMU in the same run, rounds interleaved so
 * all see the same load:
 * - bare: `blockdev-add` + `device_add` on a monitor of its own (the
 *   baseline: what any client must send); removal `device_del`, wait for
 *   `DEVICE_DELETED` (armed before the command), `blockdev-del`;
 * - engine: `HotplugEngine.addDisk`/`removeDisk` in this process, on a
 *   second monitor, with a timing hook giving the add's phases;
 * - daemon: `disk.add`/`disk.remove` through a `kvm-devices serve` child over
 *   one persistent RPC client; the daemon's own QMP connections (one short
 *   connection per operation, on a third monitor, as on a Ganeti node) and
 *   its runtime dir.
 * - kept: `disk.add`/`disk.remove` through a second daemon with
 *   `qmpKeepOpen` on a fourth monitor of the same QEMU, dedicated to it: it
 *   keeps its connection, so no connect per operation (on a Ganeti node the
 *   monitor is Ganeti's and must be given back after every operation).
 * - tmpfs: the first daemon's setup again, a third daemon whose run and
 *   runtime dirs are on tmpfs (`/dev/shm`), where a Debian node keeps
 *   Ganeti's (`/var/run/ganeti` is under `/run`, a tmpfs): the same fsyncs,
 *   which cost next to nothing there. The other series keep theirs in the
 *   machine's temp dir, on disk.
 * - floor: the engine's QMP sequence alone, from a minimal client on a
 *   monitor of its own: a fresh connection (greeting, `qmp_capabilities`
 *   asking for `oob`), `query-status` + `blockdev-add` written together,
 *   `device_add` + the verifying `qom-get` written together, then the
 *   connection closed. What QEMU itself takes for the sequence the engine's
 *   guarantees call for, with no lock, files, RPC or client library: the
 *   rest of an engine add is the engine's own work.
 * Every engine path keeps every guarantee: instance lock, journal entry,
 * verification, fsynced runtime write. Arguments come from the planner's
 * builders, so the difference is what the engine adds. Nothing sleeps;
 * every wait is on a QMP reply or event.
 *
 * Run: `npx tsc -p . && node dist/bench/hotplug.bench.js [iterationsPerRound]`
 * Prints one Markdown section on stdout; progress goes to stderr.
 */
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HotplugEngine, QmpConnections, type AddPhase, type AddTiming } from '../plugin/hotplug';
import { blockdevArgs, buildArgv, diskDeviceArgs, diskIo, planInstance } from '../plugin/planner';
import { prepareRunDir } from '../plugin/process/host-facts';
import { launchQemu } from '../plugin/process';
import type { QmpClient } from '../plugin/qmp';
import { RpcClient } from '../plugin/rpc';
import { RuntimeStore } from '../plugin/runtime';
import type { InstanceSpec, ScsiHvInfo } from '../plugin/types';
import { spawnDaemon } from '../test/integration/rpc/daemon-process';
import { quantile, quantileOf } from './markdown';
import { RawQmpSocket } from './raw-qmp';

/** One measured series. */
export interface HotplugBenchRow {
  name: string;
  samples: number;
  medianMs: number;
  p95Ms: number;
}

/** One phase of the engine's add: medians over the kept samples. */
export interface PhaseRow {
  phase: AddPhase;
  startMs: number;
  durationMs: number;
}

export interface HotplugBenchResult {
  rows: {
    bareAdd: HotplugBenchRow; engineAdd: HotplugBenchRow; daemonAdd: HotplugBenchRow; bareRemove: HotplugBenchRow; engineRemove: HotplugBenchRow; daemonRemove: HotplugBenchRow;
    keptAdd: HotplugBenchRow; keptRemove: HotplugBenchRow; tmpfsAdd: HotplugBenchRow; tmpfsRemove: HotplugBenchRow;
    floorAdd: HotplugBenchRow;
  };
  /** Medians of the floor add's parts: connection to negotiated, the backend pair, the device pair (ms). */
  floorParts: { handshakeMs: number; backendMs: number; deviceMs: number };
  /** Where the tmpfs daemon's dirs were (a tmpfs, or the temp dir when the machine has none). */
  tmpfs: { dir: string; isTmpfs: boolean };
  phases: PhaseRow[];
  /** Median of the engine add's total as its timing hook saw it. */
  hookTotalMs: number;
  /** Median CPU time of the bench process (the engine) per in-process add, ms. */
  engineAddCpuMs: number;
  rounds: number;
  iterations: number;
  warmup: number;
  load: { before: number; after: number };
}

const ROUNDS = 5;
const WARMUP = 5;
const NAME = 'bench1.example.com';

const SPEC: InstanceSpec = {
  name: NAME,
  uuid: '4b6e0a2c-1f0e-4c1b-9a51-0d2f7c0e8b11',
  hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' },
  beparams: { maxmem: 64, vcpus: 1 },
  disks: [],
  nics: [],
};

/** statfs f_type of a tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

/** A tmpfs to put the tmpfs daemon's dirs on: /dev/shm when it is one. */
function tmpfsBase(): { dir: string; isTmpfs: boolean } {
  try {
    if (statfsSync('/dev/shm').type === TMPFS_MAGIC) return { dir: '/dev/shm', isTmpfs: true };
  } catch {
    // no /dev/shm
  }
  return { dir: tmpdir(), isTmpfs: false };
}

const progress = (msg: string): void => void process.stderr.write(`hotplug bench: ${msg}\n`);

/** Measures `iterations` add/remove pairs per series per round, {@link ROUNDS} rounds. */
export async function runHotplugBench(iterations = 40): Promise<HotplugBenchResult> {
  const loadBefore = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'gkd-bench-hotplug-'));
  // The daemon's layout: runtime files in conf/, its QMP sockets at run/ctrl/<name>.qmp (the default pattern).
  const runDir = join(dir, 'run');
  const confDir = join(dir, 'conf');
  prepareRunDir(runDir);
  mkdirSync(confDir);
  const plan = planInstance(SPEC);
  const daemonSock = join(runDir, 'ctrl', `${NAME}.qmp`);
  const engineSock = join(dir, 'engine.qmp');
  // The keep-open daemon's own monitor, where its config puts it: <its run dir>/ctrl/<name>.qmp.
  const keptDir = join(dir, 'kept');
  prepareRunDir(join(keptDir, 'run'));
  const keptSock = join(keptDir, 'run', 'ctrl', `${NAME}.qmp`);
  // The tmpfs daemon's run and runtime dirs, and so its monitor, on tmpfs.
  const tmpfs = tmpfsBase();
  const shmDir = mkdtempSync(join(tmpfs.dir, 'gkd-bench-hotplug-'));
  prepareRunDir(join(shmDir, 'run'));
  const shmSock = join(shmDir, 'run', 'ctrl', `${NAME}.qmp`);
  const floorSock = join(dir, 'floor.qmp');
  const argv = [
    ...buildArgv(plan.runtime, { accel: 'tcg', runDir, qmp: daemonSock, paused: true, serials: [] }),
    '-qmp', `unix:${engineSock},server=on,wait=off`, '-qmp', `unix:${keptSock},server=on,wait=off`, '-qmp', `unix:${shmSock},server=on,wait=off`,
    '-qmp', `unix:${floorSock},server=on,wait=off`,
  ];
  const vm = await launchQemu(argv, { qmpSocket: join(dir, 'bare.qmp') });
  const store = new RuntimeStore(confDir);
  await store.write(NAME, plan.runtime);
  const connections = new QmpConnections();
  const timings: AddTiming[] = [];
  let keepTiming = false;
  /** Called by the timing hook, which runs once an add's turn (the work after the answer included) is over. */
  let turnOver: (() => void) | undefined;
  const engine = new HotplugEngine({
    store, connections, qmpSocket: () => engineSock, accel: 'tcg',
    onAddTiming: (t) => {
      if (keepTiming) timings.push(t);
      turnOver?.();
    },
  });
  const images = ['e.raw', 'd.raw', 'b.raw'].map((f) => {
    const p = join(dir, f);
    writeFileSync(p, Buffer.alloc(1 << 20));
    return p;
  });
  const io = diskIo(plan.runtime);
  const qmp = vm.qmp;
  progress('starting the daemon');
  const daemon = await spawnDaemon({ dir, env: { GKD_STORAGE_ROOTS: `${dir}/` } });
  const client = await RpcClient.connect(daemon.socket);
  // A second daemon over the same QEMU, on a monitor dedicated to it, keeping its connection.
  progress('starting the keep-open daemon');
  mkdirSync(join(keptDir, 'conf'), { recursive: true });
  await new RuntimeStore(join(keptDir, 'conf')).write(NAME, plan.runtime);
  const keptDaemon = await spawnDaemon({ dir: keptDir, env: { GKD_STORAGE_ROOTS: `${dir}/`, GKD_QMP_KEEP_OPEN: '1' } });
  const keptClient = await RpcClient.connect(keptDaemon.socket);
  progress(`starting the daemon with its dirs in ${tmpfs.dir}`);
  mkdirSync(join(shmDir, 'conf'), { recursive: true });
  await new RuntimeStore(join(shmDir, 'conf')).write(NAME, plan.runtime);
  const shmDaemon = await spawnDaemon({ dir: shmDir, env: { GKD_STORAGE_ROOTS: `${dir}/` } });
  const shmClient = await RpcClient.connect(shmDaemon.socket);

  const samples = {
    engineAdd: [] as number[], bareAdd: [] as number[], daemonAdd: [] as number[], engineRemove: [] as number[], bareRemove: [] as number[], daemonRemove: [] as number[],
    keptAdd: [] as number[], keptRemove: [] as number[], tmpfsAdd: [] as number[], tmpfsRemove: [] as number[],
    /** The bench process's own CPU time (user + system, all its threads) during each in-process add. */
    engineAddCpu: [] as number[],
    floorAdd: [] as number[], floorHandshake: [] as number[], floorBackend: [] as number[], floorDevice: [] as number[],
  };
  let seq = 0;
  const uuid = (): string => `${(0xb0000000 + seq++).toString(16)}-0000-4000-8000-000000000000`;
  const ms = (a: bigint, b: bigint): number => Number(b - a) / 1e6;

  const engineCycle = async (keep: boolean): Promise<void> => {
    const u = uuid();
    keepTiming = keep;
    const turn = new Promise<void>((resolve) => {
      turnOver = resolve;
    });
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await engine.addDisk(NAME, { uuid: u, path: images[0] });
    const t1 = process.hrtime.bigint();
    await turn;
    const cpu = process.cpuUsage(cpu0);
    turnOver = undefined;
    keepTiming = false;
    const r = await engine.removeDisk(NAME, u);
    const t2 = process.hrtime.bigint();
    if (r.status !== 'removed' || r.warnings.length > 0) throw new Error(`engine removal not clean: ${JSON.stringify(r)}`);
    if (keep) {
      samples.engineAdd.push(ms(t0, t1));
      samples.engineRemove.push(ms(t1, t2));
      samples.engineAddCpu.push((cpu.user + cpu.system) / 1000);
    }
  };
  const rpcCycle = async (c: RpcClient, name: string, path: string, keep: boolean, add: number[], remove: number[]): Promise<void> => {
    const u = uuid();
    const t0 = process.hrtime.bigint();
    await c.call('disk.add', { name, disk: { uuid: u, mode: 'rw', path } });
    const t1 = process.hrtime.bigint();
    const r = await c.call<{ status: string; warnings: string[] }>('disk.remove', { name, uuid: u });
    const t2 = process.hrtime.bigint();
    if (r.status !== 'removed' || r.warnings.length > 0) throw new Error(`daemon removal of ${name} not clean: ${JSON.stringify(r)}`);
    if (keep) {
      add.push(ms(t0, t1));
      remove.push(ms(t1, t2));
    }
  };
  const daemonCycle = (keep: boolean): Promise<void> => rpcCycle(client, NAME, images[1], keep, samples.daemonAdd, samples.daemonRemove);
  const keptCycle = (keep: boolean): Promise<void> => rpcCycle(keptClient, NAME, images[1], keep, samples.keptAdd, samples.keptRemove);
  const tmpfsCycle = (keep: boolean): Promise<void> => rpcCycle(shmClient, NAME, images[1], keep, samples.tmpfsAdd, samples.tmpfsRemove);
  // The bare sequence gets the address for free (target 0: the other series' disks are gone by then).
  const bareOn = async (q: QmpClient, keep: boolean, add: number[], remove: number[]): Promise<void> => {
    const id = `disk-${uuid().slice(0, 8)}`;
    const hvinfo: ScsiHvInfo = { driver: 'scsi-hd', id, bus: 'scsi.0', channel: 0, 'scsi-id': 0, lun: 0 };
    const t0 = process.hrtime.bigint();
    await q.execute('blockdev-add', blockdevArgs(id, { path: images[2], uri: null, readOnly: false, blockDevice: false }, io, 'disk'));
    await q.execute('device_add', diskDeviceArgs(hvinfo, io));
    const t1 = process.hrtime.bigint();
    const gone = q.expectEvent('DEVICE_DELETED', (d) => d.device === id, 5_000);
    await q.execute('device_del', { id });
    await gone;
    await q.execute('blockdev-del', { 'node-name': id });
    const t2 = process.hrtime.bigint();
    if (keep) {
      add.push(ms(t0, t1));
      remove.push(ms(t1, t2));
    }
  };
  const bareCycle = (keep: boolean): Promise<void> => bareOn(qmp, keep, samples.bareAdd, samples.bareRemove);
  // The floor: the engine's sequence from a minimal client; removed afterwards over the bare monitor, untimed.
  const floorCycle = async (keep: boolean): Promise<void> => {
    const id = `disk-${uuid().slice(0, 8)}`;
    const hvinfo: ScsiHvInfo = { driver: 'scsi-hd', id, bus: 'scsi.0', channel: 0, 'scsi-id': 0, lun: 0 };
    const line = (m: Record<string, unknown>): string => `${JSON.stringify(m)}\n`;
    const t0 = process.hrtime.bigint();
    const c = await RawQmpSocket.open(floorSock);
    c.write(line({ execute: 'qmp_capabilities', arguments: { enable: ['oob'] } }));
    expectReturns(await c.replies(2), 1, 'qmp_capabilities'); // the greeting, then the reply
    const t1 = process.hrtime.bigint();
    c.write(line({ execute: 'query-status', id: 1 }) + line({ execute: 'blockdev-add', id: 2, arguments: blockdevArgs(id, { path: images[2], uri: null, readOnly: false, blockDevice: false }, io, 'disk') }));
    expectReturns(await c.replies(2), 2, 'query-status + blockdev-add');
    const t2 = process.hrtime.bigint();
    c.write(line({ execute: 'device_add', id: 3, arguments: diskDeviceArgs(hvinfo, io) }) + line({ execute: 'qom-get', id: 4, arguments: { path: `/machine/peripheral/${id}`, property: 'scsi-id' } }));
    expectReturns(await c.replies(2), 2, 'device_add + qom-get');
    c.close();
    const t3 = process.hrtime.bigint();
    const gone = qmp.expectEvent('DEVICE_DELETED', (d) => d.device === id, 5_000);
    await qmp.execute('device_del', { id });
    await gone;
    await qmp.execute('blockdev-del', { 'node-name': id });
    if (keep) {
      samples.floorAdd.push(ms(t0, t3));
      samples.floorHandshake.push(ms(t0, t1));
      samples.floorBackend.push(ms(t1, t2));
      samples.floorDevice.push(ms(t2, t3));
    }
  };

  try {
    for (let i = 0; i < WARMUP; i++) {
      await engineCycle(false);
      await daemonCycle(false);
      await bareCycle(false);
      await keptCycle(false);
      await tmpfsCycle(false);
      await floorCycle(false);
    }
    for (let r = 0; r < ROUNDS; r++) {
      progress(`round ${r + 1}/${ROUNDS}`);
      for (let i = 0; i < iterations; i++) await bareCycle(true);
      for (let i = 0; i < iterations; i++) await engineCycle(true);
      for (let i = 0; i < iterations; i++) await daemonCycle(true);
      for (let i = 0; i < iterations; i++) await keptCycle(true);
      for (let i = 0; i < iterations; i++) await tmpfsCycle(true);
      for (let i = 0; i < iterations; i++) await floorCycle(true);
    }
    return {
      rows: {
        bareAdd: row('bare `blockdev-add` + `device_add`', samples.bareAdd),
        engineAdd: row('`HotplugEngine.addDisk`, in process', samples.engineAdd),
        daemonAdd: row('`disk.add` through the daemon (RPC)', samples.daemonAdd),
        bareRemove: row('bare `device_del` + `DEVICE_DELETED` + `blockdev-del`', samples.bareRemove),
        engineRemove: row('`HotplugEngine.removeDisk`, in process', samples.engineRemove),
        daemonRemove: row('`disk.remove` through the daemon (RPC)', samples.daemonRemove),
        keptAdd: row('`disk.add` through a daemon with `qmpKeepOpen` (RPC, its own monitor kept)', samples.keptAdd),
        keptRemove: row('`disk.remove` through a daemon with `qmpKeepOpen` (RPC, its own monitor kept)', samples.keptRemove),
        tmpfsAdd: row(`\`disk.add\` through a daemon with its dirs on ${tmpfs.isTmpfs ? 'tmpfs' : 'the temp dir (no tmpfs found)'} (RPC)`, samples.tmpfsAdd),
        tmpfsRemove: row(`\`disk.remove\` through a daemon with its dirs on ${tmpfs.isTmpfs ? 'tmpfs' : 'the temp dir (no tmpfs found)'} (RPC)`, samples.tmpfsRemove),
        floorAdd: row('floor: the engine\'s QMP sequence from a minimal client (fresh connection, `query-status` + `blockdev-add`, `device_add` + `qom-get`)', samples.floorAdd),
      },
      floorParts: { handshakeMs: median(samples.floorHandshake), backendMs: median(samples.floorBackend), deviceMs: median(samples.floorDevice) },
      tmpfs,
      phases: phaseRows(timings),
      hookTotalMs: median(timings.map((t) => t.totalMs)),
      engineAddCpuMs: median(samples.engineAddCpu),
      rounds: ROUNDS,
      iterations,
      warmup: WARMUP,
      load: { before: loadBefore, after: loadavg()[0] },
    };
  } finally {
    await client.close().catch(() => undefined);
    await keptClient.close().catch(() => undefined);
    await keptDaemon.stop();
    await shmClient.close().catch(() => undefined);
    await shmDaemon.stop();
    rmSync(shmDir, { recursive: true, force: true });
    await daemon.stop();
    await connections.closeAll();
    await vm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => quantileOf(xs, 0.5);

/** Throws unless the last `n` of `lines` are successful replies (the greeting, when there, comes first). */
function expectReturns(lines: string[], n: number, what: string): void {
  for (const l of lines.slice(-n)) if (!l.startsWith('{"return"')) throw new Error(`floor series: ${what} failed: ${l}`);
}

function row(name: string, s: number[]): HotplugBenchRow {
  const sorted = [...s].sort((a, b) => a - b);
  return { name, samples: s.length, medianMs: quantile(sorted, 0.5), p95Ms: quantile(sorted, 0.95) };
}

/** Median start and duration of each phase, in the order phases start. */
function phaseRows(timings: AddTiming[]): PhaseRow[] {
  const by = new Map<AddPhase, { start: number[]; dur: number[] }>();
  for (const t of timings) {
    for (const s of t.spans) {
      const e = by.get(s.phase) ?? { start: [], dur: [] };
      e.start.push(s.startMs);
      e.dur.push(s.endMs - s.startMs);
      by.set(s.phase, e);
    }
  }
  return [...by.entries()].map(([phase, e]) => ({ phase, startMs: median(e.start), durationMs: median(e.dur) })).sort((a, b) => a.startMs - b.startMs);
}

const f2 = (x: number): string => x.toFixed(2);

/** The section for BENCHMARKS.md (see the file comment). */
export function renderHotplugBench(r: HotplugBenchResult): string {
  const { bareAdd, engineAdd, daemonAdd, bareRemove, engineRemove, daemonRemove } = r.rows;
  const ratio = (a: HotplugBenchRow, b: HotplugBenchRow): string => f2(a.medianMs / b.medianMs);
  const out: string[] = [];
  out.push('## Hotplug', '');
  out.push(
    `\`bench/hotplug.bench.ts\` (\`npx tsc -p . && node dist/bench/hotplug.bench.js ${r.iterations}\`): a SCSI disk (scsi-hd on`,
    'virtio-scsi-pci, pc) hot-added and hot-removed on one paused QEMU started from the planner\'s argv, several',
    'ways, each on a QMP monitor of its own: the bare QMP sequence (`blockdev-add` + `device_add`; `device_del` +',
    'wait for `DEVICE_DELETED`, armed before the command, + `blockdev-del`) with the planner\'s arguments, the',
    'baseline; `HotplugEngine` in the bench process; and `disk.add` / `disk.remove` through a `kvm-devices serve`',
    'child (log level info) over one persistent RPC client, with the daemon\'s own short QMP connections and',
    'runtime dir; and through a second daemon with `qmpKeepOpen` on a fourth monitor of the same QEMU, dedicated',
    'to it, which keeps its connection; and through a third daemon like the first but with its run and runtime dirs',
    `on ${r.tmpfs.isTmpfs ? `tmpfs (\`${r.tmpfs.dir}\`)` : `\`${r.tmpfs.dir}\` (this machine has no tmpfs at /dev/shm)`}, where a Debian node keeps Ganeti's (\`/var/run/ganeti\` is under \`/run\`, a tmpfs);`,
    'the others keep theirs in the temp dir, on this machine\'s disk; and, as a floor, the QMP commands the engine sends for an add,',
    'on a fresh connection, from a minimal client on a monitor of its own (removed over the bare one, untimed). Every engine path takes the instance lock, journals the add, verifies it from QEMU and fsyncs the',
    `runtime file. ${r.rounds} interleaved rounds of ${r.iterations} add/remove pairs per series after ${r.warmup} warm-up pairs; load`,
    `average ${f2(r.load.before)} at the start, ${f2(r.load.after)} at the end (2 cores shared with other work).`,
    '',
    '| series | samples | median ms | p95 ms |',
    '|---|---|---|---|',
  );
  const { keptAdd, keptRemove, tmpfsAdd, tmpfsRemove, floorAdd } = r.rows;
  for (const x of [bareAdd, floorAdd, engineAdd, daemonAdd, tmpfsAdd, keptAdd, bareRemove, engineRemove, daemonRemove, tmpfsRemove, keptRemove]) out.push(`| ${x.name} | ${x.samples} | ${f2(x.medianMs)} | ${f2(x.p95Ms)} |`);
  out.push(
    '',
    `Medians over the bare sequence on the same QEMU: add through the daemon ${ratio(daemonAdd, bareAdd)} (dirs on disk), ${ratio(tmpfsAdd, bareAdd)} (dirs on tmpfs, as on a`,
    `Debian node), through the daemon keeping its own monitor ${ratio(keptAdd, bareAdd)}, in process ${ratio(engineAdd, bareAdd)}; removal through the daemon`,
    `${ratio(daemonRemove, bareRemove)} (disk), ${ratio(tmpfsRemove, bareRemove)} (tmpfs), keeping its monitor ${ratio(keptRemove, bareRemove)}, in process ${ratio(engineRemove, bareRemove)}.`,
    '',
    `* The floor row is QEMU's own time for the sequence the engine's guarantees call for, sent by a minimal client: ${f2(floorAdd.medianMs)} ms,`,
    `  ${ratio(floorAdd, bareAdd)} times the bare sequence (a fresh connection and its negotiation ${f2(r.floorParts.handshakeMs)} ms, \`query-status\` + \`blockdev-add\``,
    `  ${f2(r.floorParts.backendMs)}, \`device_add\` + \`qom-get\` ${f2(r.floorParts.deviceMs)}, medians). Above it, the daemon with its dirs on tmpfs spends`,
    `  ${f2(tmpfsAdd.medianMs - floorAdd.medianMs)} ms (${ratio({ ...tmpfsAdd, medianMs: tmpfsAdd.medianMs - floorAdd.medianMs }, bareAdd)} of the bare sequence) on its own work: the RPC call, the lock, the journal entry, the`,
    '  staged runtime file and its commit, and the connection in Node. On this machine that work does not run beside',
    '  QEMU\'s (see QMP: a write to the monitor wakes QEMU on the writer\'s core), so it adds to the floor. Under 2 times',
    `  the bare sequence the daemon's own work would have to fit in ${f2(2 * bareAdd.medianMs - floorAdd.medianMs)} ms.`,
    '* On a Ganeti node the daemon gives the monitor back after every operation (QEMU serves one client at a time,',
    '  and Ganeti gives up after 5 s), so each operation connects anew (greeting and `qmp_capabilities`); the',
    `  difference between the two daemon adds, ${f2(daemonAdd.medianMs - keptAdd.medianMs)} ms at the median, is about what that costs. \`qmpKeepOpen\``,
    '  is for monitors dedicated to the daemon only.',
    `* The runtime dir's filesystem: the same add costs ${f2(daemonAdd.medianMs - tmpfsAdd.medianMs)} ms more at the median with the dirs on disk than on tmpfs`,
    '  (file creation and the fsyncs of the lock, the journal entry, the staged runtime file and the directory).',
    '',
    `Where the in-process add's time goes (the engine's timing hook; median start and duration of each phase`,
    `over the ${engineAdd.samples} kept adds, ms from the call; phases in parentheses run beside others, off the critical path; the total is`,
    'until the caller has its answer):',
    '',
    '| phase | starts at | lasts |',
    '|---|---|---|',
  );
  // Both run while the QMP connection is made and the run state asked.
  const overlapped = new Set<AddPhase>(['runtime read', 'journal entry']);
  // After the caller's answer, in the instance's turn.
  const after = new Set<AddPhase>(['journal close', 'release']);
  for (const p of r.phases) out.push(`| ${overlapped.has(p.phase) ? `(${p.phase})` : after.has(p.phase) ? `${p.phase} (after the answer)` : p.phase} | ${f2(p.startMs)} | ${f2(p.durationMs)} |`);
  out.push(`| total (hook) | | ${f2(r.hookTotalMs)} |`);
  const dur = (ph: AddPhase): number => r.phases.find((p) => p.phase === ph)?.durationMs ?? 0;
  const start = (ph: AddPhase): number => r.phases.find((p) => p.phase === ph)?.startMs ?? 0;
  const qemu = dur('blockdev-add') + dur('device_add');
  const overhead = daemonAdd.medianMs - bareAdd.medianMs;
  out.push(
    '',
    `* Through the daemon an add costs ${f2(overhead)} ms more than the bare sequence; ${f2(daemonAdd.medianMs - engineAdd.medianMs)} ms of that is`,
    '  the daemon over the in-process engine (median difference; the engine keeps its dirs on disk, the daemon',
    '  on tmpfs has them where a Ganeti node does): the RPC round trip, schema validation and the path',
    '  confinement check (the call\'s log line is written after the reply).',
    `* Of the in-process add, QEMU's own two commands take ${f2(qemu)} ms (${Math.round((100 * qemu) / r.hookTotalMs)}%; the bare sequence ${f2(bareAdd.medianMs)} ms).`,
    `  Before \`blockdev-add\` (which starts at ${f2(start('blockdev-add'))} ms): the lock (${f2(dur('lock'))}, counted from the call: it includes opening`,
    `  the monitor's socket, which comes first), the runtime read (${f2(dur('runtime read'))}) and the journal entry (${f2(dur('journal entry'))}), while QEMU greets`,
    `  (the connection is ready ${f2(dur('qmp connect'))} ms after the lock; \`qmp_capabilities\` is sent with the connection and asks for \`oob\`,`,
    '  so QEMU reads pipelined commands ahead instead of one at a time). The run state question',
    `  (${f2(dur('run state'))}) and \`blockdev-add\` go out together, in one write; placement comes from the runtime file: no live`,
    '  read unless QEMU refuses the address. `device_add` waits for the backend\'s answer (a node of that name',
    `  already there would otherwise get the guest), and the verifying \`qom-get\` goes out with it (${f2(dur('verify'))} after its`,
    `  answer). Then the commit (staged file renamed: ${f2(dur('runtime commit'))}) and the runtime dir's sync (${f2(dur('dir sync'))}; nothing to do on`,
    '  tmpfs, where fsync is skipped), and the caller has its answer (the total). After the answer, still in the instance\'s',
    `  turn, the journal entry is closed (${f2(dur('journal close'))}) and the lock released (${f2(dur('release'))}): the next operation on the instance`,
    '  starts after them, the caller does not wait for them.',
    `* The engine's own CPU time per in-process add is ${f2(r.engineAddCpuMs)} ms (\`process.cpuUsage\`, all its threads, until the instance's`,
    `  turn ends, so the work after the answer is in it; QEMU's not included), and the add costs ${f2(engineAdd.medianMs - bareAdd.medianMs)} ms more than the bare sequence. On this machine the two add up rather`,
    '  than overlap: after idle time a write to the monitor wakes QEMU on the writer\'s core, where it waits until',
    '  the writer sleeps (see QMP: a round trip after idle time, with and without the caller\'s own work after',
    '  the write). So the add is QEMU\'s time for its four commands and the handshake plus the engine\'s CPU time,',
    '  and what lowers it is less CPU per add (one write per group of pipelined commands, small files written',
    '  synchronously instead of through the thread pool, no fsync on tmpfs, values read once) rather than more',
    '  overlap.',
    `* Removal is bound by QEMU: \`DEVICE_DELETED\` for a SCSI disk comes well after \`device_del\` (the bare removal`,
    `  takes ${f2(bareRemove.medianMs)} ms), so the engine's work (lock, journal, file write) mostly hides in that wait.`,
    '',
  );
  return out.join('\n');
}

if (require.main === module) {
  const n = Number(process.argv[2] ?? 40);
  runHotplugBench(n).then(
    (r) => process.stdout.write(renderHotplugBench(r)),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
