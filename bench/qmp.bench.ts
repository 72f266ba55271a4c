/**
 * QMP round trips: `QmpClient.execute('query-status')` on a paused VM against
 * a raw socket write/read loop on a second QMP monitor of the same QEMU, in
 * the same run, rounds interleaved so both see the same machine load.
 *
 * Run: `npx tsc -p . && node dist/bench/qmp.bench.js [roundTrips]`; prints
 * its BENCHMARKS.md section.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchQemu } from '../plugin/process';
import type { QmpClient } from '../plugin/qmp';
import { QEMU_BINARY } from '../test/helpers/qemu';
import { fixed, mdTable, numberArg, progress, runSection } from './markdown';

/** One measured series. */
export interface QmpBenchRow {
  name: string;
  /** Round trips per second (for `pipelined`, replies per second). */
  perSecond: number;
  p50Us: number;
  p99Us: number;
}

const ROUNDS = 5;

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
    let clientMs = 0;
    let baselineMs = 0;
    let pipelinedMs = 0;
    for (let r = 0; r < ROUNDS; r++) {
      progress('qmp', `round ${r + 1} of ${ROUNDS}`);
      clientMs += await timed(() => sequential(roundTrips, client, () => vm.qmp.execute('query-status')));
      baselineMs += await timed(() => sequential(roundTrips, baseline, () => raw.roundTrip()));
      pipelinedMs += await timed(() => burst(vm.qmp, roundTrips, pipelined));
    }
    const n = roundTrips * ROUNDS;
    return [row('`QmpClient.execute`, sequential', n, clientMs, client), row('raw socket write/read, sequential', n, baselineMs, baseline), row('`QmpClient.execute`, 100 in flight', n, pipelinedMs, pipelined)];
  } finally {
    raw.close();
    await vm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function sequential(n: number, samples: number[], op: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i++) {
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
class RawQmp {
  #socket: Socket;
  #buf = '';
  #wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buf += d;
      this.#wake?.();
    });
  }

  static async open(path: string): Promise<RawQmp> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ path }, () => resolve(s));
      s.once('error', reject);
    });
    const raw = new RawQmp(socket);
    await raw.#line(); // greeting
    socket.write('{"execute":"qmp_capabilities"}\n');
    await raw.#line();
    return raw;
  }

  async roundTrip(): Promise<string> {
    this.#socket.write('{"execute":"query-status"}\n');
    return this.#line();
  }

  async #line(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf('\n');
      if (i !== -1) {
        const l = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        return l;
      }
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

export function qmpSection(rows: QmpBenchRow[], roundTrips: number): string {
  const [client, raw, burst] = rows;
  const perCmdUs = 1e6 / client.perSecond - 1e6 / raw.perSecond;
  return [
    '## QMP',
    '',
    `\`bench/qmp.bench.ts\`: \`query-status\` round trips on one paused VM (\`-S\`, \`-m 64\`). The baseline is a bare socket loop (write one request line, read one reply line, no JSON parsing, no ids, no timers) on a second \`-qmp\` monitor of the same QEMU. ${ROUNDS} interleaved rounds of ${roundTrips} round trips per series.`,
    '',
    mdTable(['series', 'round trips/s', 'p50 µs', 'p99 µs'], rows.map((r) => [r.name, r.perSecond, r.p50Us, r.p99Us])),
    '',
    `* The client reaches ${fixed(client.perSecond / raw.perSecond, 2)} of the bare loop's rate: ${fixed(perCmdUs, 0)} µs more per command for framing, the UTF-8 check, \`JSON.parse\`, the id map and the per-command timer.`,
    `* With 100 commands in flight the rate is ${fixed(burst.perSecond / client.perSecond, 2)} times the sequential one and each command waits p50 ${fixed(burst.p50Us / 1000, 1)} ms: QEMU runs monitor commands one at a time, so a command queues behind the others.`,
  ].join('\n');
}

runSection(module, async () => {
  const n = numberArg(0, 2000);
  return qmpSection(await runQmpBench(n), n);
});
