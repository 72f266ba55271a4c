/**
 * QMP round trips: `QmpClient.execute('query-status')` on a paused VM against
 * a raw socket write/read loop on a second QMP monitor of the same QEMU, in
 * the same run, rounds interleaved so both see the same machine load.
 *
 * Run: `npx tsc -p . && node dist/bench/qmp.bench.js [roundTrips]`; prints
 * its BENCHMARKS.md section.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchQemu } from '../plugin/process';
import type { QmpClient } from '../plugin/qmp';
import { QEMU_BINARY } from '../test/helpers/qemu';
import { fixed, mdTable, numberArg, progress, runSection } from './markdown';
import { RawQmpSocket } from './raw-qmp';

/** One measured series. */
export interface QmpBenchRow {
  name: string;
  /** Round trips per second (for `pipelined`, replies per second). */
  perSecond: number;
  p50Us: number;
  p99Us: number;
}

const ROUNDS = 5;
/** The idle series: each round trip after this long with nothing to do (as a hot-add comes, after idle time). */
const IDLE_BEFORE_MS = 2;
/** The busy series: this long of the caller's own CPU work between writing the request and waiting for the reply. */
const BUSY_AFTER_WRITE_MS = 0.5;

/** Measure and return the rows; `roundTrips` per round, {@link ROUNDS} rounds each. */
export async function runQmpBench(roundTrips = 2000): Promise<QmpBenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-bench-qmp-'));
  const rawPath = join(dir, 'raw.sock');
  const vm = await launchQemu(
    [QEMU_BINARY, '-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S', '-m', '64', '-qmp', `unix:${rawPath},server=on,wait=off`],
    { qmpSocket: join(dir, 'qmp.sock') },
  );
  const raw = await RawQmp.open(rawPath);
  try {
    const client: number[] = [];
    const baseline: number[] = [];
    const pipelined: number[] = [];
    const idle: number[] = [];
    const busy: number[] = [];
    let clientMs = 0;
    let baselineMs = 0;
    let pipelinedMs = 0;
    let idleMs = 0;
    let busyMs = 0;
    const idleTrips = Math.max(1, Math.round(roundTrips / 10));
    for (let r = 0; r < ROUNDS; r++) {
      progress('qmp', `round ${r + 1} of ${ROUNDS}`);
      clientMs += await timed(() => sequential(roundTrips, client, () => vm.qmp.execute('query-status')));
      baselineMs += await timed(() => sequential(roundTrips, baseline, () => raw.roundTrip()));
      pipelinedMs += await timed(() => burst(vm.qmp, roundTrips, pipelined));
      idleMs += await timed(() => sequential(idleTrips, idle, () => raw.roundTrip(0), IDLE_BEFORE_MS));
      busyMs += await timed(() => sequential(idleTrips, busy, () => raw.roundTrip(BUSY_AFTER_WRITE_MS), IDLE_BEFORE_MS));
    }
    const n = roundTrips * ROUNDS;
    return [
      row('`QmpClient.execute`, sequential', n, clientMs, client),
      row('raw socket write/read, sequential', n, baselineMs, baseline),
      row('`QmpClient.execute`, 100 in flight', n, pipelinedMs, pipelined),
      row(`raw socket, each after ${IDLE_BEFORE_MS} ms idle`, idleTrips * ROUNDS, idleMs, idle),
      row(`raw socket, each after ${IDLE_BEFORE_MS} ms idle, ${BUSY_AFTER_WRITE_MS} ms of the caller's own work right after the write`, idleTrips * ROUNDS, busyMs, busy),
    ];
  } finally {
    raw.close();
    await vm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `n` round trips one after the other; with `idleMs`, a sleep (not timed) before each. */
async function sequential(n: number, samples: number[], op: () => Promise<unknown>, idleMs = 0): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs));
    const t = process.hrtime.bigint();
    await op();
    samples.push(Number(process.hrtime.bigint() - t) / 1000);
  }
}

/** Keep 100 commands in flight; a sample is the latency of one command. */
async function burst(qmp: QmpClient, n: number, samples: number[]): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      const t = process.hrtime.bigint();
      await qmp.execute('query-status');
      samples.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
}

