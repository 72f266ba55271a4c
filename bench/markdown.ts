/**
 * What every bench needs to print its one Markdown section (the output
 * protocol: `## Title`, the method paragraph, tables, notes, on stdout;
 * progress on stderr) and the sample statistics the sections quote.
 */

/** A Markdown table; cells are printed as given (format numbers first). */
export function mdTable(header: string[], rows: Array<Array<string | number>>): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The `p`-quantile (0..1) of ascending `sorted`, nearest rank below. */
export function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

/** The `p`-quantile (0..1) of unsorted `samples`. */
export function quantileOf(samples: readonly number[], p: number): number {
  return quantile([...samples].sort((a, b) => a - b), p);
}

/** Median and p95 of unsorted samples. */
export function medianP95(samples: readonly number[]): { median: number; p95: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), p95: quantile(s, 0.95) };
}

/** `x` with `digits` decimals. */
export function fixed(x: number, digits = 1): string {
  return x.toFixed(digits);
}

/** Progress for the person running the bench; never part of the section. */
export function progress(bench: string, message: string): void {
  process.stderr.write(`[${bench}] ${message}\n`);
}

/**
 * Runs a bench's `main` when the file is run directly: writes the section it
 * returns to stdout, or the error to stderr with exit status 1.
 */
export function runSection(mod: NodeModule, main: () => Promise<string> | string): void {
  if (require.main !== mod) return;
  Promise.resolve()
    .then(main)
    .then(
      (section) => {
        process.stdout.write(`${section.trimEnd()}\n`);
      },
      (err: unknown) => {
        process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
        process.exitCode = 1;
      },
    );
}

/** The number given as argument `index` of the bench's command line, or `fallback`. */
export function numberArg(index: number, fallback: number): number {
  const v = process.argv[2 + index];
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`argument ${index + 1} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}
