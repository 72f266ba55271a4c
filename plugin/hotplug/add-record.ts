/**
 * The files of one hot-add: its journal entry, written before QEMU is
 * touched, and the new runtime file, staged at the same time and put in
 * place only once QEMU has confirmed the device.
 *
 * Durability is arranged so the waits overlap instead of adding up:
 * - the journal entry is fsynced and renamed into place before the first
 *   QEMU step, so a process that dies after that step leaves it for the
 *   next one to read; its directory entry is synced with everything else
 *   at the end (a power cut before then ends QEMU too, so there is nothing
 *   in QEMU left for the entry to guard);
 * - the staged runtime file is fsynced while QEMU works;
 * - after QEMU confirmed: the runtime file is renamed into place, the entry
 *   removed, and the directory synced once for the three changes, before
 *   the add is reported done.
 */
import type { Logger } from 'pino';
import { GkdError, isGkdError } from '../errors';
import type { Journal, JournalEntry, RuntimeRead, RuntimeStore, StagedFile } from '../runtime';
import type { HvInfo, RuntimeDiskEntry, RuntimeNic, RuntimeV2_16 } from '../types';
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
  #staged: StagedFile;
  #placement: Placement;

  private constructor(d: AddRecordDeps, intent: AddIntent, read: RuntimeRead, entry: JournalEntry, staged: StagedFile, placement: Placement) {
    this.#d = d;
    this.#intent = intent;
    this.#read = read;
    this.#entry = entry;
    this.#staged = staged;
    this.#placement = placement;
  }

  /** Writes the journal entry and stages the runtime file, both at once; on failure neither is left. */
  static async open(d: AddRecordDeps, intent: AddIntent, read: RuntimeRead, placement: Placement): Promise<AddRecord> {
    const { name, kind, uuid, id, socket, step } = intent;
    const [entry, staged] = await Promise.allSettled([
      d.journal.open(name, { op: 'add', step, kind, uuid, id, socket, hvinfo: placement.hvinfo as unknown as Record<string, unknown>, entry: placement.entry }, { syncDir: false }),
      d.store.stageKeepingFormat(name, nextRuntime(read.upgraded, kind, placement), read),
    ]);
    if (entry.status === 'fulfilled' && staged.status === 'fulfilled') return new AddRecord(d, intent, read, entry.value, staged.value, placement);
    if (staged.status === 'fulfilled') await staged.value.discard();
    if (entry.status === 'fulfilled') await d.journal.close(name, entry.value.seq);
    throw entry.status === 'rejected' ? entry.reason : (staged as PromiseRejectedResult).reason;
  }

  get placement(): Placement {
    return this.#placement;
  }

  /** Another placement (QEMU refused the first address): the entry and the staged file say so before QEMU is asked again. */
  async replace(placement: Placement): Promise<void> {
    const { name, kind } = this.#intent;
    await this.#staged.discard();
    const [entry, staged] = await Promise.all([
      this.#d.journal.update(name, { ...this.#entry, hvinfo: placement.hvinfo as unknown as Record<string, unknown>, entry: placement.entry }, { syncDir: false }),
      this.#d.store.stageKeepingFormat(name, nextRuntime(this.#read.upgraded, kind, placement), this.#read),
    ]);
    this.#entry = entry;
    this.#staged = staged;
    this.#placement = placement;
  }

  /**
   * Puts the staged runtime file in place (not yet synced: {@link finish} does).
   * @throws GkdError as a runtime write; with `data.committed` once the file is in place
   */
  async writeRuntime(): Promise<void> {
    await this.#staged.commit({ syncDir: false });
  }

  /**
   * Closes the journal entry and syncs the runtime dir: the runtime file, the entry's
   * creation and its removal become durable together.
   * @throws GkdError `GKD_RUNTIME_IO` with `data.committed` (the runtime file is in place; only the sync failed)
   */
  async finish(): Promise<void> {
    const { name } = this.#intent;
    // A removal that does not happen leaves an entry whose device is recorded: the next reconcile closes it.
    await this.#d.journal.close(name, this.#entry.seq, { syncDir: false }).catch((e: unknown) => this.#d.log.warn({ instance: name, seq: this.#entry.seq, err: e }, 'journal entry not closed; the next reconcile will'));
    try {
      await this.#d.store.syncDir();
    } catch (e) {
      const err = isGkdError(e) ? e : new GkdError('GKD_RUNTIME_IO', (e as Error).message, { cause: e });
      throw new GkdError(err.code, err.message, { ...(err.field === undefined ? {} : { field: err.field }), data: { ...err.data, committed: true }, cause: e });
    }
  }

  /**
   * The add did not happen: the staged file goes; the entry is closed unless `keepEntry`
   * (an inverse failed, so the next reconcile must finish the rollback).
   */
  async abandon(keepEntry: boolean): Promise<void> {
    await this.#staged.discard();
    if (keepEntry) return;
    await this.#d.journal.close(this.#intent.name, this.#entry.seq).catch((e: unknown) => this.#d.log.warn({ instance: this.#intent.name, seq: this.#entry.seq, err: e }, 'journal entry not closed; the next reconcile will'));
  }
}

function nextRuntime(runtime: RuntimeV2_16, kind: DeviceKind, placement: Placement): RuntimeV2_16 {
  return withEntry(runtime, kind, placement.entry);
}
