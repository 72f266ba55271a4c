/**
 * Ganeti operations with and without the plugin's hooks, on the real
 * two-node Ganeti 3.0 lab of the Ganeti suite (`ganeti-lab.sh up2`; needs
 * root, and builds the lab when it is not up). "Without" moves every hook
 * script of the plugin aside for that run (Ganeti skips hook files whose
 * names have a dot), so both are measured on the same cluster, rounds
 * interleaved.
 *
 * - Operations on one instance (scsi-hd on lsi, an IDE CD-ROM, no guest OS):
 *   start, hot-add and hot-remove of a disk, grow-disk, a CD-ROM change,
 *   shutdown; wall time of each Ganeti command.
 * - Live migration of a booted guest, node1 -> node2 -> node1: the wall time
 *   of `gnt-instance migrate` and the guest's downtime as an observer sees
 *   it: the guest writes a tick to its serial console every 5 ms, and the
 *   downtime is the gap between the last tick from the source QEMU and the
 *   first from the target's (both serial sockets are read by this process).
 *
 * Run (as root): `npx tsc -p . && node dist/bench/ganeti.bench.js [rounds]`
 */
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { addInstance, gnt, gntTry, HOOKS_DIR, removeInstance, startGuestInstance, stopDaemon } from '../test/ganeti/helpers/lab';
import { ensureTwoNodes, NODE2, NODES, stopNode2Daemon } from '../test/ganeti/helpers/node2';
import { quantileOf } from './markdown';

const ROUNDS = Number(process.argv[2] ?? 3);
const TITLE = '## Ganeti operations with and without the hooks';

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '-');

/** The plugin's hook scripts under Ganeti's hooks dir. */
function hookFiles(): string[] {
  if (!existsSync(HOOKS_DIR)) return [];
  return readdirSync(HOOKS_DIR).map((d) => join(HOOKS_DIR, d, 'kvm-devices')).filter((f) => existsSync(f) || existsSync(`${f}.aside`));
}

/** Runs fn with the plugin's hooks moved aside, putting them back whatever happens. */
async function withoutHooks<T>(fn: () => Promise<T>): Promise<T> {
  const files = hookFiles();
  for (const f of files) if (existsSync(f)) renameSync(f, `${f}.aside`);
  try {
    return await fn();
  } finally {
    for (const f of files) if (existsSync(`${f}.aside`)) renameSync(`${f}.aside`, f);
  }
}

async function timed(cmd: string, ...args: string[]): Promise<number> {
  const r = await gnt(cmd, ...args);
  return r.ms;
}

type Variant = 'with hooks' | 'without hooks';
const VARIANTS: Variant[] = ['with hooks', 'without hooks'];

/** Series name -> variant -> samples (ms). */
class Samples {
  readonly data = new Map<string, Map<Variant, number[]>>();
  /** Samples that could not be measured (NaN: a guest's serial ticks not seen), per series. */
  readonly missed = new Map<string, number>();
  add(series: string, v: Variant, x: number): void {
    if (!Number.isFinite(x)) {
      this.missed.set(series, (this.missed.get(series) ?? 0) + 1);
      return;
    }
    const m = this.data.get(series) ?? new Map<Variant, number[]>();
    this.data.set(series, m);
    m.set(v, [...(m.get(v) ?? []), x]);
  }
  rows(): string[] {
    const out: string[] = [];
    for (const [series, m] of this.data) {
      const w = m.get('with hooks') ?? [];
      const wo = m.get('without hooks') ?? [];
      const d = quantileOf(w, 0.5) - quantileOf(wo, 0.5);
      out.push(`| ${series} | ${w.length} | ${ms(quantileOf(w, 0.5))} | ${ms(quantileOf(w, 0.95))} | ${ms(quantileOf(wo, 0.5))} | ${ms(quantileOf(wo, 0.95))} | ${ms(d)} |`);
    }
    return out;
  }
}

const OPS = 'gkd-bench-ops.example.com';
const DOWNTIME = 'guest downtime (serial ticks)';
const MIG = 'gkd-bench-mig.example.com';
const IMAGES = '/srv/ganeti/file-storage/gkd-bench-images';

