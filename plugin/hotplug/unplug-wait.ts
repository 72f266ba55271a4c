/**
 * Waiting for a guest to let go of a device without holding the monitor:
 * QEMU's `-qmp` serves one client at a time and may be Ganeti's, so each
 * check is a short connection of its own (connect, one `qom-list`, close),
 * repeated at a short interval until the device is gone or time is up.
 */
import { isGkdError, type GkdError } from '../errors';
import type { QmpClient } from '../qmp';
import type { DeviceKind } from './allocate';
import type { QmpConnections } from './connections';

/** Intervals of the unplug wait. */
export const UNPLUG_POLL = {
  /** How long the first connection (the one sending device_del) waits for DEVICE_DELETED, ms: SCSI disks go at once. */
  firstWaitMs: 200,
  /** Interval between checks while waiting for the guest, ms. */
  pollMs: 200,
} as const;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * Sends `device_del` for `id` and waits up to `waitMs` for its
 * DEVICE_DELETED (armed before the command, so it cannot be missed):
 * `'gone'` when it came, `'waiting'` when the guest has not released the
 * device yet (any GKD_QMP_TIMEOUT). QEMU's refusal of the command
 * (GKD_QMP_COMMAND: no such device, an unplug already under way, ...) is
 * returned for the caller to judge; any other failure is thrown, and then
 * QEMU may or may not have started the unplug. `afterRequest` runs once
 * QEMU accepted the command.
 */
export async function askUnplug(qmp: QmpClient, id: string, waitMs: number, afterRequest?: () => void): Promise<'gone' | 'waiting' | GkdError> {
  const gone = qmp.expectEvent('DEVICE_DELETED', (d) => d.device === id, waitMs);
  try {
    await qmp.execute('device_del', { id });
    afterRequest?.();
    await gone;
    return 'gone';
  } catch (e) {
    gone.cancel();
    if (isGkdError(e) && e.code === 'GKD_QMP_TIMEOUT') return 'waiting';
    if (isGkdError(e) && e.code === 'GKD_QMP_COMMAND') return e;
    throw e;
  }
}

/** True when QEMU no longer has device `id` under `/machine/peripheral`. */
export async function deviceGone(qmp: QmpClient, id: string): Promise<boolean> {
  const children = await qmp.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' });
  return !children.some((c) => c.name === id);
}

/** Checks `id` over short connections every `pollMs` until it is gone (true) or `timeoutMs` passed (false). */
export async function pollUntilGone(connections: QmpConnections, socket: string, id: string, timeoutMs: number, pollMs: number = UNPLUG_POLL.pollMs): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await sleep(Math.min(pollMs, left));
    if (await connections.use(socket, (c) => deviceGone(c, id))) return true;
  }
}

/** What deleting a removed device's backend came to. */
export interface BackendDrop {
  /** False while QEMU still uses the block node (the device is not finalized yet): try again later. */
  done: boolean;
  /** What could not be cleaned and never will be (a backend QEMU had already dropped). */
  warnings: string[];
}

/** Deletes the block node or netdev of a device QEMU no longer has. */
export async function dropBackend(qmp: QmpClient, kind: DeviceKind, id: string): Promise<BackendDrop> {
  const cmd = kind === 'disk' ? 'blockdev-del' : 'netdev_del';
  try {
    if (kind === 'disk') await qmp.execute('blockdev-del', { 'node-name': id });
    else await qmp.execute('netdev_del', { id });
    return { done: true, warnings: [] };
  } catch (e) {
    if (isGkdError(e) && e.code === 'GKD_QMP_COMMAND' && /in use/i.test(e.message)) return { done: false, warnings: [] };
    if (isGkdError(e) && e.code !== 'GKD_QMP_COMMAND') throw e;
    // Disks added by drive_add (Ganeti 2.16-3.0) lose their drive together with the device.
    return { done: true, warnings: [`${cmd} ${id}: ${(e as Error).message}`] };
  }
}
