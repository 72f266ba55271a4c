/**
 * The files of one hot-add: its journal entry, in place before QEMU is
 * touched, and the new runtime file, staged meanwhile and put in place only
 * once QEMU has confirmed the device.
 *
 * Durability is arranged so the add waits for one sync, not four:
 * - the journal entry is renamed into place, unsynced, before the first
 *   QEMU step: a process that dies after that step leaves it for the next
 *   one to read (the page cache outlives the process). Only a power cut
 *   loses unsynced writes, and it ends the QEMU whose state the entry
 *   guards. An entry that must outlive the add (a rollback step failed) is
 *   rewritten synced;
 * - the staged runtime file is written and fsynced while QEMU works;
 * - after QEMU confirmed: the runtime file is renamed into place and the
 *   directory synced (by the engine) before the add is reported done; the
 *   entry is removed after the answer, unsynced (one a power cut brings
 *   back names a recorded device, which the next reconcile closes).
 */
import type { Logger } from 'pino';
import type { Journal, JournalEntry, RuntimeRead, RuntimeStore, StagedFile } from '../runtime';
import type { HvInfo, RuntimeDiskEntry, RuntimeNic } from '../types';
import type { DeviceKind } from './allocate';
import { withEntry } from './runtime-entries';

/** Where the device goes and what the runtime file will say about it. */
export interface Placement {
  hvinfo: HvInfo;
  entry: RuntimeDiskEntry | RuntimeNic;
}

export interface AddRecordDeps {
  store: RuntimeStore;
  journal: Journal;
  log: Logger;
}

/** What the journal entry names besides the placement. */
export interface AddIntent {
  name: string;
  kind: DeviceKind;
  uuid: string;
  id: string;
  socket: string;
  /** The first QEMU step (`blockdev-add` / `netdev_add`), for the reconcile log. */
  step: string;
}

export class AddRecord {
  readonly #d: AddRecordDeps;
  readonly #intent: AddIntent;
  readonly #read: RuntimeRead;
  #entry: JournalEntry;
  /** Staged in the background; a failure shows at {@link writeRuntime}. */
  #staged: Promise<StagedFile>;
  #placement: Placement;

  private constructor(d: AddRecordDeps, intent: AddIntent, read: RuntimeRead, entry: JournalEntry, staged: Promise<StagedFile>, placement: Placement) {
    this.#d = d;
    this.#intent = intent;
    this.#read = read;
    this.#entry = entry;
    this.#staged = staged;
    this.#placement = placement;
  }

  /** Writes the journal entry, then starts staging the runtime file; resolves once the entry is in place. */
  static async open(d: AddRecordDeps, intent: AddIntent, read: RuntimeRead, placement: Placement): Promise<AddRecord> {
    const { name, kind, uuid, id, socket, step } = intent;
    const entry = await d.journal.open(name, { op: 'add', step, kind, uuid, id, socket, hvinfo: placement.hvinfo as unknown as Record<string, unknown>, entry: placement.entry }, { durability: 'visible' });
    // Staged only now: its fsync would hold up the entry's own writes (one filesystem journal commit at a time).
    return new AddRecord(d, intent, read, entry, stage(d, name, read, kind, placement), placement);
  }

  get placement(): Placement {
    return this.#placement;
  }

  /** Another placement (QEMU refused the first address): the entry and the staged file say so before QEMU is asked again. */
  async replace(placement: Placement): Promise<void> {
    const { name, kind } = this.#intent;
    await (await this.#staged.catch(() => undefined))?.discard();
    this.#staged = stage(this.#d, name, this.#read, kind, placement);
    this.#entry = await this.#d.journal.update(name, { ...this.#entry, hvinfo: placement.hvinfo as unknown as Record<string, unknown>, entry: placement.entry }, { durability: 'visible' });
    this.#placement = placement;
  }

  /**
   * Puts the staged runtime file in place (not yet synced: {@link finish} does).
   * @throws GkdError as a runtime write; with `data.committed` once the file is in place
   */
  async writeRuntime(): Promise<void> {
    await (await this.#staged).commit({ syncDir: false });
  }

  /**
   * Closes the journal entry, unsynced, once the add is recorded and durable
   * (the runtime file renamed into place and the runtime dir synced).
   */
  async finish(): Promise<void> {
    const { name } = this.#intent;
    const { seq } = this.#entry;
    // A removal that does not happen leaves an entry whose device is recorded: the next reconcile closes it.
    // The entry opened on an empty journal is its only one (all writes happen under the instance lock).
    const closing = seq === 1 ? Promise.resolve().then(() => this.#d.journal.closeOnly(name, seq)) : this.#d.journal.close(name, seq, { durability: 'visible' });
    await closing.catch((e: unknown) => this.#d.log.warn({ instance: name, seq: this.#entry.seq, err: e }, 'journal entry not closed; the next reconcile will'));
  }

  /**
   * The add did not happen: the staged file goes; the entry is closed unless `keepEntry`
   * (an inverse failed, so the next reconcile must finish the rollback).
   */
  async abandon(keepEntry: boolean): Promise<void> {
    await (await this.#staged.catch(() => undefined))?.discard();
    const { name } = this.#intent;
    const seq = this.#entry.seq;
    // Kept for the next reconcile, so it must now survive what this process does not: rewritten synced.
    const done = keepEntry ? this.#d.journal.update(name, this.#entry) : this.#d.journal.close(name, seq);
    await done.then(() => undefined, (e: unknown) => this.#d.log.warn({ instance: name, seq, err: e }, keepEntry ? 'journal entry not synced' : 'journal entry not closed; the next reconcile will'));
  }
}

/** Stages the runtime file with the new entry; the promise is handled by whoever awaits it last. */
function stage(d: AddRecordDeps, name: string, read: RuntimeRead, kind: DeviceKind, placement: Placement): Promise<StagedFile> {
  const p = d.store.stageKeepingFormat(name, withEntry(read.upgraded, kind, placement.entry), read);
  p.catch(() => undefined);
  return p;
}
