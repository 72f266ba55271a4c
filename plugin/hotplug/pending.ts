/**
 * Removals the guest has not acknowledged yet, finished in the background.
 *
 * The device stays in the runtime file until QEMU no longer has it. A
 * poller checks over a short connection of its own (never holding the
 * monitor between checks, see connections.ts), backing off from a fraction
 * of a second to half a minute; once the device is gone it drops the
 * backend, removes the runtime entry and tells listeners. It never gives
 * up while the daemon runs: a step that fails (the instance is migrating,
 * the lock is held, QEMU does not answer) is logged and tried again later.
 * The same poller finishes the backend of a device a failed hot-add asked
 * back (`recorded: false`: no runtime entry to drop).
 */
import type { Logger } from 'pino';
import { isGkdError } from '../errors';
import { faultPoint } from '../fault-point';
import type { RuntimeStore } from '../runtime';
import type { DeviceKind } from './allocate';
import type { QmpConnections } from './connections';
import { entryOf, withoutEntry } from './runtime-entries';
import { deviceGone, dropBackend } from './unplug-wait';

/** A pending removal that completed (sent to clients as `device.removed`). */
export interface RemovedEvent {
  name: string;
  kind: DeviceKind;
  uuid: string;
  id: string;
  warnings: string[];
}

/** A pending removal still not finished (sent to clients as `device.pending`). */
export interface PendingEvent {
  name: string;
  kind: DeviceKind;
  /** Empty for the backend of a rolled-back hot-add (nothing recorded). */
  uuid: string;
  id: string;
  /** The runtime file still lists the device. */
  recorded: boolean;
  /** `waiting`: QEMU still has the device (the guest has not released it); `failing`: finishing it failed. */
  reason: 'waiting' | 'failing';
  /** Attempts made so far, and how long it has been watched, ms. */
  attempts: number;
  pendingMs: number;
  /** The last attempt's error, when `failing`. */
  error?: { code?: string; message: string };
}

/** One device QEMU is unplugging. */
export interface PendingUnplug {
  name: string;
  kind: DeviceKind;
  /** The runtime entry's UUID; empty for a rolled-back hot-add (nothing recorded). */
  uuid: string;
  id: string;
  /** The QMP socket the removal was asked on. */
  socket: string;
  /** The runtime file lists the device: drop its entry once QEMU let go. */
  recorded: boolean;
  /** Its journal entry, closed once the removal is finished. */
  seq?: number;
}

