/**
 * The QEMU steps of one hot-add, each logging its inverse in the rollback
 * log as it succeeds. When a reply never came (connection lost, timeout),
 * QEMU may or may not have done the step, so its inverse is logged anyway
 * and a "not found" from that inverse counts as "had not taken effect".
 */
import { isGkdError } from '../errors';
import type { QemuDict } from '../planner';
import type { QmpClient } from '../qmp';
import type { UndoLog } from './undo';

export type AddCommand = 'blockdev-add' | 'netdev_add' | 'device_add';

export interface AddStepsOptions {
  qmp: QmpClient;
  /** The new device's QEMU id (also its node name and netdev id). */
  id: string;
  undo: UndoLog;
  /** The connection to undo over: a fresh one when the first was lost. */
  reconnect: () => Promise<QmpClient>;
  unplugTimeoutMs: number;
  pendingWatchMs: number;
}

export class AddSteps {
  /** The step under way, for the error message. */
  step = 'prepare';
  readonly #o: AddStepsOptions;
  /** Set when the guest has not yet released a device we asked back: its block node stays in use until it does. */
  #released: Promise<unknown> | undefined;

  constructor(options: AddStepsOptions) {
    this.#o = options;
  }

  /** Runs `cmd` and logs its inverse. */
  async run(cmd: AddCommand, args: QemuDict): Promise<void> {
    this.step = cmd;
    const { what, inverse } = this.#inverse(cmd);
    try {
      await this.#o.qmp.execute(cmd, args);
    } catch (e) {
      if (isGkdError(e) && (e.code === 'GKD_QMP_CLOSED' || e.code === 'GKD_QMP_TIMEOUT')) {
        this.#o.undo.push(what, async () => {
          try {
            return await inverse();
          } catch (e2) {
            if (isGkdError(e2) && e2.code === 'GKD_QMP_COMMAND' && /not found|failed to find/i.test(e2.message)) return `QEMU did not have it: ${cmd} had not taken effect`;
            throw e2;
          }
        });
      }
      throw e;
    }
    this.#o.undo.push(what, inverse);
  }

  #inverse(cmd: AddCommand): { what: string; inverse: () => Promise<string | void> } {
    const { id } = this.#o;
    switch (cmd) {
      case 'blockdev-add':
        return {
          what: `blockdev-del ${id}`,
          inverse: async () => {
            const c = await this.#o.reconnect();
            if (this.#released === undefined) return void (await c.execute('blockdev-del', { 'node-name': id }));
            void this.#released.then(() => c.execute('blockdev-del', { 'node-name': id })).catch(() => undefined);
            return 'deferred until the guest releases the device';
          },
        };
      case 'netdev_add':
        return { what: `netdev_del ${id}`, inverse: async () => void (await (await this.#o.reconnect()).execute('netdev_del', { id })) };
      case 'device_add':
        return { what: `device_del ${id}`, inverse: () => this.#deviceDel() };
    }
  }

  async #deviceDel(): Promise<string | undefined> {
    const { id } = this.#o;
    const c = await this.#o.reconnect();
    const match = (d: Record<string, unknown>): boolean => d.device === id;
    const gone = c.expectEvent('DEVICE_DELETED', match, this.#o.unplugTimeoutMs);
    try {
      await c.execute('device_del', { id });
      await gone;
      return undefined;
    } catch (e) {
      gone.cancel();
      if (isGkdError(e) && e.code === 'GKD_QMP_TIMEOUT') {
        // Armed in the same tick the short wait gave up, so the event cannot slip between the two.
        const later = c.expectEvent('DEVICE_DELETED', match, this.#o.pendingWatchMs);
        this.#released = later.promise;
        this.#released.catch(() => undefined);
        return 'requested; the guest has not released it yet';
      }
      throw e;
    }
  }
}
