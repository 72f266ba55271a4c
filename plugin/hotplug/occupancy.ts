/**
 * Reads what the live QEMU occupies, for the allocator.
 */
import { readLiveDevice, readLiveLayout } from '../inspect';
import type { QmpClient } from '../qmp';
import type { LiveOccupancy } from './allocate';

interface PciBusInfo {
  bus: number;
  devices: Array<{ slot: number }>;
}

/** Root-bus slots from query-pci, buses and SCSI targets from QOM. */
export async function readOccupancy(qmp: QmpClient, scsiBus: string): Promise<LiveOccupancy> {
  const pci = await qmp.execute<PciBusInfo[]>('query-pci');
  const rootSlots = new Set<number>((pci.find((b) => b.bus === 0)?.devices ?? []).map((d) => d.slot));
  const busyBuses = new Set<string>();
  const scsiTargets = new Set<number>();
  // Devices without an id (from kvm_extra) take targets and ports too.
  for (const d of await readLiveLayout(qmp, { anonymous: true })) {
    if (d.bus === undefined) continue;
    busyBuses.add(d.bus);
    if (d.bus === scsiBus && d['scsi-id'] !== undefined) scsiTargets.add(d['scsi-id']);
  }
  return { rootSlots, busyBuses, scsiTargets };
}

/** True when QEMU still has a device with this id. */
export async function deviceExists(qmp: QmpClient, id: string): Promise<boolean> {
  return (await readLiveDevice(qmp, id)) !== undefined;
}
