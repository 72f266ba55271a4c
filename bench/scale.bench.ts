/**
 * One node with 1, 10 and 100 instances under one daemon: how hot-add
 * latency, instance.verify, the cluster-verify-post hook, the daemon's
 * memory and its open descriptors grow with the number of instances.
 *
 * For each N a fresh temp dir gets N planned instances (scsi-hd on
 * virtio-scsi-pci, one disk, -m 32), each a paused TCG QEMU started from
 * the planner's argv (two at a time) with its QMP socket where the daemon
 * looks (`<runDir>/ctrl/<name>.qmp`) and its runtime file in the daemon's
 * runtime dir. Then ONE real `kvm-devices serve` child starts over them (its
 * start-up pass compares every instance with its QEMU, as after a restart
 * of the daemon) and takes the work over its Unix socket:
 *
 * - 10 persistent RPC clients hot-add and hot-remove disks concurrently,
 *   client c on instances c, c+10, c+20, ... (mod N); at N=1 the ten share
 *   the one instance and queue behind each other on its lock. Beside it, one
 *   client doing the same cycles alone (the no-contention baseline).
 * - `instance.verify` of every instance, one after the other from one
 *   client, then spread over the 10 clients.
 * - `hooks/cluster-verify-post` run as Ganeti runs it (environment reset to
 *   PATH and GANETI_*, cwd /, stdin /dev/null), beside the one
 *   `runtime.list` call it makes, timed over a persistent client.
 * - The daemon's RSS, its heap used after a full GC (a preloaded probe, see
 *   heap-probe.ts), its descriptors and the QMP connections open to the
 *   instances, after start-up and after each of two identical rounds of
 *   the work: what a second round adds is what the daemon keeps per call.
 *
 * Run: `npx tsc -p . && node dist/bench/scale.bench.js [N ...]` (default 1 10 100)
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qmpSocketFor } from '../plugin/config';
import { buildArgv, planInstance } from '../plugin/planner';
import { launchQemu, type QemuProcess } from '../plugin/process';
import { prepareRunDir } from '../plugin/process/host-facts';
import { RpcClient } from '../plugin/rpc/client';
import { RuntimeStore } from '../plugin/runtime';
import type { InstanceSpec } from '../plugin/types';
import { ROOT, spawnDaemon, type DaemonProcess } from '../test/integration/rpc/daemon-process';
import { quantileOf } from './markdown';

const CLIENTS = 10;
/** Measured add/remove cycles per client per round (after one warm-up cycle each). */
const CYCLES = 10;
/** Cycles of the single-client baseline per round. */
const SERIAL_CYCLES = 10;
const ROUNDS = 2;
const HOOK_RUNS = 3;
/** QEMUs started (and stopped) at a time: the machine has 2 cores. */
const START_PARALLEL = 2;
const GANETI_PATH = '/sbin:/bin:/usr/sbin:/usr/bin';

/** Every QEMU this run started, so a failure anywhere still stops them all. */
const qemus = new Set<QemuProcess>();
let daemon: DaemonProcess | undefined;
/** The temp dir of the level under way, removed on an interrupt too. */
let levelDir: string | undefined;

function qemuBinary(): string {
  const named = process.env.QEMU_BINARY ?? 'qemu-system-x86_64';
  if (named.startsWith('/')) return named;
  const r = spawnSync('sh', ['-c', `command -v ${named}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status !== 0 || !path.startsWith('/')) throw new Error(`cannot find ${named} on PATH`);
  return path;
}

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');
/** A UUID unique in this run (the device id comes from its first three groups). */
const uuid = (kind: number, n: number): string => `${hex(kind * 0x10000000 + n, 8)}-0000-4000-8000-${hex(n, 12)}`;

/** A sparse 1 MiB raw image. */
function makeImage(path: string): string {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 1 << 20);
  closeSync(fd);
  return path;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  }));
  return out;
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

const median = (s: number[]): number => quantileOf(s, 0.5);

// ---- the daemon's process, seen from /proc ----

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU time the process has used, ms (utime + stime; the kernel counts in ticks of 10 ms). */
function cpuMs(pid: number): number {
  // The command name in parentheses may hold spaces: fields are counted after its closing parenthesis.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function fds(pid: number): { all: number; sockets: number } {
  const list = readdirSync(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const f of list) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${f}`).startsWith('socket:')) sockets++;
    } catch {
      // Closed between the listing and the readlink.
    }
  }
  return { all: list.length, sockets };
}

