/**
 * After device_add: QEMU's own answer must show the device exactly where
 * hvinfo says (QOM), and a disk's block node attached to it (query-block;
 * its `qdev` is the id for SCSI disks and a QOM path for virtio ones, which
 * is what Ganeti 3.1 missed under -blockdev, #1963).
 */
import { GkdError } from '../errors';
import { hvinfoDifferences, readLiveDevice } from '../inspect';
import type { QmpClient } from '../qmp';
import type { HvInfo } from '../types';
import type { DeviceKind } from './allocate';

/** Throws GKD_HOTPLUG_VERIFY naming what differs. */
export async function verifyAdded(qmp: QmpClient, id: string, hvinfo: HvInfo, kind: DeviceKind): Promise<void> {
  const live = await readLiveDevice(qmp, id);
  if (live === undefined) throw new GkdError('GKD_HOTPLUG_VERIFY', `QEMU does not list "${id}" after device_add`, { device: id });
  const diffs = hvinfoDifferences(hvinfo as unknown as Record<string, unknown>, live);
  if (diffs.length > 0) throw new GkdError('GKD_HOTPLUG_VERIFY', `QEMU has "${id}" elsewhere: ${diffs.join(', ')}`, { device: id, data: { diffs } });
  if (kind === 'disk') {
    const blocks = await qmp.execute<Array<{ qdev?: string; inserted?: { 'node-name'?: string } }>>('query-block');
    const b = blocks.find((x) => x.inserted?.['node-name'] === id);
    if (b === undefined || !(b.qdev === id || b.qdev?.startsWith(`/machine/peripheral/${id}/`))) {
      throw new GkdError('GKD_HOTPLUG_VERIFY', `QEMU does not show block node "${id}" attached to device "${id}"`, { device: id });
    }
  }
}
