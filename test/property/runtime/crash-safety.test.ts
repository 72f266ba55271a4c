/**
 * Crash safety of `runtime upgrade-all`: a parent SIGKILLs the converting
 * process at random points, many times; after every kill each runtime file
 * must be exactly the old version or exactly the new one (complete, valid),
 * with its mode kept. Kills are timed by the child's own progress lines, so
 * most land between or inside file writes rather than before start-up.
 * A final run that is not killed must remove the temp files the killed
 * runs left.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { convertRuntime, detectFormat, parseRuntime, serializeRuntime, validateRuntime } from '../../../plugin/runtime';
import { makeTempDir, removeDir } from '../../helpers/runtime-dir';
import { sample210 } from '../../helpers/runtime-samples';

const MAIN = join(__dirname, '..', '..', '..', 'plugin', 'cli', 'main.js');
const FILES = 40;
const MAX_RUNS = 24;
const BUDGET_MS = 14_000;

/** Runs upgrade-all and SIGKILLs it after `lines` progress lines plus `delayMs`; resolves when it is gone. */
function runAndKill(dir: string, lines: number, delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'runtime', 'upgrade-all', '--to', '2.16', '--lock-wait', '0', dir], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let seen = 0;
    let armed = false;
    const kill = (): void => {
      if (armed) return;
      armed = true;
      setTimeout(() => child.kill('SIGKILL'), delayMs);
    };
    if (lines === 0) kill();
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString().split('\n').length - 1;
      if (seen >= lines) kill();
    });
    child.once('exit', () => resolve());
  });
}

describe('upgrade-all under SIGKILL', function () {
  this.timeout(60_000);
  let dir: string;
  afterEach(() => removeDir(dir));

  it('leaves every file either the old or the new version, complete, valid, with its mode', async () => {
    dir = makeTempDir();
    const names = Array.from({ length: FILES }, (_, i) => `inst${i}.example.com`);
    // Each file differs (its own instance name in kvm_cmd) so a mix-up would show.
    const oldText = new Map<string, string>();
    const newText = new Map<string, string>();
    for (const n of names) {
      const v = sample210();
      v[0][2] = n;
      oldText.set(n, serializeRuntime(v));
      newText.set(n, serializeRuntime(convertRuntime(v, '2.16').value));
    }
    const reset = (n: string): void => {
      const tmp = join(dir, `reset-${n}`);
      writeFileSync(tmp, oldText.get(n)!);
      chmodSync(tmp, 0o640);
      renameSync(tmp, join(dir, `${n}.runtime`));
    };
    names.forEach(reset);

    const rng = fc.sample(fc.tuple(fc.nat(FILES + 2), fc.nat(4), fc.boolean()), { numRuns: MAX_RUNS, seed: Date.now() % 100000 });
    const t0 = Date.now();
    let runs = 0;
    let mixed = 0;
    for (const [lines, delay, resetAll] of rng) {
      if (Date.now() - t0 > BUDGET_MS && runs >= 8) break;
      runs++;
      await runAndKill(dir, lines, delay);
      // The dead child's locks: taken over at once through their holder files, but a child killed
      // between taking a lock and writing its holder file leaves one that only goes stale after 10 s.
      for (const e of readdirSync(dir)) if (e.endsWith('.lock') || e.endsWith('.lock.pid')) rmSync(join(dir, e), { recursive: true, force: true });
      let olds = 0;
      for (const n of names) {
        const path = join(dir, `${n}.runtime`);
        const text = readFileSync(path, 'utf8');
        const isOld = text === oldText.get(n);
        assert.ok(isOld || text === newText.get(n), `run ${runs}: ${n} is neither old nor new: ${text.slice(0, 80)}…`);
        const value = parseRuntime(text);
        validateRuntime(value, detectFormat(value));
        assert.equal(statSync(path).mode & 0o777, 0o640, `run ${runs}: ${n} lost its mode`);
        if (isOld) olds++;
      }
      if (olds > 0 && olds < FILES) mixed++;
      // Put some or all files back to the old version for the next run.
      for (const n of names) if (resetAll || Math.random() < 0.5) reset(n);
    }
    const leftovers = readdirSync(dir).filter((e) => !e.endsWith('.runtime'));
    assert.ok(leftovers.every((e) => /^\..+\.runtime\.\d+\.[0-9a-f]+\.tmp$/.test(e)), `unexpected files: ${leftovers.join(', ')}`);
    if (process.env.GKD_CRASH_DEBUG) console.error({ runs, mixed, tempLeft: leftovers.length });
    // A run that is not killed removes the temp files the killed ones left (their pids are gone).
    const full = spawnSync(process.execPath, [MAIN, 'runtime', 'upgrade-all', '--to', '2.16', '--json', '--lock-wait', '0', dir], { encoding: 'utf8' });
    assert.equal(full.status, 0, full.stderr);
    assert.deepStrictEqual((JSON.parse(full.stdout) as { removedTempFiles: string[] }).removedTempFiles, leftovers.sort());
    assert.deepStrictEqual(readdirSync(dir).filter((e) => !e.endsWith('.runtime')), [], 'a temp file outlived the bulk run after the kills');
    for (const n of names) assert.equal(readFileSync(join(dir, `${n}.runtime`), 'utf8'), newText.get(n));
    assert.ok(runs >= 8, `only ${runs} runs`);
    assert.ok(mixed >= 1, `no kill landed mid-run in ${runs} runs`);
  });
});