/**
 * Connections open on the instances' QMP sockets. Only the daemon uses
 * those sockets (the bench's own monitors are elsewhere), and QEMU's side of
 * an accepted connection carries the socket's path in /proc/net/unix, state
 * 03 (connected); the listening socket is state 01.
 */
function qmpConnections(ctrlDir: string): number {
  let n = 0;
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[5] === '03' && (f[7] ?? '').startsWith(`${ctrlDir}/`)) n++;
  }
  return n;
}

/** Heap figures after a full GC in the daemon (see heap-probe.ts). */
async function heapAfterGc(d: DaemonProcess, file: string): Promise<{ heapUsedMiB: number; externalMiB: number }> {
  if (existsSync(file)) unlinkSync(file);
  d.child.kill('SIGUSR2');
  const deadline = Date.now() + 10_000;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error('the daemon did not answer the heap probe');
    await sleep(20);
  }
  const m = JSON.parse(readFileSync(file, 'utf8')) as NodeJS.MemoryUsage;
  return { heapUsedMiB: m.heapUsed / 2 ** 20, externalMiB: (m.external + m.arrayBuffers) / 2 ** 20 };
}

interface MemPoint {
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  fds: number;
  sockets: number;
  qmp: number;
}

async function memPoint(d: DaemonProcess, probe: string, ctrlDir: string): Promise<MemPoint> {
  const pid = d.child.pid as number;
  // What closed connections and finished calls leave is collected first; the RSS is read after it.
  const heap = await heapAfterGc(d, probe);
  await sleep(200);
  const f = fds(pid);
  return { rssMiB: rssMiB(pid), ...heap, fds: f.all, sockets: f.sockets, qmp: qmpConnections(ctrlDir) };
}

// ---- one level ----

interface LevelResult {
  n: number;
  qemuStartS: number;
  /** Spawn to listening (Node start, config, socket). */
  listenMs: number;
  /** Listening to the end of the start-up pass over the N instances. */
  recoveryMs: number;
  /** Daemon CPU per concurrent add+remove cycle, ms. */
  cpuPerCycleMs: number[];
  /** Daemon CPU per instance.verify over both ways of verifying all, ms. */
  cpuPerVerifyMs: number[];
  addMs: number[];
  removeMs: number[];
  serialAddMs: number[];
  serialRemoveMs: number[];
  verifyMs: number[];
  verifyAllSeqMs: number[];
  verifyAllParMs: number[];
  hookMs: number[];
  listMs: number[];
  hookLine: string;
  idle: MemPoint;
  rounds: MemPoint[];
  /** With the 10 clients still connected, after the last round. */
  connected: { fds: number; sockets: number; qmp: number };
}

function spec(name: string, i: number, image: string, qemu: string): InstanceSpec {
  return {
    name,
    uuid: uuid(0x4, i),
    hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', kvm_path: qemu },
    beparams: { maxmem: 32, vcpus: 1 },
    disks: [{ uuid: uuid(0xd, i), mode: 'rw', path: image }],
    nics: [],
  };
}