/** Wall time of `fn`, ms (for the idle series this includes the sleeps: their rate column means nothing). */
async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function row(name: string, n: number, ms: number, samples: number[]): QmpBenchRow {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number): number => Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0);
  return { name, perSecond: Math.round((n / ms) * 1000), p50Us: q(0.5), p99Us: q(0.99) };
}

/** The baseline: no framing state machine, no ids, no timers; one reply line per write. */
/** The baseline: `query-status` round trips on a bare connection (raw-qmp.ts). */
class RawQmp {
  readonly #raw: RawQmpSocket;

  private constructor(raw: RawQmpSocket) {
    this.#raw = raw;
  }

  static async open(path: string): Promise<RawQmp> {
    const raw = await RawQmpSocket.open(path);
    await raw.line(); // greeting
    raw.write('{"execute":"qmp_capabilities"}\n');
    await raw.line();
    return new RawQmp(raw);
  }

  /** One request and its reply; `busyMs` of CPU work (a spin) right after the write, before waiting. */
  async roundTrip(busyMs = 0): Promise<string> {
    this.#raw.write('{"execute":"query-status"}\n');
    if (busyMs > 0) {
      const until = process.hrtime.bigint() + BigInt(Math.round(busyMs * 1e6));
      while (process.hrtime.bigint() < until);
    }
    return this.#raw.line();
  }

  close(): void {
    this.#raw.close();
  }
}

export function qmpSection(rows: QmpBenchRow[], roundTrips: number): string {
  const [client, raw, burst, idle, busy] = rows;
  const perCmdUs = 1e6 / client.perSecond - 1e6 / raw.perSecond;
  return [
    '## QMP',
    '',
    `\`bench/qmp.bench.ts\`: \`query-status\` round trips on one paused VM (\`-S\`, \`-m 64\`). The baseline is a bare socket loop (write one request line, read one reply line, no JSON parsing, no ids, no timers) on a second \`-qmp\` monitor of the same QEMU. ${ROUNDS} interleaved rounds of ${roundTrips} round trips per series (a tenth of that for the two series after idle time).`,
    '',
    mdTable(['series', 'round trips/s', 'p50 µs', 'p99 µs'], rows.map((r) => [r.name, r.perSecond, r.p50Us, r.p99Us])),
    '',
    `* The client reaches ${fixed(client.perSecond / raw.perSecond, 2)} of the bare loop's rate: ${fixed(perCmdUs, 0)} µs more per command for framing, the UTF-8 check, \`JSON.parse\`, the id map and the per-command timer.`,
    `* With 100 commands in flight the rate is ${fixed(burst.perSecond / client.perSecond, 2)} times the sequential one and each command waits p50 ${fixed(burst.p50Us / 1000, 1)} ms: QEMU runs monitor commands one at a time, so a command queues behind the others.`,
    `* After ${IDLE_BEFORE_MS} ms of idle time, as a hot-add comes, a round trip takes p50 ${fixed(idle.p50Us, 0)} µs; with ${BUSY_AFTER_WRITE_MS} ms of the caller's own work between the write and the wait, p50 ${fixed(busy.p50Us, 0)} µs: ${fixed(busy.p50Us - idle.p50Us, 0)} µs more (QEMU answering during that work would have made it ${fixed(Math.max(BUSY_AFTER_WRITE_MS * 1000, idle.p50Us), 0)}). QEMU ${busy.p50Us - idle.p50Us > BUSY_AFTER_WRITE_MS * 1000 * 0.7 ? 'waited for the writer to stop' : 'partly waited for the writer'}, though the other core was free (the likely cause: a unix-socket write wakes the monitor's thread as a synchronous wake-up, which the scheduler places on the writer's core, expecting the writer to sleep). So a client's CPU time between its write and QEMU's answer adds to the latency of an operation that comes after idle time; the hot-add path writes each group of commands and then waits, and its own CPU time is what it can still cut (see Hotplug). The rate column of these two series includes the idle time.`,
  ].join('\n');
}

runSection(module, async () => {
  const n = numberArg(0, 2000);
  return qmpSection(await runQmpBench(n), n);
});
