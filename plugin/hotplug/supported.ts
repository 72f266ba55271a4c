/**
 * `hotplug.supported`: can this instance hot-add or hot-remove a disk or
 * NIC right now, and if not, why. Ganeti's rules: QEMU >= 1.7, the needed
 * QMP commands, a hot-pluggable device type (no ide, no ne2k_isa), plus
 * free capacity for an add.
 */
import { isGkdError } from '../errors';
import { deviceId, SCSI_BUS } from '../planner';
import type { QmpClient } from '../qmp';
import type { RuntimeV2_16 } from '../types';
import { allocate, hotplugModel, occupancyNeeds, type DeviceKind, type LiveOccupancy } from './allocate';
import { readOccupancy } from './occupancy';

/** The answer of `hotplug.supported`: yes or no, why not, and how much room is left for an add. */
export interface SupportAnswer {
  supported: boolean;
  reason?: string;
  qemu: string;
  driver: string;
  /** For add: how many more devices of this kind fit now. */
  free?: number;
}

const NEEDED: Record<DeviceKind, Record<'add' | 'remove', string[]>> = {
  disk: { add: ['blockdev-add', 'device_add', 'query-pci', 'query-block', 'qom-get'], remove: ['device_del', 'blockdev-del'] },
  nic: { add: ['netdev_add', 'device_add', 'query-pci', 'qom-get'], remove: ['device_del', 'netdev_del'] },
};

/**
 * How many devices `allocate` would still place, simulating each add. With
 * several kinds they are added in turn (a disk, a NIC, a disk…) until every
 * kind is refused, which is what an instance growing both ways can reach.
 */
export function freeCapacity(runtime: RuntimeV2_16, kinds: DeviceKind | readonly DeviceKind[], live: LiveOccupancy): number {
  const sim = structuredClone(runtime);
  const open = new Set<DeviceKind>(typeof kinds === 'string' ? [kinds] : kinds);
  let n = 0;
  while (open.size > 0) {
    for (const kind of [...open]) {
      const uuid = `${(0xf0000000 + n).toString(16)}-0000-4000-8000-000000000000`;
      try {
        const hvinfo = allocate(sim, kind, deviceId(kind, uuid, 'uuid'), live);
        if (kind === 'disk') sim[3].push([{ uuid, hvinfo }, '', null]);
        else sim[1].push({ uuid, hvinfo });
        n++;
      } catch (e) {
        if (!isGkdError(e)) throw e;
        open.delete(kind);
      }
    }
  }
  return n;
}

/** Whether `kind` can be hot-added or -removed on this instance now, with the reason when not. */
export async function hotplugSupported(runtime: RuntimeV2_16, qmp: QmpClient, kind: DeviceKind, action: 'add' | 'remove'): Promise<SupportAnswer> {
  const v = qmp.version;
  const qemu = `${v.major}.${v.minor}.${v.micro}`;
  const model = hotplugModel(runtime, kind);
  const base = { qemu, driver: model.driver };
  const { major, minor } = v;
  if (major < 1 || (major === 1 && minor < 7)) return { ...base, supported: false, reason: `QEMU ${qemu} is older than 1.7, which hotplug needs` };
  const commands = await qmp.commands();
  const missing = NEEDED[kind][action].filter((c) => !commands.has(c));
  if (missing.length > 0) return { ...base, supported: false, reason: `QEMU ${qemu} lacks the QMP commands ${missing.join(', ')}` };
  if (!model.hotpluggable) return { ...base, supported: false, reason: `${kind} type "${model.type}" (${model.driver}) cannot be hot-plugged` };
  if (action === 'remove') return { ...base, supported: true };
  // Read once, and only what the allocator looks at for this kind on this machine.
  const live = await readOccupancy(qmp, SCSI_BUS, occupancyNeeds(runtime, kind));
  const free = freeCapacity(runtime, kind, live);
  if (free === 0) {
    let reason = `no room for another ${kind}`;
    try {
      allocate(runtime, kind, 'probe', live);
    } catch (e) {
      reason = (e as Error).message;
    }
    return { ...base, supported: false, free, reason };
  }
  return { ...base, supported: true, free };
}
