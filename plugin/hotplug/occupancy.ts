/**
 * Reads what the live QEMU occupies, for the allocator, with as few QMP
 * commands as the question needs: each QOM call costs QEMU about 0.6 ms
 * (7.2, TCG), so reading every property of every device for every hot-add
 * would cost more than the hotplug itself.
 */
import { listPeripherals } from '../inspect';
import type { QmpClient } from '../qmp';
import type { LiveOccupancy } from './allocate';

interface PciBusInfo {
  bus: number;
  devices: Array<{ slot: number }>;
}

/** What a hot-add must know: root-bus slots (pc), SCSI targets, or which buses (q35 ports) are busy. */
export type OccupancyNeed = 'root-slots' | 'scsi-targets' | 'buses';

async function parentBus(qmp: QmpClient, path: string): Promise<string | undefined> {
  const bus = await qmp.execute<unknown>('qom-get', { path, property: 'parent_bus' });
  return typeof bus === 'string' && bus !== '' ? bus.slice(bus.lastIndexOf('/') + 1) : undefined;
}

/**
 * Reads what `needs` asks for; the other sets come back empty.
 * Devices without an id (from kvm_extra) count as much as any other.
 */
export async function readOccupancy(qmp: QmpClient, scsiBus: string, needs: readonly OccupancyNeed[] = ['root-slots', 'scsi-targets', 'buses']): Promise<LiveOccupancy> {
  const rootSlots = new Set<number>();
  const busyBuses = new Set<string>();
  const scsiTargets = new Set<number>();
  if (needs.includes('root-slots')) {
    const pci = await qmp.execute<PciBusInfo[]>('query-pci');
    for (const d of pci.find((b) => b.bus === 0)?.devices ?? []) rootSlots.add(d.slot);
  }
  if (needs.includes('scsi-targets') || needs.includes('buses')) {
    const devices = await listPeripherals(qmp, { anonymous: true });
    // Only SCSI devices can hold a target; every device may sit behind a port.
    const wanted = needs.includes('buses') ? devices : devices.filter((d) => d.type.startsWith('scsi-'));
    await Promise.all(
      wanted.map(async ({ path, type }) => {
        const bus = await parentBus(qmp, path);
        if (bus === undefined) return;
        busyBuses.add(bus);
        if (bus === scsiBus && type.startsWith('scsi-')) {
          const t = await qmp.execute<unknown>('qom-get', { path, property: 'scsi-id' });
          if (typeof t === 'number') scsiTargets.add(t);
        }
      }),
    );
  }
  return { rootSlots, busyBuses, scsiTargets };
}