async function runLevel(n: number, qemu: string): Promise<LevelResult> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-scale-'));
  levelDir = dir;
  const runDir = join(dir, 'run');
  const runtimeDir = join(dir, 'conf');
  const ctrlDir = join(runDir, 'ctrl');
  const imgDir = join(dir, 'img');
  const monDir = join(dir, 'mon');
  const probe = join(dir, 'heap.json');
  const configFile = join(dir, 'config.json');
  prepareRunDir(runDir);
  for (const d of [runtimeDir, imgDir, monDir]) mkdirSync(d, { recursive: true });
  // The socket spawnDaemon passes on the command line, for the hook that reads only this file.
  const config = { socket: join(dir, 'sock', 'rpc.sock'), runtimeDir, runDir, accel: 'tcg', qemuBinaries: [qemu], storageRoots: [`${dir}/`], logLevel: 'info' };
  writeFileSync(configFile, `${JSON.stringify(config)}\n`);
  const names = Array.from({ length: n }, (_, i) => `s${i}.example.com`);
  const mine: QemuProcess[] = [];
  try {
    // ---- N paused QEMUs and their runtime files, as Ganeti leaves them ----
    const store = new RuntimeStore(runtimeDir);
    const t0 = process.hrtime.bigint();
    await pool(names, START_PARALLEL, async (name, i) => {
      const plan = planInstance(spec(name, i, makeImage(join(imgDir, `i${i}.raw`)), qemu));
      await store.write(name, plan.runtime);
      const argv = buildArgv(plan.runtime, { accel: 'tcg', runDir, qmp: qmpSocketFor({ runDir, qmpPattern: '{runDir}/ctrl/{name}.qmp' }, name), paused: true, serials: [] });
      // A second monitor for the bench (stop, quit): the daemon's socket stays free for the daemon.
      const vm = await launchQemu(argv, { qmpSocket: join(monDir, `${i}.qmp`) });
      qemus.add(vm);
      mine.push(vm);
    });
    const qemuStartS = ms(t0) / 1000;
    process.stderr.write(`N=${n}: ${n} QEMU(s) started in ${qemuStartS.toFixed(1)} s\n`);

    // ---- one daemon over them ----
    const t1 = process.hrtime.bigint();
    const d = await spawnDaemon({
      dir,
      env: { NODE_OPTIONS: `--expose-gc --require ${join(__dirname, 'heap-probe.js')}`, GKD_BENCH_HEAP_FILE: probe },
    });
    daemon = d;
    const listenMs = ms(t1);
    const t2 = process.hrtime.bigint();
    while (!d.log().includes('start-up recovery done')) {
      if (d.child.exitCode !== null) throw new Error(`daemon exited: ${d.log().slice(-2000)}`);
      if (ms(t1) > 300_000) throw new Error('start-up recovery did not finish within 300 s');
      await sleep(20);
    }
    const recoveryMs = ms(t2);
    const recoveryLine = d.log().split('\n').find((l) => l.includes('start-up recovery done')) ?? '';
    if (!recoveryLine.includes(`"instances":${n}`) || !recoveryLine.includes('"differing":0')) {
      throw new Error(`start-up recovery did not see ${n} clean instances: ${recoveryLine}`);
    }
    await sleep(500);
    const idle = await memPoint(d, probe, ctrlDir);

    const images = Array.from({ length: CLIENTS }, (_, c) => makeImage(join(imgDir, `c${c}.raw`)));
    const serialImage = makeImage(join(imgDir, 'serial.raw'));
    let seq = 0;
    const r: Omit<LevelResult, 'n' | 'qemuStartS' | 'listenMs' | 'recoveryMs' | 'idle' | 'rounds' | 'connected' | 'hookLine'> = {
      cpuPerCycleMs: [], cpuPerVerifyMs: [], addMs: [], removeMs: [], serialAddMs: [], serialRemoveMs: [], verifyMs: [], verifyAllSeqMs: [], verifyAllParMs: [], hookMs: [], listMs: [],
    };
    const cycle = async (c: RpcClient, name: string, image: string, add?: number[], remove?: number[]): Promise<void> => {
      const u = uuid(0xa, seq++);
      const ta = process.hrtime.bigint();
      await c.call('disk.add', { name, disk: { uuid: u, mode: 'rw', path: image } });
      const added = ms(ta);
      const tr = process.hrtime.bigint();
      const rm = await c.call<{ status: string; warnings: string[] }>('disk.remove', { name, uuid: u });
      const removed = ms(tr);
      if (rm.status !== 'removed' || rm.warnings.length > 0) throw new Error(`removal of ${u} from ${name} not clean: ${JSON.stringify(rm)}`);
      add?.push(added);
      remove?.push(removed);
    };
    const target = (c: number, k: number): string => names[(c + CLIENTS * k) % n] as string;

    const rounds: MemPoint[] = [];
    let connected = { fds: 0, sockets: 0, qmp: 0 };
    let hookLine = '';
    for (let round = 0; round < ROUNDS; round++) {
      const clients = await Promise.all(Array.from({ length: CLIENTS }, () => RpcClient.connect(d.socket, { callTimeoutMs: 120_000 })));
      const one = clients[0] as RpcClient;
      try {
        // Hot-add / hot-remove: 10 clients at once, then one client alone.
        await Promise.all(clients.map((c, ci) => cycle(c, target(ci, 0), images[ci] as string)));
        const cpu0 = cpuMs(d.child.pid as number);
        await Promise.all(clients.map(async (c, ci) => {
          for (let k = 1; k <= CYCLES; k++) await cycle(c, target(ci, k), images[ci] as string, r.addMs, r.removeMs);
        }));
        r.cpuPerCycleMs.push((cpuMs(d.child.pid as number) - cpu0) / (CLIENTS * CYCLES));
        for (let k = 0; k < SERIAL_CYCLES; k++) await cycle(one, names[(k * 7) % n] as string, serialImage, r.serialAddMs, r.serialRemoveMs);

        // instance.verify of every instance: one after the other, then over the 10 clients.
        const cpuV = cpuMs(d.child.pid as number);
        const ts = process.hrtime.bigint();
        for (const name of names) {
          const tv = process.hrtime.bigint();
          const v = await one.call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name });
          r.verifyMs.push(ms(tv));
          if (!v.clean) throw new Error(`${name} not clean: ${JSON.stringify(v)}`);
        }
        r.verifyAllSeqMs.push(ms(ts));
        const tp = process.hrtime.bigint();
        await Promise.all(clients.map(async (c, ci) => {
          for (let i = ci; i < n; i += CLIENTS) {
            const v = await c.call<{ clean: boolean }>('instance.verify', { name: names[i] });
            if (!v.clean) throw new Error(`${names[i]} not clean: ${JSON.stringify(v)}`);
          }
        }));
        r.verifyAllParMs.push(ms(tp));
        r.cpuPerVerifyMs.push((cpuMs(d.child.pid as number) - cpuV) / (2 * n));

        // cluster-verify-post as Ganeti runs it, beside the runtime.list call it makes.
        for (let h = 0; h < HOOK_RUNS; h++) {
          const hook = await runHook(configFile);
          if (hook.status !== 0 || !hook.out.includes(`ok: ${n} runtime file(s)`)) throw new Error(`cluster-verify-post: exit ${hook.status}: ${hook.out}`);
          r.hookMs.push(hook.ms);
          hookLine = hook.out.trim().replace(dir, '<dir>');
          const tl = process.hrtime.bigint();
          const list = await one.call<{ files: unknown[] }>('runtime.list', { expect: '2.16' });
          r.listMs.push(ms(tl));
          if (list.files.length !== n) throw new Error(`runtime.list saw ${list.files.length} files, not ${n}`);
        }
        const f = fds(d.child.pid as number);
        connected = { fds: f.all, sockets: f.sockets, qmp: qmpConnections(ctrlDir) };
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
      await sleep(500);
      rounds.push(await memPoint(d, probe, ctrlDir));
      process.stderr.write(`N=${n}: round ${round + 1} done, RSS ${rounds[round]?.rssMiB.toFixed(1)} MiB\n`);
    }
    if (d.child.exitCode !== null) throw new Error('the daemon died');
    const code = await d.stop();
    daemon = undefined;
    if (code !== 0) throw new Error(`daemon exited with ${code}: ${d.log().slice(-2000)}`);
    return { n, qemuStartS, listenMs, recoveryMs, idle, rounds, connected, hookLine, ...r };
  } finally {
    if (daemon !== undefined) await daemon.stop('SIGKILL').catch(() => undefined);
    daemon = undefined;
    await pool(mine, START_PARALLEL * 4, async (vm) => {
      await vm.stop();
      qemus.delete(vm);
    });
    rmSync(dir, { recursive: true, force: true });
    levelDir = undefined;
  }
}

