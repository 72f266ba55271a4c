/**
 * Temporary runtime dirs for store, bulk and CLI tests.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeRuntime } from '../../plugin/runtime';

/** A fresh empty dir; remove it with {@link removeDir}. */
export function makeTempDir(prefix = 'gkd-runtime-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Writes `<dir>/<name>.runtime` in Ganeti's encoding (or raw text). */
export function putRuntime(dir: string, name: string, value: unknown, raw = false): string {
  const path = join(dir, `${name}.runtime`);
  writeFileSync(path, raw ? String(value) : serializeRuntime(value));
  return path;
}