/** Waits between checks of one pending removal, ms; the last one repeats. */
export const PENDING_DELAYS_MS = [250, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

/** Most attempts between two announcements of one stuck removal (about an hour at the last delay). */
export const ANNOUNCE_MAX_GAP = 120;

/** Where a watch stands for {@link announceDue}. */
export interface AnnounceState {
  /** Attempts made, counting the one just made. */
  attempt: number;
  /** The attempt of the last announcement; 0 when none was made yet. */
  announcedAt: number;
  /** How long the removal has been watched, ms. */
  pendingMs: number;
}

/**
 * Whether the attempt just made, which did not finish the removal, is
 * announced: the first time on a failure, or once the device has been
 * waited for `afterMs` (the unplug timeout: the caller was told "pending"
 * after one already); then whenever the attempts have doubled since the
 * last announcement, at most ANNOUNCE_MAX_GAP apart. A back-off, so a
 * removal stuck for days logs about one line an hour, not one per poll.
 */
export function announceDue(s: AnnounceState, failing: boolean, afterMs: number): boolean {
  if (s.announcedAt === 0) return failing || s.pendingMs >= afterMs;
  return s.attempt - s.announcedAt >= Math.min(s.announcedAt, ANNOUNCE_MAX_GAP);
}

export interface PendingUnplugsOptions {
  connections: QmpConnections;
  store: RuntimeStore;
  /** Runs `fn` alone for the instance (the engine's queue and lock). */
  exclusive: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
  onRemoved?: (ev: RemovedEvent) => void;
  /** Called when a removal stays unfinished (see {@link announceDue}). */
  onPending?: (ev: PendingEvent) => void;
  /** How long the guest may hold the device before that is announced, ms (the unplug timeout). @default 0 */
  announceAfterMs?: number;
  /** Called when a removal is finished or dropped (the journal closes its entry). */
  onSettled?: (p: PendingUnplug) => Promise<void> | void;
  log: Logger;
}

interface Watch extends PendingUnplug {
  attempt: number;
  /** When the watch began (Date.now()), and the attempt last announced (0: none yet). */
  since: number;
  announcedAt: number;
  timer?: NodeJS.Timeout;
  /** The backend is gone already; a retry after a failed runtime write only records the removal. */
  backend?: string[];
}

/** The background finisher of pending removals (see the file comment). */
export class PendingUnplugs {
  readonly #watches = new Map<string, Watch>();
  readonly #o: PendingUnplugsOptions;
  #stopped = false;

  constructor(options: PendingUnplugsOptions) {
    this.#o = options;
  }

  list(): Array<{ name: string; kind: DeviceKind; uuid: string; id: string }> {
    return [...this.#watches.values()].filter((w) => w.recorded).map(({ name, kind, uuid, id }) => ({ name, kind, uuid, id }));
  }

  /** True when a removal of `id` on `name` is being waited for. */
  has(name: string, id: string): boolean {
    return this.#watches.has(`${name}/${id}`);
  }

  /** Starts finishing `p` in the background; a second watch for the same device is ignored. */
  watch(p: PendingUnplug): void {
    const key = `${p.name}/${p.id}`;
    if (this.#stopped || this.#watches.has(key)) return;
    const w: Watch = { ...p, attempt: 0, since: Date.now(), announcedAt: 0 };
    this.#watches.set(key, w);
    this.#schedule(key, w);
  }

  /**
   * Stops watching every removal of instance `name` and returns them: the QEMU they were asked of
   * is gone (a new one runs the instance, instance.start), so finishing them would act on the new
   * one. An attempt already waiting for the instance's lock does nothing once it gets it.
   */
  forget(name: string): PendingUnplug[] {
    const out: PendingUnplug[] = [];
    for (const [key, w] of this.#watches) {
      if (w.name !== name) continue;
      if (w.timer !== undefined) clearTimeout(w.timer);
      this.#watches.delete(key);
      const { name: n, kind, uuid, id, socket, recorded, seq } = w;
      out.push({ name: n, kind, uuid, id, socket, recorded, ...(seq === undefined ? {} : { seq }) });
    }
    return out;
  }

  /** Stops every poller (daemon shutdown); what is still pending stays in the journal. */
  stop(): void {
    this.#stopped = true;
    for (const w of this.#watches.values()) if (w.timer !== undefined) clearTimeout(w.timer);
    this.#watches.clear();
  }

  #schedule(key: string, w: Watch): void {
    const delay = PENDING_DELAYS_MS[Math.min(w.attempt, PENDING_DELAYS_MS.length - 1)];
    w.attempt++;
    w.timer = setTimeout(() => {
      void this.#check(w).then(
        (finished) => {
          if (this.#watches.get(key) !== w) return;
          if (finished) {
            this.#watches.delete(key);
            return;
          }
          this.#unfinished(w, undefined);
          this.#schedule(key, w);
        },
        (e: unknown) => {
          if (this.#watches.get(key) !== w) return;
          if (isGkdError(e) && e.code === 'GKD_RUNTIME_NOT_FOUND') {
            // The instance was stopped and cleaned up: QEMU and its devices are gone with it.
            this.#o.log.info({ instance: w.name, device: w.id }, 'pending removal dropped: the runtime file is gone');
            this.#watches.delete(key);
            void Promise.resolve(this.#o.onSettled?.(w)).catch(() => undefined);
            return;
          }
          this.#unfinished(w, e);
          this.#schedule(key, w);
        },
      );
    }, delay);
    w.timer.unref();
  }

  /** An attempt that left the removal unfinished (`err` when it failed): announced when due, else a debug line. */
  #unfinished(w: Watch, err: unknown): void {
    const failing = err !== undefined;
    const pendingMs = Date.now() - w.since;
    const fields = { instance: w.name, device: w.id, attempt: w.attempt, pendingMs, ...(failing ? { err } : {}) };
    if (!announceDue({ attempt: w.attempt, announcedAt: w.announcedAt, pendingMs }, failing, this.#o.announceAfterMs ?? 0)) {
      this.#o.log.debug(fields, failing ? 'pending removal not finished yet; will retry' : 'pending removal: QEMU still has the device');
      return;
    }
    w.announcedAt = w.attempt;
    this.#o.log.warn(fields, failing
      ? 'pending removal cannot be finished yet (see err); still retrying, the runtime file keeps the device until it is'
      : 'pending removal: the guest still has not released the device; still waiting, the runtime file keeps it until QEMU lets go');
    const error = failing ? { ...(isGkdError(err) ? { code: err.code } : {}), message: (err as Error)?.message ?? String(err) } : undefined;
    try {
      this.#o.onPending?.({
        name: w.name, kind: w.kind, uuid: w.uuid, id: w.id, recorded: w.recorded, reason: failing ? 'failing' : 'waiting',
        attempts: w.attempt, pendingMs, ...(error === undefined ? {} : { error }),
      });
    } catch (e) {
      this.#o.log.warn({ instance: w.name, device: w.id, err: e }, 'the pending listener threw; ignored');
    }
  }

  /**
   * One attempt, now, for a caller that already holds the instance lock (the reconcile after a
   * restart): true when the removal is finished and recorded; otherwise the caller watches it.
   */
  async finishNow(p: PendingUnplug): Promise<boolean> {
    const key = `${p.name}/${p.id}`;
    const w: Watch = this.#watches.get(key) ?? { ...p, attempt: 0, since: Date.now(), announcedAt: 0 };
    if (w.backend === undefined && !(await this.#o.connections.use(w.socket, (c) => deviceGone(c, w.id)))) return false;
    const done = await this.#finishLocked(w);
    if (done) {
      if (w.timer !== undefined) clearTimeout(w.timer);
      this.#watches.delete(key);
    }
    return done;
  }

  /** One check: true once the removal is finished and recorded. */
  async #check(w: Watch): Promise<boolean> {
    if (w.backend === undefined) {
      const gone = await this.#o.connections.use(w.socket, (c) => deviceGone(c, w.id));
      if (!gone) return false;
    }
    // Forgotten while it waited for the lock (instance.start for a new QEMU): nothing to finish.
    return this.#o.exclusive(w.name, async () => this.#watches.get(`${w.name}/${w.id}`) === w && this.#finishLocked(w));
  }

  /** Drops the backend and the runtime entry of a device QEMU let go (under the instance lock). */
  async #finishLocked(w: Watch): Promise<boolean> {
    if (w.backend === undefined) {
      const drop = await this.#o.connections.use(w.socket, (c) => dropBackend(c, w.kind, w.id));
      if (!drop.done) return false;
      w.backend = drop.warnings;
      faultPoint(`${w.kind}-finish:backend`);
    }
    if (w.recorded) {
      const read = await this.#o.store.read(w.name);
      if (entryOf(read.upgraded, w.kind, w.uuid) !== undefined) {
        await this.#o.store.writeKeepingFormat(w.name, withoutEntry(read.upgraded, w.kind, w.uuid), read);
      }
    }
    faultPoint(`${w.kind}-finish:recorded`);
    await this.#o.onSettled?.(w);
    // No longer pending once recorded: a listener that asks must not see it listed.
    this.#watches.delete(`${w.name}/${w.id}`);
    this.#o.log.info({ instance: w.name, device: w.id, warnings: w.backend }, w.recorded ? 'pending removal finished' : 'rolled-back device released; backend deleted');
    if (w.recorded) this.#o.onRemoved?.({ name: w.name, kind: w.kind, uuid: w.uuid, id: w.id, warnings: w.backend });
    return true;
  }
}
