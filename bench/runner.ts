/**
 * `npm run bench`: runs every `*.bench.js` next to this file, one after the
 * other (never two at once: they share the cores with QEMU; `sync` before
 * each, so one bench's writeback does not slow the next one's fsyncs), and writes
 * BENCHMARKS.md: a header describing the machine and the versions, then each
 * bench's section in {@link ORDER}.
 *
 * Each bench prints exactly one Markdown section on stdout (starting with a
 * `## ` line) and its progress on stderr, which passes through here. A bench
 * that exits non-zero, or prints no section, gets a section saying so, and
 * the runner exits 1 after running the others.
 *
 * `npm run bench -- qmp rpc` runs only the benches whose names start with one
 * of the arguments and replaces only their sections in the existing
 * BENCHMARKS.md (a section missing there is added in its place in the
 * order); the header is rewritten with this run's machine and date, and says
 * which sections it ran. `--print` writes the result to stdout instead of
 * the file.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { QEMU_BINARY } from '../test/helpers/qemu';

/** Section order in BENCHMARKS.md: from the smallest building block to the whole daemon. Benches not listed follow, by name. */
export const ORDER = ['qmp', 'plan', 'runtime', 'hotplug', 'hook', 'migrate', 'rpc', 'hostile-rss', 'scale', 'ganeti'];

const ROOT = join(__dirname, '..', '..');
const OUTPUT = join(ROOT, 'BENCHMARKS.md');
/** Marks where a bench's section begins in BENCHMARKS.md, so a partial run finds it again. */
const MARK = (name: string): string => `<!-- bench: ${name} -->`;

interface Outcome {
  name: string;
  section: string;
  ok: boolean;
  seconds: number;
}

function benchNames(): string[] {
  const all = readdirSync(__dirname).filter((f) => f.endsWith('.bench.js')).map((f) => f.replace(/\.bench\.js$/, ''));
  const rank = (n: string): number => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length);
  return all.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** Runs one bench; its stderr passes through (and its tail is kept for a failure). */
function runBench(name: string): Promise<Outcome> {
  const t0 = process.hrtime.bigint();
  process.stderr.write(`\n=== ${name}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(__dirname, `${name}.bench.js`)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errTail = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      process.stderr.write(d);
      errTail = (errTail + d).slice(-4000);
    });
    child.on('error', (err) => {
      errTail += `\n${err.message}`;
    });
    child.on('close', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const body = out.trim();
      const how = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
      const lastLines = errTail.trim().split('\n').slice(-8).map((l) => `    ${l}`).join('\n');
      let section: string;
      let ok = code === 0 && signal === null;
      if (!ok) {
        section = `## ${name}\n\n**FAILED**: \`bench/${name}.bench.ts\` ${how} after ${seconds.toFixed(0)} s; this section has no results from this run.`;
        if (lastLines !== '') section += ` The end of its error output:\n\n${lastLines}`;
      } else if (!body.startsWith('## ')) {
        ok = false;
        section = `## ${name}\n\n**FAILED**: \`bench/${name}.bench.ts\` printed no Markdown section (the first line of its output must be a \`## \` title).`;
        if (body !== '') section += ` What it printed:\n\n${body.split('\n').map((l) => `    ${l}`).join('\n')}`;
      } else {
        section = body;
      }
      process.stderr.write(`=== ${name}: ${ok ? 'done' : 'FAILED'} in ${seconds.toFixed(1)} s\n`);
      resolve({ name, section, ok, seconds });
    });
  });
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0].trim() : `unknown (${cmd} ${args.join(' ')} failed)`;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return fallback;
  }
}

/** The QEMU the benches start: QEMU_BINARY (as tests use it), resolved on PATH. */
function qemuDescription(): string {
  const version = firstLine(QEMU_BINARY, ['--version']).replace(/^QEMU emulator version /, '');
  const path = QEMU_BINARY.includes('/') ? QEMU_BINARY : firstLine('sh', ['-c', `command -v ${QEMU_BINARY}`]);
  return `QEMU ${version} (\`${path}\`, TCG)`;
}

function header(ran: string[], partial: boolean, totalSeconds: number): string {
  const cpuList = cpus();
  const models = [...new Set(cpuList.map((c) => c.model.trim()))].join(', ');
  const memGiB = (totalmem() / 2 ** 30).toFixed(1);
  const debian = readOr('/etc/debian_version', 'not Debian');
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace('T', ' ');
  const earlier = partial ? /^- Date: (.*)$/m.exec(readOr(OUTPUT, ''))?.[1]?.replace(/ \(.*$/, '') : undefined;
  const scope = partial
    ? `This run (${totalSeconds.toFixed(0)} s) updated only: ${ran.map((n) => `\`${n}\``).join(', ')}; the other sections are from an earlier run${earlier === undefined ? '' : ` (${earlier})`}.`
    : `The whole run took ${totalSeconds.toFixed(0)} s.`;
  return [
    '# Benchmarks',
    '',
    'Generated by `npm run bench` (`bench/runner.ts` runs each `bench/*.bench.ts` and writes this file); do not edit by hand. Every section measures its baseline in the same run, on the same machine.',
    '',
    `- Machine: ${cpuList.length} × ${models}, ${memGiB} GiB memory, Linux ${release()}, Debian ${debian}`,
    `- Date: ${date}`,
    `- Node ${process.version}; ${qemuDescription()}`,
    `- ${scope}`,
  ].join('\n');
}

/** Splits an existing BENCHMARKS.md into its marked sections. */
function existingSections(): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(OUTPUT)) return out;
  const parts = readFileSync(OUTPUT, 'utf8').split(/^<!-- bench: ([\w.-]+) -->\n/m);
  for (let i = 1; i + 1 < parts.length; i += 2) out.set(parts[i], parts[i + 1].trim());
  return out;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const print = args.includes('--print');
  const only = args.filter((a) => a !== '--print');
  const all = benchNames();
  const selected = all.filter((n) => only.length === 0 || only.some((o) => n.startsWith(o)));
  if (selected.length === 0) {
    process.stderr.write(`no bench matches ${only.join(', ')} (benches: ${all.join(', ')})\n`);
    return 2;
  }
  const t0 = process.hrtime.bigint();
  const outcomes: Outcome[] = [];
  for (const name of selected) {
    // What the previous bench left dirty in the page cache (the runtime bench writes 30 000 files) is
    // written back first: otherwise its writeback slows the next bench's fsyncs.
    spawnSync('sync', { stdio: 'ignore' });
    outcomes.push(await runBench(name));
  }
  const totalSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

  const partial = selected.length < all.length;
  const sections = partial ? existingSections() : new Map<string, string>();
  for (const o of outcomes) sections.set(o.name, o.section);
  const names = all.filter((n) => sections.has(n));
  const doc = `${header(selected, partial, totalSeconds)}\n${names.map((n) => `\n${MARK(n)}\n${sections.get(n)}\n`).join('')}`;
  if (print) process.stdout.write(doc);
  else {
    writeFileSync(OUTPUT, doc);
    process.stderr.write(`\nwrote ${OUTPUT}\n`);
  }
  const failed = outcomes.filter((o) => !o.ok).map((o) => o.name);
  process.stderr.write(`${outcomes.length} bench(es) in ${totalSeconds.toFixed(0)} s${failed.length === 0 ? '' : `; FAILED: ${failed.join(', ')}`}\n`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
