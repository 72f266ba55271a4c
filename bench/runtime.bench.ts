/**
 * Runtime files: conversions per second in memory (beside a JSON.parse +
 * JSON.stringify baseline of the same file), and files per second for the
 * bulk tools on a directory of many files (each file: lock, read, detect,
 * validate, convert, atomic write with two fsyncs, unlock).
 *
 * Run: `npx tsc -p . && node dist/bench/runtime.bench.js [seconds-per-series] [files]`;
 * prints its BENCHMARKS.md section.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertAll, convertRuntime, detectFormat, parseRuntime, serializeRuntime, validateRuntime } from '../plugin/runtime';
import { sample210 } from '../test/helpers/runtime-samples';
import { fixed, mdTable, numberArg, progress, runSection } from './markdown';
import { measureThroughput, type ThroughputRow } from './measure';

type Row = ThroughputRow;
const measure = (name: string, seconds: number, fn: () => unknown): Row => {
  progress('runtime', name);
  return measureThroughput(name, seconds, fn);
};

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
      progress('runtime', name);
      const t0 = process.hrtime.bigint();
      const r = await run();
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      rows.push({ name: `${name} → ${JSON.stringify(r.counts)}`, perSecond: Math.round(files / secs), usPerOp: Math.round((secs / files) * 1e7) / 10 });
    };
    await time(`upgrade-all --to 2.16 (all 2.10: lock, read, convert, atomic write, unlock)`, () => convertAll(dir, { to: '2.16', direction: 'upgrade' }));
    await time(`upgrade-all --to 2.16 again (all unchanged: lock, read, unlock)`, () => convertAll(dir, { to: '2.16', direction: 'upgrade' }));
    await time(`downgrade-all --to 2.10 --dry-run (read and convert only, no locks)`, () => convertAll(dir, { to: '2.10', direction: 'downgrade', dryRun: true }));
    await time(`downgrade-all --to 2.10 (all convert back)`, () => convertAll(dir, { to: '2.10', direction: 'downgrade' }));
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function table(rows: Row[], what: string, unit: string): string {
  return mdTable([what, `${unit}/s`, 'µs each'], rows.map((r) => [r.name, r.perSecond, r.usPerOp]));
}

async function main(): Promise<string> {
  const seconds = numberArg(0, 1);
  const files = numberArg(1, 10_000);
  const mem = memoryRows(seconds);
  const bulk = await bulkRows(files);
  const us = (prefix: string): number => mem.find((r) => r.name.startsWith(prefix))?.usPerOp ?? NaN;
  const bytes = serializeRuntime(sample210()).length;
  const [upgrade, unchanged, dry] = bulk;
  return [
    '## Runtime files',
    '',
    `\`bench/runtime.bench.ts\`: ${seconds} s per in-memory series after a warm-up, then the bulk tools on ${files} files. The file is Ganeti 2.15's sample runtime (one NIC, two disks, a full hvparams dict: ${fixed(bytes / 1024, 1)} KB in Ganeti's encoding). Every \`convertRuntime\` call validates its input and its output against the JSON Schemas. The baselines are \`JSON.parse\` + \`JSON.stringify\` and \`JSON.stringify\` of the same file, in the same run.`,
    '',
    table(mem, 'series (in memory)', 'ops'),
    '',
    table(bulk, `bulk series (${files} files in one directory under ${tmpdir()})`, 'files'),
    '',
    `* In memory a conversion 2.10 → 2.16 with both schema checks costs ${fixed(us('convertRuntime 2.10') / us('baseline: JSON.parse'), 2)} times one \`JSON.parse\` + \`JSON.stringify\` of the same file; Ganeti-identical serialization costs ${fixed(us('serializeRuntime') / us('baseline: JSON.stringify'), 1)} times \`JSON.stringify\` (a hand-written encoder for Python's separators, \`ensure_ascii\` escapes and float repr).`,
    `* On disk the bulk tools are bound by durability: a converted file costs ${fixed(upgrade.usPerOp / 1000, 2)} ms (two \`fsync\`s: the temp file, then the directory after the rename, plus the lock directory's \`mkdir\`/\`rmdir\`), an unchanged one ${fixed(unchanged.usPerOp / 1000, 2)} ms and a dry run ${fixed(dry.usPerOp / 1000, 2)} ms. At this rate 10 000 instances convert in ${fixed((10_000 * upgrade.usPerOp) / 1e6, 0)} s; real nodes hold tens.`,
  ].join('\n');
}

runSection(module, main);