/** What Ganeti exports to a cluster-verify post hook (LUClusterVerifyGroup). */
const CLUSTER_VERIFY_ENV: Record<string, string> = {
  GANETI_HOOKS_VERSION: '2', GANETI_HOOKS_PHASE: 'post', GANETI_HOOKS_PATH: 'cluster-verify',
  GANETI_OP_CODE: 'OP_CLUSTER_VERIFY_GROUP', GANETI_DATA_DIR: '/var/lib/ganeti', GANETI_OBJECT_TYPE: 'CLUSTER',
  GANETI_CLUSTER: 'cluster.example.com', GANETI_MASTER: 'node1.example.com',
  GANETI_CLUSTER_TAGS: '', GANETI_NODE_TAGS_node1_example_com: '',
};

/**
 * Runs hooks/cluster-verify-post as Ganeti does: environment reset to PATH
 * and GANETI_*, cwd /, stdin /dev/null. GKD_CONFIG stands in for the
 * installed /etc/ganeti-kvm-devices/config.json (which this run must not
 * read or write).
 */
function runHook(configFile: string): Promise<{ status: number | null; out: string; ms: number }> {
  const t0 = process.hrtime.bigint();
  const child = spawn(join(ROOT, 'hooks', 'cluster-verify-post'), [], {
    env: { PATH: GANETI_PATH, ...CLUSTER_VERIFY_ENV, GKD_CONFIG: configFile }, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, out, ms: ms(t0) }));
  });
}

