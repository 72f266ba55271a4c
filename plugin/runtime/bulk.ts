/**
 * Bulk conversion of a runtime dir, for cluster upgrade and downgrade
 * scripts: file by file, each under its instance lock, each written
 * atomically. A file that can't be read, is invalid, or would lose
 * information is reported and left untouched; the others proceed.
 */
import { randomUUID } from 'node:crypto';
import { type ErrorCode, isGkdError } from '../errors';
import type { RuntimeFormatId } from '../types';
import type { RuntimeChange } from './format/change';
import { convertRuntime } from './format/convert';
import { RUNTIME_FORMATS } from './format/detect';
import { removeStaleTempFiles } from './atomic-file';
import { RUNTIME_SUFFIX } from './instance-name';
import { RuntimeStore, type RuntimeStoreOptions } from './store';

/** Per-file outcome. In a dry run, `converted` means "would be converted". */
export type BulkStatus = 'converted' | 'unchanged' | 'refused' | 'error';

/** What happened to one file. */
export interface BulkFileResult {
  name: string;
  status: BulkStatus;
  /** Format found, when the file could be read and detected. */
  from?: RuntimeFormatId;
  to: RuntimeFormatId;
  /** Why it was refused or failed. */
  message?: string;
  code?: ErrorCode;
  /** Reported effects (uuids added, ids renamed, data dropped under force). */
  changes: RuntimeChange[];
}

/** Options of {@link convertAll}. */
export interface BulkOptions extends RuntimeStoreOptions {
  /** Target format. */
  to: RuntimeFormatId;
  /** `upgrade` refuses files newer than `to`; `downgrade` refuses files older than `to`. */
  direction: 'upgrade' | 'downgrade';
  /** Read and convert, write nothing, take no locks. @default false */
  dryRun?: boolean;
  /** See `ConvertOptions.force`. @default false */
  force?: boolean;
  /** See `ConvertOptions.allowIdChange`. @default false */
  allowIdChange?: boolean;
  /** Called after each file, in order (progress output). */
  onFile?: (result: BulkFileResult) => void | Promise<void>;
}

/** What {@link convertAll} returns. */
export interface BulkReport {
  dir: string;
  to: RuntimeFormatId;
  direction: 'upgrade' | 'downgrade';
  dryRun: boolean;
  files: BulkFileResult[];
  counts: Record<BulkStatus, number>;
  /** Temp files of killed writers removed before the run (never in a dry run). */
  removedTempFiles: string[];
  /** True when no file was refused or failed. */
  ok: boolean;
}

async function convertOne(store: RuntimeStore, name: string, options: BulkOptions): Promise<BulkFileResult> {
  const { to, direction } = options;
  const base = { name, to, changes: [] as RuntimeChange[] };
  let from: RuntimeFormatId | undefined;
  const work = async (): Promise<BulkFileResult> => {
    const read = await store.read(name);
    from = read.format;
    if (from === to) return { ...base, from, status: 'unchanged' };
    const newer = RUNTIME_FORMATS.indexOf(from) > RUNTIME_FORMATS.indexOf(to);
    if (newer !== (direction === 'downgrade')) {
      const message = `Cannot ${direction} "${name}" to ${to}: it is already ${from}, ${newer ? 'newer' : 'older'} than ${to}`;
      return { ...base, from, status: 'refused', message };
    }
    const { value, changes } = convertRuntime(read.value, to, {
      uuid: randomUUID,
      name,
      ...(options.force === undefined ? {} : { force: options.force }),
      ...(options.allowIdChange === undefined ? {} : { allowIdChange: options.allowIdChange }),
    });
    if (options.dryRun !== true) await store.write(name, value, { format: to, expect: read.stamp });
    return { ...base, from, status: 'converted', changes };
  };
  try {
    // A dry run only reads; writes are atomic, so no lock is needed to see a whole file.
    return options.dryRun === true ? await work() : await store.withLock(name, work);
  } catch (e) {
    const status: BulkStatus = isGkdError(e) && e.code === 'GKD_RUNTIME_LOSSY' ? 'refused' : 'error';
    const message = e instanceof Error ? e.message : String(e);
    return { ...base, ...(from === undefined ? {} : { from }), status, message, ...(isGkdError(e) ? { code: e.code } : {}) };
  }
}

/**
 * Converts every runtime file in `dir` to `options.to`, one at a time in
 * name order, after removing the temp files killed writers left (unless
 * `dryRun`). Never throws for a single file's problem; throws only when
 * the directory itself can't be listed.
 */
export async function convertAll(dir: string, options: BulkOptions): Promise<BulkReport> {
  const store = new RuntimeStore(dir, options);
  const names = await store.list();
  // A writer SIGKILLed between creating its temp file and the rename leaves the temp file behind.
  const removedTempFiles = options.dryRun === true ? [] : await removeStaleTempFiles(dir, RUNTIME_SUFFIX);
  const files: BulkFileResult[] = [];
  const counts: Record<BulkStatus, number> = { converted: 0, unchanged: 0, refused: 0, error: 0 };
  for (const name of names) {
    const result = await convertOne(store, name, options);
    files.push(result);
    counts[result.status]++;
    await options.onFile?.(result);
  }
  return {
    dir,
    to: options.to,
    direction: options.direction,
    dryRun: options.dryRun === true,
    files,
    counts,
    removedTempFiles,
    ok: counts.refused === 0 && counts.error === 0,
  };
}