async function operationsRound(s: Samples, v: Variant, round: number): Promise<void> {
  s.add('`gnt-instance start`', v, await timed('gnt-instance', 'start', OPS));
  s.add('`gnt-instance modify --hotplug --disk add`', v, await timed('gnt-instance', 'modify', '--hotplug', '--disk', 'add:size=4M', OPS));
  s.add('`gnt-instance modify --hotplug --disk 1:remove`', v, await timed('gnt-instance', 'modify', '--hotplug', '--disk', '1:remove', OPS));
  s.add('`gnt-instance grow-disk` (running)', v, await timed('gnt-instance', 'grow-disk', OPS, '0', '1M'));
  s.add('`gnt-instance modify -H cdrom_image_path` (running)', v, await timed('gnt-instance', 'modify', '-H', `cdrom_image_path=${join(IMAGES, round % 2 === 0 ? 'b.iso' : 'a.iso')}`, OPS));
  s.add('`gnt-instance shutdown --timeout=0`', v, await timed('gnt-instance', 'shutdown', '--timeout=0', OPS));
}

/** Reads a Ganeti serial socket, keeping the arrival time of the last and first tick. */
function tickReader(path: string): { first?: number; last?: number; close(): void; ready: Promise<void> } {
  const r: { first?: number; last?: number; close(): void; ready: Promise<void> } = { close: () => undefined, ready: Promise.resolve() };
  const sock: Socket = connect(path);
  r.ready = new Promise((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  sock.on('data', (b: Buffer) => {
    if (!b.includes('T')) return;
    const now = performance.now();
    r.first ??= now;
    r.last = now;
  });
  sock.on('error', () => undefined);
  r.close = () => sock.destroy();
  return r;
}

/** One `gnt-instance migrate` of the booted guest; wall time and downtime as the serial ticks show it. */
async function migrateOnce(from: 1 | 2, to: 1 | 2): Promise<{ wall: number; downtime: number }> {
  const serial = (n: 1 | 2): string => `${NODES[n].runDir}/kvm-hypervisor/ctrl/${MIG}.serial`;
  const src = tickReader(serial(from));
  await src.ready;
  let dst: ReturnType<typeof tickReader> | undefined;
  let stop = false;
  // Attach to the target's serial socket as soon as Ganeti starts the target QEMU.
  const watch = (async () => {
    while (!stop && dst === undefined) {
      if (existsSync(serial(to))) {
        const d = tickReader(serial(to));
        try {
          await d.ready;
          dst = d;
        } catch {
          d.close();
        }
      }
      if (dst === undefined) await new Promise((res) => setTimeout(res, 20));
    }
  })();
  const wall = await timed('gnt-instance', 'migrate', '-f', '-n', NODES[to].name, MIG);
  const t0 = performance.now();
  while ((dst?.first === undefined || (dst.first ?? 0) < (src.last ?? 0)) && performance.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 20));
  stop = true;
  await watch;
  src.close();
  dst?.close();
  const downtime = dst?.first !== undefined && src.last !== undefined ? dst.first - src.last : NaN;
  return { wall, downtime };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stdout.write(`${TITLE}\n\nNot measured in this run: it drives the Ganeti suite's lab, which needs root.\n`);
    return;
  }
  const started = Date.now();
  await ensureTwoNodes();
  mkdirSync(IMAGES, { recursive: true });
  writeFileSync(join(IMAGES, 'a.iso'), Buffer.alloc(64 * 1024, 'a'));
  writeFileSync(join(IMAGES, 'b.iso'), Buffer.alloc(64 * 1024, 'b'));
  const ops = new Samples();
  const mig = new Samples();
  try {
    await removeInstance(OPS);
    const r = await addInstance(OPS, { template: 'sharedfile', disks: 1, nics: 1, start: false, hv: { disk_type: 'scsi-hd', cdrom_disk_type: 'ide', cdrom_image_path: join(IMAGES, 'a.iso') } });
    if (r.code !== 0) throw new Error(`gnt-instance add failed: ${r.stdout}${r.stderr}`);
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
        process.stderr.write(`operations round ${round + 1}/${ROUNDS}, ${v}\n`);
        if (v === 'with hooks') await operationsRound(ops, v, round);
        else await withoutHooks(() => operationsRound(ops, v, round));
      }
    }
    await removeInstance(OPS);

    const con = await startGuestInstance(MIG, { template: 'sharedfile', disks: 1, nics: 1, diskSizeMb: 8 });
    // Ticks on ttyS0 (Ganeti's serial console) every 5 ms, for the downtime.
    await con.check('(while :; do echo T; usleep 5000; done) >/dev/ttyS0 2>&1 </dev/null &');
    con.close();
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
        process.stderr.write(`migration round ${round + 1}/${ROUNDS}, ${v}\n`);
        const run = async (): Promise<void> => {
          for (const [from, to] of [[1, 2], [2, 1]] as const) {
            const m = await migrateOnce(from, to);
            mig.add('`gnt-instance migrate`, wall time', v, m.wall);
            mig.add(DOWNTIME, v, m.downtime);
          }
        };
        if (v === 'with hooks') await run();
        else await withoutHooks(run);
      }
    }
  } finally {
    await removeInstance(OPS).catch(() => undefined);
    await removeInstance(MIG).catch(() => undefined);
    await gntTry('gnt-instance', 'list').catch(() => undefined);
    await stopDaemon();
    await stopNode2Daemon();
  }
  const head = '| series | samples | with hooks p50 ms | p95 | without p50 ms | p95 | hooks add (p50) |\n|---|---|---|---|---|---|---|';
  const opsRows = ops.rows();
  const migRows = mig.rows();
  const diffOf = (series: string): number => {
    const m = mig.data.get(series);
    const w = m?.get('with hooks') ?? [];
    const wo = m?.get('without hooks') ?? [];
    return w.length === 0 || wo.length === 0 ? NaN : quantileOf(w, 0.5) - quantileOf(wo, 0.5);
  };
  const migDiff = diffOf('`gnt-instance migrate`, wall time');
  const downDiff = diffOf(DOWNTIME);
  const downMissed = mig.missed.get(DOWNTIME) ?? 0;
  process.stdout.write([
    TITLE,
    '',
    `\`bench/ganeti.bench.ts\` (as root: \`node dist/bench/ganeti.bench.js ${ROUNDS}\`): Ganeti 3.0's own commands on the Ganeti suite's`,
    `two-node lab (${NODES[1].name}, ${NODE2}; KVM under TCG; sharedfile disks), each operation with the plugin's hooks installed`,
    'and with every hook script of the plugin moved aside, in interleaved rounds on the same cluster and daemons. Wall time',
    'of the Ganeti command, which includes Ganeti\'s own job processing (most of it).',
    '',
    `### One instance, ${ROUNDS} rounds (scsi-hd on lsi, IDE CD-ROM, no guest OS)`,
    '',
    head,
    ...opsRows,
    '',
    '* With the hooks, grow-disk and the CD-ROM change also take effect in the running QEMU (disk-grow-post,',
    '  instance-modify-post); without them QEMU keeps the old size and medium until the next start. The',
    '  difference column is what each operation pays for its hooks on this machine.',
    '',
    `### Live migration of a booted guest (128 MiB), node1 → node2 → node1, ${ROUNDS} rounds`,
    '',
    head,
    ...migRows,
    '',
    `* The pre hooks run before Ganeti starts the move (drift check on the source, format check from the master).`,
    '  Ganeti polls a migration\'s progress once a second (`_MIGRATION_POLL_INTERVAL` in its cmdlib/instance_migration.py),',
    '  so the wall time moves in steps of about a second: the hooks\' own time (a hook\'s run is measured under',
    '  "Ganeti hook wall time"; on the master the format check also asks the other node over SSH) shows here',
    `  as no step or one; in this run the medians differ by ${ms(migDiff)} ms.`,
    Number.isFinite(downDiff)
      ? `* The guest's downtime, which QEMU alone decides, differs by ${ms(downDiff)} ms between the two. Downtime is what an observer of the`
      : '* The guest\'s downtime could not be compared in this run (a variant without any round read). Downtime is what an observer of the',
    `  guest's serial console sees (5 ms ticks), so it includes the serial sockets' own latency${downMissed > 0 ? `; ${downMissed} of the migrations gave no reading (no tick seen from one of the two QEMUs) and are left out` : ''}.`,
    '',
    `Run time of this bench: ${((Date.now() - started) / 1000).toFixed(0)} s.`,
    '',
  ].join('\n'));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
