/**
 * DEVICE_DELETED events as a test's own QMP monitor sees them.
 *
 * The engine may learn that a device is gone before this monitor receives
 * the event (it polls QOM, or its own monitor is served first), so tests
 * wait for the event here instead of expecting it already seen.
 */
import type { QmpClient, QmpEvent } from '../../plugin/qmp';

export class DeviceDeletedLog {
  /** `device` of every DEVICE_DELETED seen, in order. */
  readonly ids: string[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(qmp: QmpClient) {
    qmp.on('event', (ev: QmpEvent) => {
      if (ev.event !== 'DEVICE_DELETED' || typeof ev.data.device !== 'string') return;
      this.ids.push(ev.data.device);
      for (const w of [...this.#waiters]) w();
    });
  }

  /** Resolves once DEVICE_DELETED for `id` has been seen; rejects after `ms`, listing what was seen. */
  waitFor(id: string, ms = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!this.ids.includes(id)) return;
        clearTimeout(t);
        this.#waiters.delete(check);
        resolve();
      };
      const t = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no DEVICE_DELETED for ${id} within ${ms} ms; saw ${JSON.stringify(this.ids)}`));
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }
}
