/**
 * The QEMU steps of one hot-add, each logging its inverse in the rollback
 * log as it succeeds. When a reply never came (connection lost, timeout),
 * QEMU may or may not have done the step, so its inverse is logged anyway
 * and a "not found" from that inverse counts as "had not taken effect".
 *
 * The inverses run after the add's own connection was given back, each
 * over a short connection of its own: waiting for the guest to release a
 * device asked back is polling (unplug-wait.ts), never holding the monitor.
 */
import { isGkdError } from '../errors';
import type { QemuDict } from '../planner';
import type { QmpClient } from '../qmp';
import type { DeviceKind } from './allocate';
import type { UndoLog } from './undo';
import { askUnplug, UNPLUG_POLL } from './unplug-wait';

export type AddCommand = 'blockdev-add' | 'netdev_add' | 'device_add';

export interface AddStepsOptions {
  /** The connection the steps run over. */
  qmp: QmpClient;
  /** The new device's QEMU id (also its node name and netdev id). */
  id: string;
  kind: DeviceKind;
  undo: UndoLog;
  /** Runs `fn` over a short connection of its own (the rollback's). */
  session: <T>(fn: (qmp: QmpClient) => Promise<T>) => Promise<T>;
  /** Polls until QEMU no longer has the device; false after `timeoutMs`. */
  waitGone: (timeoutMs: number) => Promise<boolean>;
  /** Leaves the backend to the background finisher: the guest has not released the device yet. */
  deferBackend: () => Promise<void>;
  unplugTimeoutMs: number;
  /** Called once a step succeeded (test-only fault points). */
  afterStep?: (cmd: AddCommand) => void;
}

export class AddSteps {
  /** The step under way, for the error message. */
  step = 'prepare';
  readonly #o: AddStepsOptions;
  /** Set when the guest has not yet released a device we asked back: its block node stays in use until it does. */
  #deferred = false;

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
    this.#o.afterStep?.(cmd);
  }

  #inverse(cmd: AddCommand): { what: string; inverse: () => Promise<string | void> } {
    const { id } = this.#o;
    switch (cmd) {
      case 'blockdev-add':
        return {
          what: `blockdev-del ${id}`,
          inverse: async () => {
            if (!this.#deferred) return void (await this.#o.session((c) => c.execute('blockdev-del', { 'node-name': id })));
            await this.#o.deferBackend();
            return 'deferred until the guest releases the device';
          },
        };
      case 'netdev_add':
        return { what: `netdev_del ${id}`, inverse: async () => void (await this.#o.session((c) => c.execute('netdev_del', { id }))) };
      case 'device_add':
        return { what: `device_del ${id}`, inverse: () => this.#deviceDel() };
    }
  }

  async #deviceDel(): Promise<string | undefined> {
    const { id } = this.#o;
    // The connection that sends device_del waits a moment for DEVICE_DELETED (SCSI goes at once),
    // then gives the monitor back; a guest that takes longer is polled for.
    const quick = await this.#o.session(async (c) => {
      const r = await askUnplug(c, id, Math.min(UNPLUG_POLL.firstWaitMs, this.#o.unplugTimeoutMs));
      if (r instanceof Error) throw r;
      return r === 'gone';
    });
    if (quick || (await this.#o.waitGone(this.#o.unplugTimeoutMs))) return undefined;
    // A block node stays "in use" until the guest lets go; a NIC's netdev can go at once.
    this.#deferred = true;
    return 'requested; the guest has not released it yet';
  }
}
