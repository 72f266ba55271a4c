/**
 * The intent journal of an instance: `<dir>/.<name>.journal`, next to the
 * runtime file, one small JSON document written atomically (same path as
 * runtime files: temp file, fsync, rename, fsync the directory).
 *
 * Every multi-step QMP sequence (a hot-add, a hot-remove, a removal the
 * guest has not finished, a migration, a migration target's accept) records what it is about to do
 * before doing it and closes its entry once QEMU and the runtime file
 * agree again. An entry still open when the daemon starts, or when the
 * next operation on the instance begins, means a process died in the
 * middle: the reconciler (hotplug/reconcile.ts) reads QEMU's live state and
 * rolls the operation forward or back. Entries are changed only under the
 * instance lock, so one read-modify-write never races another.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GkdError, isGkdError } from '../errors';
import { readTextFile, removeFile, stageFile } from './atomic-file';
import { assertInstanceName, isSafeInstanceName } from './instance-name';

/** What an open entry is about. */
export type JournalOp = 'add' | 'remove' | 'pending' | 'migration' | 'accept';

/** One open intent. */
export interface JournalEntry {
  /** Unique within the instance's journal. */
  seq: number;
  op: JournalOp;
  /** The step about to run (e.g. `blockdev-add`, `device_add`, `runtime write`). */
  step: string;
  kind?: 'disk' | 'nic';
  /** The runtime entry's UUID (empty for a rolled-back add: nothing recorded). */
  uuid?: string;
  /** The QEMU id (device id, node name, netdev id). */
  id?: string;
  /** The QMP socket the operation used. */
  socket?: string;
  /** add: the runtime entry the add writes once QEMU confirms (to roll forward). */
  entry?: unknown;
  /** add/remove: the hvinfo QEMU must show. */
  hvinfo?: Record<string, unknown>;
  /** pending: the runtime file lists the device (drop its entry once QEMU let go). */
  recorded?: boolean;
  /** migration: where to and the other side's QMP socket. */
  uri?: string;
  targetQmp?: string;
  /** Who wrote it, and when (ISO time). */
  pid: number;
  at: string;
}

/** Options of the journal's writes. */
export interface JournalWriteOptions {
  /** false: leave the directory sync to the caller (see {@link Journal.open}). @default true */
  syncDir?: boolean;
}

const SUFFIX = '.journal';
/** Journals are a few hundred bytes; anything large is not ours. */
const MAX_BYTES = 1024 * 1024;

/** The journals of one runtime dir. */
export class Journal {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  path(name: string): string {
    assertInstanceName(name);
    return join(this.dir, `.${name}${SUFFIX}`);
  }

  /** The open entries of `name` (none when there is no journal). */
  async read(name: string): Promise<JournalEntry[]> {
    let text: string;
    try {
      ({ text } = await readTextFile(this.path(name), { maxBytes: MAX_BYTES }));
    } catch (e) {
      if (isGkdError(e) && e.code === 'GKD_RUNTIME_NOT_FOUND') return [];
      throw e;
    }
    try {
      const doc = JSON.parse(text) as { entries?: unknown };
      if (!Array.isArray(doc.entries)) throw new Error('no "entries" list');
      return doc.entries as JournalEntry[];
    } catch (e) {
      throw new GkdError('GKD_RUNTIME_IO', `Cannot read the journal of instance "${name}" (${this.path(name)}): ${(e as Error).message}`, { field: 'name', cause: e });
    }
  }

  /**
   * Adds `entry` (a new seq) and returns it. With `syncDir: false` the entry
   * is fsynced and renamed into place (the next process reads it) but the
   * directory is not synced: the caller does that once for all its changes
   * in the runtime dir before it reports the operation done. A power cut
   * before then may lose the entry, and with it only what it guards: the
   * QEMU it describes dies in the same power cut.
   */
  async open(name: string, entry: Omit<JournalEntry, 'seq' | 'pid' | 'at'>, options: JournalWriteOptions = {}): Promise<JournalEntry> {
    const entries = await this.read(name);
    const seq = entries.reduce((m, e) => Math.max(m, e.seq), 0) + 1;
    const full: JournalEntry = { ...entry, seq, pid: process.pid, at: new Date().toISOString() };
    await this.#write(name, [...entries, full], options);
    return full;
  }

  /** Replaces the entry with `entry.seq` (e.g. the next step); adds it when it was closed meanwhile. `syncDir`: as in {@link open}. */
  async update(name: string, entry: JournalEntry, options: JournalWriteOptions = {}): Promise<JournalEntry> {
    const next = { ...entry, pid: process.pid, at: new Date().toISOString() };
    const entries = (await this.read(name)).filter((e) => e.seq !== entry.seq);
    await this.#write(name, [...entries, next].sort((a, b) => a.seq - b.seq), options);
    return next;
  }

  /** Closes entry `seq`; the file goes with the last entry. `syncDir`: as in {@link open}. */
  async close(name: string, seq: number, options: JournalWriteOptions = {}): Promise<void> {
    const entries = await this.read(name);
    const rest = entries.filter((e) => e.seq !== seq);
    if (rest.length === entries.length) return;
    await this.#write(name, rest, options);
  }

  /** Removes the whole journal (the instance is gone). */
  async remove(name: string): Promise<void> {
    await removeFile(this.path(name));
  }

  /** Instances with a journal, sorted. */
  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names
      .filter((n) => n.startsWith('.') && n.endsWith(SUFFIX))
      .map((n) => n.slice(1, -SUFFIX.length))
      .filter(isSafeInstanceName)
      .sort();
  }

  async #write(name: string, entries: JournalEntry[], options: JournalWriteOptions): Promise<void> {
    if (entries.length === 0) {
      await removeFile(this.path(name), options);
      return;
    }
    await (await stageFile(this.path(name), `${JSON.stringify({ entries })}\n`, { mode: 0o600 })).commit(options);
  }
}
