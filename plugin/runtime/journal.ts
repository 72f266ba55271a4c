/**
 * The intent journal of an instance: `<dir>/.<name>.journal`, next to the
 * runtime file, one small JSON document written atomically (same path as
 * runtime files: temp file, fsync, rename, fsync the directory; a hot-add
 * skips the fsyncs for its own entry, see JournalWriteOptions).
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
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GkdError, isGkdError } from '../errors';
import { readTextFile, removeFile, replaceFileAtomically, stageFile } from './atomic-file';
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
  /**
   * `synced` (default): the content and the directory entry are fsynced
   * before the call returns. `visible`: the entry is renamed into place (a
   * process started after a crash of this one reads it) and nothing is
   * fsynced; the caller syncs the directory before it reports its
   * operation done. For an entry that guards only a QEMU's state: a power
   * cut, the only thing that loses page-cache writes, ends that QEMU too,
   * and may leave the journal empty (read as no entries).
   */
  durability?: 'synced' | 'visible';
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
    // No journal is the common case (every operation asks first): one synchronous lstat answers it
    // without a thread-pool round trip.
    if (!existsSync(this.path(name))) return [];
    let text: string;
    try {
      ({ text } = await readTextFile(this.path(name), { maxBytes: MAX_BYTES }));
    } catch (e) {
      if (isGkdError(e) && e.code === 'GKD_RUNTIME_NOT_FOUND') return [];
      throw e;
    }
    // What a power cut leaves of a journal written `visible` (renamed, its content never synced).
    if (text === '') return [];
    try {
      const doc = JSON.parse(text) as { entries?: unknown };
      if (!Array.isArray(doc.entries)) throw new Error('no "entries" list');
      return doc.entries as JournalEntry[];
    } catch (e) {
      throw new GkdError('GKD_RUNTIME_IO', `Cannot read the journal of instance "${name}" (${this.path(name)}): ${(e as Error).message}`, { field: 'name', cause: e });
    }
  }

  /** Adds `entry` (a new seq) and returns it; `durability` as in {@link JournalWriteOptions}. */
  async open(name: string, entry: Omit<JournalEntry, 'seq' | 'pid' | 'at'>, options: JournalWriteOptions = {}): Promise<JournalEntry> {
    const entries = await this.read(name);
    const seq = entries.reduce((m, e) => Math.max(m, e.seq), 0) + 1;
    const full: JournalEntry = { ...entry, seq, pid: process.pid, at: new Date().toISOString() };
    await this.#write(name, [...entries, full], options);
    return full;
  }

  /** Replaces the entry with `entry.seq` (e.g. the next step); adds it when it was closed meanwhile. */
  async update(name: string, entry: JournalEntry, options: JournalWriteOptions = {}): Promise<JournalEntry> {
    const next = { ...entry, pid: process.pid, at: new Date().toISOString() };
    const entries = (await this.read(name)).filter((e) => e.seq !== entry.seq);
    await this.#write(name, [...entries, next].sort((a, b) => a.seq - b.seq), options);
    return next;
  }

  /** Closes entry `seq`; the file goes with the last entry. */
  async close(name: string, seq: number, options: JournalWriteOptions = {}): Promise<void> {
    const entries = await this.read(name);
    const rest = entries.filter((e) => e.seq !== seq);
    if (rest.length === entries.length) return;
    await this.#write(name, rest, options);
  }

  /**
   * Closes entry `seq` known to be the journal's only one (its writer opened
   * it on an empty journal, seq 1, and has held the instance lock since):
   * the file is removed without reading it, unsynced (as `visible`).
   */
  closeOnly(name: string, seq: number): void {
    if (seq !== 1) throw new GkdError('GKD_RUNTIME_IO', `Cannot close journal entry ${seq} of instance "${name}" as the only one: only an entry opened on an empty journal (seq 1) can be`, { field: 'name' });
    this.#writeVisibleFast(this.path(name), [], '');
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
    const path = this.path(name);
    const data = `${JSON.stringify({ entries })}\n`;
    if (options.durability === 'visible') {
      if (this.#writeVisibleFast(path, entries, data)) return;
      await (await stageFile(path, data, { mode: 0o600, sync: false })).commit({ syncDir: false });
      return;
    }
    if (entries.length === 0) {
      await removeFile(path);
      return;
    }
    await replaceFileAtomically(path, data, { mode: 0o600 });
  }

  /**
   * The common `visible` writes, with synchronous calls: creating the journal
   * (none existed: O_EXCL, which also refuses a symlink there) and removing
   * it with its last entry. A journal is a few hundred bytes in a local
   * directory: each call takes microseconds, while an asynchronous one waits
   * for a thread-pool round trip, the larger part of a hot-add's file work
   * on a busy host. A process dying between create and write leaves an empty
   * file, which reads as no entries (nothing was sent to QEMU yet).
   * False when the general path is needed (a journal with other entries).
   */
  #writeVisibleFast(path: string, entries: JournalEntry[], data: string): boolean {
    try {
      if (entries.length === 0) {
        try {
          unlinkSync(path);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
        return true;
      }
      if (entries.length > 1) return false;
      writeFileSync(path, data, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw new GkdError('GKD_RUNTIME_IO', `Cannot write the journal "${path}": ${(e as Error).message}`, { field: 'name', cause: e });
    }
  }
}
