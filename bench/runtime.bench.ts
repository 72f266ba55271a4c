/**
 * Runtime files: conversions per second in memory (beside a JSON.parse +
 * JSON.stringify baseline of the same file), and files per second for the
 * bulk tools on a directory of many files (each file: lock, read, detect,
 * validate, convert, atomic write with two fsyncs, unlock).
 *
 * Run: `npx tsc -p . && node dist/bench/runtime.bench.js [seconds-per-series] [files]`
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertAll, convertRuntime, detectFormat, parseRuntime, serializeRuntime, validateRuntime } from '../plugin/runtime';
import { sample210 } from '../test/helpers/runtime-samples';
import { measureThroughput, type ThroughputRow } from './measure';

type Row = ThroughputRow;
const measure = (name: string, seconds: number, fn: () => unknown): Row => measureThroughput(name, seconds, fn);

function memoryRows(seconds: number): Row[] {
  const v210 = sample210();
  const v216 = convertRuntime(v210, '2.16').value;
  const text210 = serializeRuntime(v210);
  const text216 = serializeRuntime(v216);
  return [
    measure('baseline: JSON.parse + JSON.stringify (2.10 file)', seconds, () => JSON.stringify(JSON.parse(text210))),
    measure('parseRuntime + detectFormat + validateRuntime (2.10)', seconds, () => {
      const v = parseRuntime(text210);
      validateRuntime(v, detectFormat(v));
    }),
    measure('convertRuntime 2.10 → 2.16 (validates in and out)', seconds, () => convertRuntime(v210, '2.16')),
    measure('convertRuntime 2.16 → 2.10 (validates in and out)', seconds, () => convertRuntime(v216, '2.10')),
    measure('convertRuntime 2.16 → 2.9, refused (error built)', seconds, () => {
      try {
        convertRuntime(v216, '2.9');
      } catch {
        /* expected */
      }
    }),
    measure('serializeRuntime (2.16, Python json.dumps bytes)', seconds, () => serializeRuntime(v216)),
    measure('text 2.10 → text 2.16 (parse, convert, serialize)', seconds, () =>
      serializeRuntime(convertRuntime(parseRuntime(text210), '2.16').value),
    ),
    measure('baseline: JSON.stringify (2.16 file)', seconds, () => JSON.stringify(v216)),
    measure('parseRuntime (2.16 text)', seconds, () => parseRuntime(text216)),
  ];
}

async function bulkRows(files: number): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-bench-runtime-'));
  try {
    const text = serializeRuntime(sample210());
    for (let i = 0; i < files; i++) writeFileSync(join(dir, `inst${i}.example.com.runtime`), text);
    const rows: Row[] = [];
    const time = async (name: string, run: () => Promise<{ counts: Record<string, number> }>): Promise<void> => {
      const t0 = process.hrtime.bigint();
      const r = await run();
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      rows.push({ name: `${name} → ${JSON.stringify(r.counts)}`, perSecond: Math.round(files / secs), usPerOp: Math.round((secs / files) * 1e7) / 10 });
    };
    await time(`upgrade-all --to 2.16, ${files} files (2.10)`, () => convertAll(dir, { to: '2.16', direction: 'upgrade' }));
    await time(`upgrade-all --to 2.16 again, all unchanged`, () => convertAll(dir, { to: '2.16', direction: 'upgrade' }));
    await time(`downgrade-all --to 2.10 --dry-run`, () => convertAll(dir, { to: '2.10', direction: 'downgrade', dryRun: true }));
    await time(`downgrade-all --to 2.10`, () => convertAll(dir, { to: '2.10', direction: 'downgrade' }));
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function table(rows: Row[], unit: string): string {
  const lines = [`| series | ${unit}/s | µs each |`, '|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.name} | ${r.perSecond} | ${r.usPerOp} |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 1);
  const files = Number(process.argv[3] ?? 10_000);
  process.stdout.write(`${table(memoryRows(seconds), 'ops')}\n\n`);
  process.stdout.write(`${table(await bulkRows(files), 'files')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`);
  process.exitCode = 1;
});
