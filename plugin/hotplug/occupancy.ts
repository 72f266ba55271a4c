/**
 * Reads what the live QEMU occupies, for the allocator, with as few QMP
 * commands as the question needs: each QOM call costs QEMU about 0.6 ms
 * (7.2, TCG), so reading every property of every device for every hot-add
 * would cost more than the hotplug itself.
 */
import { isGkdError } from '../errors';
import type { QmpClient } from '../qmp';
import type { LiveOccupancy } from './allocate';

interface PciBusInfo {
  bus: number;
  devices: Array<{ slot: number }>;
}

interface QomProperty {
  name: string;
  type: string;
}

/** What a hot-add must know: root-bus slots (pc), SCSI targets, or which buses (q35 ports) are busy. */
export type OccupancyNeed = 'root-slots' | 'scsi-targets' | 'buses';

/** Every device QEMU has, with and without an id: `[QOM path, QOM type]`. */
async function peripherals(qmp: QmpClient): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const container of ['peripheral', 'peripheral-anon']) {
    let children: QomProperty[];
    try {
      children = await qmp.execute<QomProperty[]>('qom-list', { path: `/machine/${container}` });
    } catch (e) {
      // A QEMU that never made an anonymous device may lack that container.
      if (container === 'peripheral-anon' && isGkdError(e) && e.code === 'GKD_QMP_COMMAND') continue;
      throw e;
    }
    for (const c of children) {
      const m = /^child<(.+)>$/.exec(c.type);
      if (m !== null) out.push([`/machine/${container}/${c.name}`, m[1]]);
    }
  }
  return out;
}

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
    const devices = await peripherals(qmp);
    // Only SCSI devices can hold a target; every device may sit behind a port.
    const wanted = needs.includes('buses') ? devices : devices.filter(([, type]) => type.startsWith('scsi-'));
    await Promise.all(
      wanted.map(async ([path, type]) => {
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
