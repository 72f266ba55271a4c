/**
 * Confirming a hot-added device from QEMU's own answer.
 *
 * Right after a device_add QEMU accepted ({@link verifyPlaced}): one QOM
 * read of the coordinate the allocator chose (a SCSI disk's target, the
 * slot on the root bus, the root port on q35). The other coordinates
 * (bus, channel, LUN, function) and the block node or netdev were passed
 * explicitly, and QEMU 7.2 honours an explicit property or refuses the
 * device_add; the chosen one is what could collide, so that is what is
 * read back. Each QOM read costs QEMU about 0.6 ms (TCG), so the full read
 * below would cost about as much as the device_add itself.
 *
 * When the device_add's answer was never seen (a process died; the
 * reconciler), nothing is known about what QEMU did, so
 * {@link verifyAdded} reads everything: the device exactly where hvinfo
 * says (QOM), and a disk's block node attached to it (query-block; its
 * `qdev` is the id for SCSI disks and a QOM path for virtio ones, which is
 * what Ganeti 3.1 missed under -blockdev, #1963).
 */
import { GkdError, isGkdError } from '../errors';
import { devfnToAddr, hvinfoDifferences, readLiveDevice, type LiveDevice } from '../inspect';
import type { QmpClient } from '../qmp';
import { isScsiHvInfo, type HvInfo } from '../types';
import type { DeviceKind } from './allocate';

/** The root buses: a device there is placed by its slot; anywhere else (a q35 root port) by the bus. */
const ROOT_BUSES = new Set(['pci.0', 'pcie.0']);

/** The QOM property holding the coordinate the allocator chose for `hvinfo`, and how to read its value. */
function chosenCoordinate(hvinfo: HvInfo): { property: string; field: keyof LiveDevice; toLive: (v: unknown) => unknown } {
  if (isScsiHvInfo(hvinfo)) return { property: 'scsi-id', field: 'scsi-id', toLive: (v) => v };
  if (ROOT_BUSES.has(hvinfo.bus)) return { property: 'addr', field: 'addr', toLive: (v) => (typeof v === 'number' && v >= 0 ? devfnToAddr(v) : v) };
  return { property: 'parent_bus', field: 'bus', toLive: (v) => (typeof v === 'string' ? v.slice(v.lastIndexOf('/') + 1) : v) };
}

/**
 * After a device_add QEMU answered with success: throws GKD_HOTPLUG_VERIFY
 * unless QEMU has device `id` at the coordinate hvinfo names (see the file comment).
 */
export async function verifyPlaced(qmp: QmpClient, id: string, hvinfo: HvInfo): Promise<void> {
  const { property, field, toLive } = chosenCoordinate(hvinfo);
  let value: unknown;
  try {
    value = await qmp.execute<unknown>('qom-get', { path: `/machine/peripheral/${id}`, property });
  } catch (e) {
    // QEMU's refusal ("Device ... not found"): the device is not there; anything else (a lost connection) is not an answer.
    if (isGkdError(e) && e.code === 'GKD_QMP_COMMAND') throw new GkdError('GKD_HOTPLUG_VERIFY', `QEMU does not list "${id}" after device_add`, { device: id, cause: e });
    throw e;
  }
  const want = (hvinfo as unknown as Record<string, unknown>)[field];
  const diffs = hvinfoDifferences({ [field]: want }, { id, driver: hvinfo.driver, [field]: toLive(value) } as LiveDevice);
  if (diffs.length > 0) throw new GkdError('GKD_HOTPLUG_VERIFY', `QEMU has "${id}" elsewhere: ${diffs.join(', ')}`, { device: id, data: { diffs } });
}

/** Everything about an added device, for when the device_add's answer was not seen (see the file comment). Throws GKD_HOTPLUG_VERIFY naming what differs. */
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
