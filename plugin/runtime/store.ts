/**
 * The runtime-file store: Ganeti's `<dir>/<instance-name>.runtime` files,
 * read with the format detected and an upgraded 2.16 view, written in
 * Ganeti's encoding atomically, guarded by a per-instance lock.
 *
 * Typical use (hotplug engine, daemon):
 * ```ts
 * const store = new RuntimeStore(dir);
 * await store.withLock(name, async () => {
 *   const { upgraded, stamp } = await store.read(name);
 *   // …change upgraded…
 *   await store.write(name, upgraded, { expect: stamp });
 * });
 * ```
 */
import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GkdError } from '../errors';
import type { AnyRuntime, RuntimeFormatId, RuntimeV2_16 } from '../types';
import { type FileStamp, readTextFile, removeFile, replaceFileAtomically, stageFile, syncDirectory, type StagedFile } from './atomic-file';
import type { RuntimeChange } from './format/change';
import { convertRuntime } from './format/convert';
import { detectFormat } from './format/detect';
import { parseRuntime, serializeRuntime } from './format/serialize';
import { type RuntimeOf, validateRuntime } from './format/validate';
import { RUNTIME_SUFFIX, assertInstanceName, isSafeInstanceName } from './instance-name';
import { type LockOptions, withInstanceLock } from './lock';

/** Defaults of {@link RuntimeStore}. */
export const STORE_DEFAULTS = {
  /** Ganeti's runtime dir: `<RUN_DIR>/kvm-hypervisor/conf`. */
  dir: '/var/run/ganeti/kvm-hypervisor/conf',
  /** Largest runtime file read; real ones are a few KiB. */
  maxBytes: 16 * 1024 * 1024,
  /** Mode of a newly created file (as Ganeti's writes come out under the usual umask). */
  mode: 0o644,
} as const;

/** Options of {@link RuntimeStore}. */
export interface RuntimeStoreOptions {
  /** @default STORE_DEFAULTS.maxBytes */
  maxBytes?: number;
  /** @default STORE_DEFAULTS.mode */
  mode?: number;
  /** Lock options for {@link RuntimeStore.withLock}. @default LOCK_DEFAULTS */
  lock?: LockOptions;
  /**
   * The format to keep for a file that is valid in both 2.10 and 2.16 (four
   * members, no device yet): this node's Ganeti format. @default '2.16'
   */
  devicelessAs?: RuntimeFormatId;
}

/** What {@link RuntimeStore.read} returns. */
export interface RuntimeRead {
  name: string;
  path: string;
  /** The format detected from the file's shape. */
  format: RuntimeFormatId;
  /** The file as read (valid for `format`). */
  value: AnyRuntime;
  /** The same runtime in format 2.16 (a separate copy; `value` itself when already 2.16). */
  upgraded: RuntimeV2_16;
  /** What the upgrade added (uuids for pre-2.8 NICs); empty otherwise. */
  changes: RuntimeChange[];
  /** The exact file text. */
  text: string;
  /** The file version read; pass it to `write` as `expect`. */
  stamp: FileStamp;
}

/** Options of {@link RuntimeStore.write}. */
export interface WriteOptions<F extends RuntimeFormatId> {
  /** The format `value` is in and is validated against. @default '2.16' */
  format?: F;
  /** Only replace this file version (from `read`); `null`: only create. @default any */
  expect?: FileStamp | null;
}

/** Runtime files of one directory. All methods check the instance name first. */
export class RuntimeStore {
  /** The runtime dir. */
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #mode: number;
  readonly #lock: LockOptions;
  readonly #devicelessAs: RuntimeFormatId;

  constructor(dir: string = STORE_DEFAULTS.dir, options: RuntimeStoreOptions = {}) {
    this.#devicelessAs = options.devicelessAs ?? '2.16';
    this.dir = dir;
    this.#maxBytes = options.maxBytes ?? STORE_DEFAULTS.maxBytes;
    this.#mode = options.mode ?? STORE_DEFAULTS.mode;
    this.#lock = options.lock ?? {};
  }

  /** The path of instance `name`'s runtime file. */
  path(name: string): string {
    assertInstanceName(name);
    return join(this.dir, name + RUNTIME_SUFFIX);
  }