// ---- the report ----

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');

interface Metric {
  name: string;
  values: number[];
  /**
   * How it should grow with N: `flat` (per call, per instance, a fixed cost) or `linear` (a total over
   * N). A flat figure growing like N makes the total over N quadratic.
   */
  ideal: 'flat' | 'linear';
  /** Comparable only between levels of at least this N (the 10 clients share instances below it). */
  from?: number;
}

/** Growth exponent over one step: 0 flat, 1 linear, above 1 worse than linear. */
function exponent(a: number, b: number, na: number, nb: number): number {
  if (!(a > 0) || !(b > 0)) return NaN;
  return Math.log(b / a) / Math.log(nb / na);
}

function report(levels: LevelResult[], totalS: number, load: string, leftover: number): string {
  const ns = levels.map((l) => l.n);
  const last = (l: LevelResult): MemPoint => l.rounds[l.rounds.length - 1] as MemPoint;
  const out: string[] = [];
  out.push('## Scale: 1, 10 and 100 instances under one daemon', '');
  out.push(
    '`bench/scale.bench.ts` (`npx tsc -p . && node dist/bench/scale.bench.js`): for each N, N paused TCG QEMUs (`-S`, `-m 32`, ' +
    'scsi-hd on virtio-scsi-pci with one disk, started two at a time from the planner\'s argv) with their runtime files, and one ' +
    'fresh `kvm-devices serve` child over them (its start-up pass compares every instance with its QEMU). ' +
    `${CLIENTS} persistent RPC clients hot-add and hot-remove disks at once, client c on instances c, c+${CLIENTS}, ... (mod N): ` +
    `at N=1 all ${CLIENTS} share the one instance and queue on its lock, from N=${CLIENTS} on each add is on an instance no other client uses at that moment. ` +
    `The baseline, in the same run, is one client doing the same cycles alone. Then \`instance.verify\` of every instance, one after the ` +
    `other from one client and spread over the ${CLIENTS} clients, and \`hooks/cluster-verify-post\` run as Ganeti runs it ` +
    '(environment reset to PATH and GANETI_* plus GKD_CONFIG, cwd /) beside the one `runtime.list` call it makes. ' +
    `${ROUNDS} identical rounds per N (${CLIENTS}×${CYCLES} concurrent and ${SERIAL_CYCLES} single-client add/remove cycles after a warm-up, ` +
    `N verifies each way, ${HOOK_RUNS} hook runs); latencies pool both rounds. Memory is read after start-up and after each round with ` +
    'the clients closed: RSS, and the heap used after a full GC (a probe preloaded into the daemon). ' +
    `Load average at the start ${load}; the whole run took ${totalS.toFixed(0)} s.`,
    '',
  );
  out.push('| N | QEMU start s | daemon spawn to listening ms | start-up pass ms | hot-add p50 / p99 ms (10 clients) | daemon CPU ms per add+remove | hot-add p50 / p99 ms (1 client) | hot-remove p50 / p99 ms (10 clients) | hot-remove p50 ms (1 client) |');
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const l of levels) {
    out.push(`| ${l.n} | ${f1(l.qemuStartS)} | ${f1(l.listenMs)} | ${f1(l.recoveryMs)} | ${f1(median(l.addMs))} / ${f1(quantileOf(l.addMs, 0.99))} | ${f1(median(l.cpuPerCycleMs))} | ` +
      `${f1(median(l.serialAddMs))} / ${f1(quantileOf(l.serialAddMs, 0.99))} | ${f1(median(l.removeMs))} / ${f1(quantileOf(l.removeMs, 0.99))} | ${f1(median(l.serialRemoveMs))} |`);
  }
  out.push('', `Samples per N: ${levels[0]?.addMs.length ?? 0} concurrent and ${levels[0]?.serialAddMs.length ?? 0} single-client adds (and as many removals); p99 of ${levels[0]?.addMs.length ?? 0} samples is the second largest.`, '');
  out.push('| N | verify p50 ms per call | daemon CPU ms per verify | verify all, one client, ms | per instance ms | verify all, 10 clients, ms | per instance ms | cluster-verify-post ms (median of ' + `${HOOK_RUNS * ROUNDS}) | runtime.list ms |`);
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const l of levels) {
    const seq = median(l.verifyAllSeqMs);
    const par = median(l.verifyAllParMs);
    out.push(`| ${l.n} | ${f1(median(l.verifyMs))} | ${f1(median(l.cpuPerVerifyMs))} | ${f1(seq)} | ${f2(seq / l.n)} | ${f1(par)} | ${f2(par / l.n)} | ${f1(median(l.hookMs))} | ${f1(median(l.listMs))} |`);
  }
  out.push('');
  const base = levels[0] as LevelResult;
  out.push(`| N | RSS MiB: start-up / ${levels[0]?.rounds.map((_, i) => `round ${i + 1}`).join(' / ')} | RSS growth over the work / N, KiB | ` +
    `RSS per extra instance KiB: vs N=${base.n} after the work | heap after GC MiB: start-up / ${levels[0]?.rounds.map((_, i) => `round ${i + 1}`).join(' / ')} | ` +
    'fds: start-up / 10 clients connected / after | sockets: start-up / after | QMP connections open: clients connected / after |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const l of levels) {
    const r = l.rounds;
    const marginal = l === base ? '–' : f1(((last(l).rssMiB - last(base).rssMiB) / (l.n - base.n)) * 1024);
    out.push(`| ${l.n} | ${f1(l.idle.rssMiB)} / ${r.map((x) => f1(x.rssMiB)).join(' / ')} | ${f1(((last(l).rssMiB - l.idle.rssMiB) / l.n) * 1024)} | ${marginal} | ` +
      `${f1(l.idle.heapUsedMiB)} / ${r.map((x) => f1(x.heapUsedMiB)).join(' / ')} | ${l.idle.fds} / ${l.connected.fds} / ${last(l).fds} | ` +
      `${l.idle.sockets} / ${last(l).sockets} | ${l.connected.qmp} / ${last(l).qmp} |`);
  }
  out.push('');

  // Growth: factor and exponent per step of N.
  const metrics: Metric[] = [
    { name: 'hot-add p50, 10 clients', values: levels.map((l) => median(l.addMs)), ideal: 'flat', from: CLIENTS },
    { name: 'hot-add p99, 10 clients', values: levels.map((l) => quantileOf(l.addMs, 0.99)), ideal: 'flat', from: CLIENTS },
    { name: 'daemon CPU per add+remove', values: levels.map((l) => median(l.cpuPerCycleMs)), ideal: 'flat' },
    { name: 'hot-add p50, 1 client', values: levels.map((l) => median(l.serialAddMs)), ideal: 'flat' },
    { name: 'hot-remove p50, 10 clients', values: levels.map((l) => median(l.removeMs)), ideal: 'flat', from: CLIENTS },
    { name: 'hot-remove p50, 1 client', values: levels.map((l) => median(l.serialRemoveMs)), ideal: 'flat' },
    { name: 'instance.verify p50 per call', values: levels.map((l) => median(l.verifyMs)), ideal: 'flat' },
    { name: 'daemon CPU per verify', values: levels.map((l) => median(l.cpuPerVerifyMs)), ideal: 'flat' },
    { name: 'verify all, one client', values: levels.map((l) => median(l.verifyAllSeqMs)), ideal: 'linear' },
    { name: 'verify all, 10 clients', values: levels.map((l) => median(l.verifyAllParMs)), ideal: 'linear' },
    { name: 'daemon start-up pass', values: levels.map((l) => l.recoveryMs), ideal: 'linear' },
    { name: 'cluster-verify-post hook', values: levels.map((l) => median(l.hookMs)), ideal: 'linear' },
    { name: 'runtime.list', values: levels.map((l) => median(l.listMs)), ideal: 'linear' },
    { name: 'daemon RSS after start-up', values: levels.map((l) => l.idle.rssMiB), ideal: 'linear' },
    { name: 'daemon RSS after the work', values: levels.map((l) => last(l).rssMiB), ideal: 'linear' },
    { name: 'daemon heap after GC, after the work', values: levels.map((l) => last(l).heapUsedMiB), ideal: 'linear' },
    { name: 'daemon fds after the work', values: levels.map((l) => last(l).fds), ideal: 'flat' },
  ];
  const steps = ns.slice(1).map((nb, i) => [ns[i] as number, nb] as const);
  const worse: string[] = [];
  if (steps.length > 0) {
    out.push(`| metric | ${ns.map((x) => `N=${x}`).join(' | ')} | ${steps.map(([a, b]) => `×${a}→${b} (exponent)`).join(' | ')} |`);
    out.push(`|---|${ns.map(() => '---').join('|')}|${steps.map(() => '---').join('|')}|`);
    for (const m of metrics) {
      const cells = steps.map(([a, b], i) => {
        const x = m.values[i] as number;
        const y = m.values[i + 1] as number;
        if (a < (m.from ?? 0)) return 'not comparable';
        const e = exponent(x, y, a, b);
        // Worse than linear: a total growing faster than N, or a per-call figure growing about like N (its total then grows like N²).
        // Steps ending below N=10 are left out: fixed costs and noise swamp a factor of 2 or 3.
        if (Number.isFinite(e) && b >= 10 && e > (m.ideal === 'linear' ? 1.15 : 0.5)) worse.push(`${m.name} (N=${a}→${b}: ×${f2(y / x)}, exponent ${f2(e)})`);
        return `${f2(y / x)} (${f2(e)})`;
      });
      out.push(`| ${m.name} | ${m.values.map(f1).join(' | ')} | ${cells.join(' | ')} |`);
    }
    out.push('', 'Exponent = log(factor) / log(N step): 0 means the figure does not grow with N, 1 means it grows like N. ' +
      'Flagged as worse than linear: a total (verify all, start-up pass, hook, runtime.list, memory) with an exponent above 1.15, ' +
      'or a per-call figure with an exponent above 0.5 (a per-call cost growing like N makes the total over N grow like N²), on steps ending at N ≥ 10.', '');
  }

  // Notes, every number from this run.
  const notes: string[] = [];
  const byN = (n: number): LevelResult | undefined => levels.find((l) => l.n === n);
  const first = levels[0];
  const top = levels[levels.length - 1];
  if (first !== undefined && top !== undefined && top !== first) {
    notes.push(`From N=${first.n} to N=${top.n}: hot-add p50 with one client ${f1(median(first.serialAddMs))} → ${f1(median(top.serialAddMs))} ms, ` +
      `instance.verify p50 ${f1(median(first.verifyMs))} → ${f1(median(top.verifyMs))} ms per call, verify of all instances ${f1(median(first.verifyAllSeqMs))} → ${f1(median(top.verifyAllSeqMs))} ms ` +
      `(${f2(median(top.verifyAllSeqMs) / top.n)} ms per instance at N=${top.n}), the hook ${f1(median(first.hookMs))} → ${f1(median(top.hookMs))} ms, of which runtime.list is ${f1(median(top.listMs))} ms at N=${top.n}.`);
    const dRss = (last(top).rssMiB - last(first).rssMiB) / (top.n - first.n);
    const dHeap = (last(top).heapUsedMiB - last(first).heapUsedMiB) / (top.n - first.n);
    notes.push(`Daemon memory per extra instance between N=${first.n} and N=${top.n}, after the work: ${f2(dRss * 1024)} KiB RSS, ${f2(dHeap * 1024)} KiB heap after GC.`);
  }
  const one = byN(1);
  const ten = byN(CLIENTS);
  if (one !== undefined && ten !== undefined) {
    notes.push(`At N=1 the ${CLIENTS} clients queue on the one instance's lock: concurrent hot-add p50 ${f1(median(one.addMs))} ms against ${f1(median(one.serialAddMs))} ms alone; ` +
      `at N=${CLIENTS} (one instance each) ${f1(median(ten.addMs))} ms against ${f1(median(ten.serialAddMs))} ms alone (the 2 cores are shared by the daemon, the clients and the QEMUs).`);
  }
  if (ten !== undefined) {
    const cycle = median(ten.addMs) + median(ten.removeMs);
    notes.push(`Under concurrency the daemon's one thread is a bound: at N=${ten.n} it spends ${f1(median(ten.cpuPerCycleMs))} ms of CPU per add+remove, so ${CLIENTS} clients' cycles ` +
      `need ${f1(CLIENTS * median(ten.cpuPerCycleMs))} ms of it, against a measured cycle (add p50 + remove p50) of ${f1(cycle)} ms; the rest is the QEMUs, the clients and other load on the same 2 cores.`);
  }
  const verifyCpu = levels.map((l) => f1(median(l.cpuPerVerifyMs))).join(', ');
  notes.push(`instance.verify costs the daemon ${verifyCpu} ms of CPU per call (N=${ns.join(', ')}); the rest of its latency is QMP round trips to a TCG QEMU.`);
  if (first !== undefined) {
    const fixed = median(first.hookMs) - median(first.listMs);
    notes.push(`The hook's wall time is mostly outside the daemon (the hook process's start, connect and exit): at N=${first.n} it is ${f1(median(first.hookMs))} ms, of which ${f1(median(first.listMs))} ms is the runtime.list call (${f1(fixed)} ms is not).`);
  }
  const retained = levels.map((l) => `N=${l.n}: ${f2(last(l).heapUsedMiB - (l.rounds[0] as MemPoint).heapUsedMiB)} MiB`);
  const rssGrowth = levels.map((l) => `N=${l.n}: ${f1(last(l).rssMiB - l.idle.rssMiB)} MiB RSS against ${f2(last(l).heapUsedMiB - l.idle.heapUsedMiB)} MiB heap after GC`);
  notes.push(`What the second round added to the heap after GC (what the daemon keeps per call): ${retained.join(', ')}. ` +
    `Over the work the daemon grew by ${rssGrowth.join('; ')}: RSS keeps the heap space V8 grew to while busy (compare the growth across N), so "RSS growth over the work / N" is large at small N by construction; the per extra instance column is the one that scales.`);
  const qmpAfter = levels.map((l) => last(l).qmp);
  const fdDelta = levels.map((l) => last(l).fds - l.idle.fds);
  notes.push(`QMP connections open to the instances after the work: ${qmpAfter.join(', ')} (N=${ns.join(', ')}); daemon descriptors after the work minus at start-up: ${fdDelta.join(', ')}; ` +
    `with the ${CLIENTS} clients connected the daemon held ${levels.map((l) => l.connected.sockets - l.idle.sockets).join(', ')} more sockets than at start-up.`);
  notes.push(worse.length === 0
    ? 'Nothing grew worse than linearly in N (no total with an exponent above 1.15, no per-call figure above 0.5).'
    : `Grew faster than linearly: ${worse.join('; ')}.`);
  notes.push(`QEMU processes of this run left at the end: ${leftover}.`);
  if (top !== undefined) notes.push(`The hook's answer at N=${top.n}: \`${top.hookLine}\``);
  out.push(...notes.map((x) => `* ${x}`));
  return `${out.join('\n')}\n`;
}

function killAll(): void {
  for (const vm of qemus) {
    try {
      process.kill(vm.pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  if (daemon?.child.exitCode === null) daemon.child.kill('SIGKILL');
  if (levelDir !== undefined) rmSync(levelDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const levels = process.argv.slice(2).map(Number);
  if (levels.length === 0) levels.push(1, 10, 100);
  if (!levels.every((n) => Number.isInteger(n) && n > 0)) throw new Error('usage: scale.bench.js [N ...] (positive integers)');
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const qemu = qemuBinary();
  const t0 = process.hrtime.bigint();
  const results: LevelResult[] = [];
  for (const n of levels) results.push(await runLevel(n, qemu));
  const totalS = ms(t0) / 1000;
  // Every QEMU of this run has "gkd-scale-" in its command line (its temp dir).
  const left = spawnSync('pgrep', ['-f', join(tmpdir(), 'gkd-scale-')], { encoding: 'utf8' }).stdout.trim();
  const leftover = left === '' ? 0 : left.split('\n').length;
  process.stdout.write(report(results, totalS, load, leftover));
  if (leftover > 0) throw new Error(`${leftover} QEMU process(es) left running: ${left}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  killAll();
  process.exitCode = 1;
});
