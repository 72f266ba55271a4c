/**
 * Removals the guest has not acknowledged yet. The device stays in the
 * runtime file until QEMU says it is gone (DEVICE_DELETED); if that happens
 * while the daemon runs, the removal is finished then: backend dropped,
 * runtime entry removed, listeners told.
 */
import type { QmpClient } from '../qmp';
import type { RuntimeStore } from '../runtime';
import type { DeviceKind } from './allocate';
import { withoutEntry } from './runtime-entries';

/** A pending removal that completed (sent to clients as `device.removed`). */
export interface RemovedEvent {
  name: string;
  kind: DeviceKind;
  uuid: string;
  id: string;
  warnings: string[];
}

interface Watch {
  name: string;
  kind: DeviceKind;
  uuid: string;
  id: string;
  qmp: QmpClient;
  watchMs: number;
  finish: () => Promise<string[]>;
}

/** Removals the guest has not acknowledged yet, finished when QEMU reports the device gone. */
export class PendingUnplugs {
  readonly #watches = new Map<string, Watch>();
  readonly #exclusive: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
  readonly #store: RuntimeStore;
  readonly #onRemoved?: (ev: RemovedEvent) => void;

  constructor(exclusive: <T>(name: string, fn: () => Promise<T>) => Promise<T>, store: RuntimeStore, onRemoved?: (ev: RemovedEvent) => void) {
    this.#exclusive = exclusive;
    this.#store = store;
    this.#onRemoved = onRemoved;
  }

  list(): Array<{ name: string; kind: DeviceKind; uuid: string; id: string }> {
    return [...this.#watches.values()].map(({ name, kind, uuid, id }) => ({ name, kind, uuid, id }));
  }

  /** Keeps listening for the device's DEVICE_DELETED; a second watch for the same device is ignored. */
  watch(w: Watch): void {
    const key = `${w.name}/${w.id}`;
    if (this.#watches.has(key)) return;
    this.#watches.set(key, w);
    const ev = w.qmp.expectEvent('DEVICE_DELETED', (d) => (d as { device?: string }).device === w.id, w.watchMs);
    let backendDropped: string[] | undefined;
    const complete = (): Promise<void> =>
      this.#exclusive(w.name, async () => {
        // The backend goes once; a retry after a failed runtime write only records the removal.
        backendDropped ??= await w.finish();
        const read = await this.#store.read(w.name);
        await this.#store.write(w.name, withoutEntry(read.upgraded, w.kind, w.uuid), { expect: read.stamp });
        // No longer pending once recorded: a listener that asks must not see it listed.
        this.#watches.delete(key);
        this.#onRemoved?.({ name: w.name, kind: w.kind, uuid: w.uuid, id: w.id, warnings: backendDropped });
      });
    // QEMU has dropped the device, so the runtime entry must go even if the first attempt can't
    // (the instance is busy migrating, the lock is held): retry with backoff before giving up.
    const attempt = (n: number): Promise<void> =>
      complete().catch((e: unknown) => {
        if (n >= RETRY_DELAYS_MS.length) throw e;
        return new Promise<void>((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[n]).unref()).then(() => attempt(n + 1));
      });
    ev.promise.then(
      () => attempt(0).finally(() => this.#watches.delete(key)),
      () => {
        // Timed out or the connection closed: the device stays recorded; instance.verify shows
        // whether QEMU still has it.
        this.#watches.delete(key);
      },
    ).catch(() => this.#watches.delete(key));
  }
}

/** Waits between attempts to record a completed removal. */
const RETRY_DELAYS_MS = [200, 1_000, 5_000, 30_000];