  /**
   * Reads, detects, validates and upgrades instance `name`'s runtime file.
   * Does not take the lock: writes are atomic, so a read sees a whole file.
   *
   * @throws GkdError `GKD_RUNTIME_NAME_INVALID`, `GKD_RUNTIME_NOT_FOUND`,
   *   `GKD_RUNTIME_IO` (symlink, not a file, over the size cap),
   *   `GKD_RUNTIME_INVALID`, `GKD_RUNTIME_UNKNOWN_FORMAT`
   */
  async read(name: string): Promise<RuntimeRead> {
    const path = this.path(name);
    const { text, stamp } = await readTextFile(path, { maxBytes: this.#maxBytes });
    const value = parseRuntime(text);
    const format = detectFormat(value);
    validateRuntime(value, format);
    let upgraded = value as RuntimeV2_16;
    let changes: RuntimeChange[] = [];
    if (format !== '2.16') {
      // A copy, so changing `upgraded` never changes `value`.
      const r = convertRuntime(structuredClone(value), '2.16', { uuid: randomUUID, name });
      upgraded = r.value;
      changes = r.changes;
    }
    return { name, path, format, value, upgraded, changes, text, stamp };
  }

  /**
   * Validates `value` for `options.format` (default 2.16) and writes it in
   * Ganeti's encoding, atomically, keeping an existing file's owner and mode.
   * Call it inside {@link withLock} when read-modify-writing.
   *
   * @throws GkdError `GKD_RUNTIME_INVALID` (nothing written), `GKD_RUNTIME_IO`,
   *   `GKD_RUNTIME_NOT_FOUND` (file gone since `expect`)
   */
  async write<F extends RuntimeFormatId = '2.16'>(name: string, value: RuntimeOf<F>, options: WriteOptions<F> = {}): Promise<FileStamp> {
    const path = this.path(name);
    validateRuntime(value, options.format ?? '2.16');
    const replace = { mode: this.#mode, ...(options.expect === undefined ? {} : { expect: options.expect }) };
    return replaceFileAtomically(path, serializeRuntime(value), replace);
  }

  /**
   * Writes `value` (2.16) in the format the file was read in (`read.format`),
   * so a 2.10 file stays 2.10 for the Ganeti that reads it; only replaces the
   * version `read.stamp` names. Call inside {@link withLock}.
   *
   * @throws GkdError `GKD_RUNTIME_LOSSY` (nothing written) naming what the
   *   file's format cannot express, and what {@link write} throws
   */
  async writeKeepingFormat(name: string, value: RuntimeV2_16, read: Pick<RuntimeRead, 'format' | 'stamp' | 'value'>): Promise<FileStamp> {
    return (await this.stageKeepingFormat(name, value, read)).commit();
  }

  /**
   * What {@link writeKeepingFormat} writes, staged: validated, encoded and in
   * its fsynced temp file, put in place only by `commit()` (which still
   * refuses if the file changed since `read`). Lets a caller prepare the
   * write while it waits for something else. Call inside {@link withLock}.
   *
   * @throws GkdError as {@link writeKeepingFormat}
   */
  async stageKeepingFormat(name: string, value: RuntimeV2_16, read: Pick<RuntimeRead, 'format' | 'stamp' | 'value'>): Promise<StagedFile> {
    const path = this.path(name);
    const format = this.formatToKeep(read);
    const kept = format === '2.16' ? value : convertRuntime(structuredClone(value), format).value;
    validateRuntime(kept, format);
    return stageFile(path, serializeRuntime(kept as AnyRuntime), { mode: this.#mode, expect: read.stamp });
  }

  /**
   * The format a rewrite of a file read as `read` keeps: its own, except that
   * a four-member file without any device is byte for byte both 2.10 and
   * 2.16 (detection calls it 2.10), and then it is this node's (`devicelessAs`).
   */
  formatToKeep(read: Pick<RuntimeRead, 'format' | 'value'>): RuntimeFormatId {
    const v = read.value as unknown[];
    const deviceless = v.length === 4 && (v[1] as unknown[]).length === 0 && (v[3] as unknown[]).length === 0;
    return read.format === '2.10' && deviceless ? this.#devicelessAs : read.format;
  }

  /**
   * Fsyncs the runtime dir: the renames and removals done in it (runtime
   * files committed with `syncDir: false`, journal entries) survive a power cut.
   */
  async syncDir(): Promise<void> {
    await syncDirectory(this.dir);
  }

  /** Removes instance `name`'s runtime file; false when there was none. */
  async remove(name: string): Promise<boolean> {
    return removeFile(this.path(name));
  }

  /**
   * Instance names with a runtime file in the dir, sorted. Entries whose name
   * isn't a safe instance name (temp files, locks, `.hidden`) are skipped;
   * anything else named `<name>.runtime` is listed whatever its type (a
   * symlink, a FIFO, a directory): reading it then fails with a clear error,
   * so bulk tools and cluster-verify report it instead of passing over it.
   */
  async list(): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch (e) {
      throw new GkdError('GKD_RUNTIME_IO', `Cannot list runtime dir "${this.dir}": ${(e as Error).message}`, { field: 'dir', cause: e });
    }
    return entries
      .filter((e) => e.name.endsWith(RUNTIME_SUFFIX))
      .map((e) => e.name.slice(0, -RUNTIME_SUFFIX.length))
      .filter(isSafeInstanceName)
      .sort();
  }

  /** Runs `fn` holding instance `name`'s cross-process lock (see `withInstanceLock`). */
  async withLock<T>(name: string, fn: () => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return withInstanceLock(this.dir, name, fn, { ...this.#lock, ...options });
  }
}
