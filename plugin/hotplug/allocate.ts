/**
 * Where a hot-added device goes: pure, from the runtime file's occupancy
 * and what is known of the live QEMU. The engine first passes nothing live
 * (NO_LIVE_OCCUPANCY): QEMU refuses an address in use, and only then is
 * the live layout read and passed, with the refused address (withTaken),
 * so a device placed by kvm_extra, by hand or left behind by a failed
 * unplug is never collided with.
 */
import { GkdError } from '../errors';
import { deviceOptions, DISK_MODELS, MAX_DISKS, MAX_NICS, NIC_MODELS, SCSI_BUS, SCSI_CONTROLLERS, runtimeHvParams, parsePorts, resolveMachine } from '../planner';
import type { HvInfo, RuntimeV2_16 } from '../types';
import { isPciHvInfo, isScsiHvInfo } from '../types';

/** What QEMU reports as taken. */
export interface LiveOccupancy {
  /** Root-bus slots in use (query-pci bus 0, every function). */
  rootSlots: ReadonlySet<number>;
  /** Buses that have at least one device on them (QOM parent_bus names: `rp3`, `scsi.0`). */
  busyBuses: ReadonlySet<string>;
  /** SCSI targets in use on the controller's bus. */
  scsiTargets: ReadonlySet<number>;
}

export type DeviceKind = 'disk' | 'nic';

/** Nothing known from QEMU: placement from the runtime file alone (QEMU refuses an address in use). */
export const NO_LIVE_OCCUPANCY: LiveOccupancy = { rootSlots: new Set(), busyBuses: new Set(), scsiTargets: new Set() };

/**
 * `live` plus the address of `hvinfo`, which QEMU just refused as taken: a
 * live read can miss what refused it (a device QOM does not show where
 * looked), and the retry must not ask for the same address again.
 */
export function withTaken(live: LiveOccupancy, hvinfo: HvInfo): LiveOccupancy {
  const rootSlots = new Set(live.rootSlots);
  const busyBuses = new Set(live.busyBuses);
  const scsiTargets = new Set(live.scsiTargets);
  if (isScsiHvInfo(hvinfo)) scsiTargets.add(hvinfo['scsi-id']);
  else if (isPciHvInfo(hvinfo)) {
    busyBuses.add(hvinfo.bus);
    rootSlots.add(parseInt(hvinfo.addr, 16));
  }
  return { rootSlots, busyBuses, scsiTargets };
}

function runtimeHvInfos(runtime: RuntimeV2_16): HvInfo[] {
  const out: HvInfo[] = [];
  for (const n of runtime[1]) if (n.hvinfo !== undefined && 'id' in n.hvinfo) out.push(n.hvinfo as HvInfo);
  for (const [d] of runtime[3]) if (d.hvinfo !== undefined && 'id' in d.hvinfo) out.push(d.hvinfo as HvInfo);
  return out;
}

/** The driver and bus kind a hot-added device gets: the runtime's own hvparams decide, as in Ganeti. */
export function hotplugModel(runtime: RuntimeV2_16, kind: DeviceKind): { driver: string; bus: 'pci' | 'scsi' | 'ide' | 'isa'; hotpluggable: boolean; type: string } {
  const hv = runtimeHvParams(runtime[2]);
  const type = kind === 'disk' ? hv.disk_type : hv.nic_type;
  const m = kind === 'disk' ? DISK_MODELS[hv.disk_type] : NIC_MODELS[hv.nic_type];
  // A type from an older release this one does not model (Ganeti's legacy "scsi", "sd"...) is not hot-pluggable.
  if (m === undefined) return { driver: type, bus: 'pci', hotpluggable: false, type };
  return { ...m, type };
}

/** Which live facts `allocate` reads for a new device of `kind` on this runtime's machine. */
export function occupancyNeeds(runtime: RuntimeV2_16, kind: DeviceKind): Array<'root-slots' | 'scsi-targets' | 'buses'> {
  const model = hotplugModel(runtime, kind);
  if (model.bus === 'scsi') return ['scsi-targets'];
  const hv = runtimeHvParams(runtime[2]);
  const machine = resolveMachine(hv.machine_version === '' ? machineFromCmd(runtime) : hv.machine_version);
  return machine.family === 'q35' ? ['buses'] : ['root-slots'];
}

/**
 * The hvinfo for a new device with QEMU id `id`. Throws GKD_HOTPLUG_UNSUPPORTED
 * for a type that cannot be hot-plugged and GKD_CAPACITY when nothing is free.
 */
export function allocate(runtime: RuntimeV2_16, kind: DeviceKind, id: string, live: LiveOccupancy): HvInfo {
  const model = hotplugModel(runtime, kind);
  const field = kind === 'disk' ? 'hvparams.disk_type' : 'hvparams.nic_type';
  if (!model.hotpluggable) {
    throw new GkdError('GKD_HOTPLUG_UNSUPPORTED', `Cannot hot-add a ${kind} of type "${model.type}": QEMU cannot hot-plug ${model.driver} (${model.bus.toUpperCase()} bus)`, { field });
  }
  const count = kind === 'disk' ? runtime[3].length : runtime[1].length;
  const max = kind === 'disk' ? MAX_DISKS : MAX_NICS;
  if (count >= max) throw new GkdError('GKD_CAPACITY', `Cannot hot-add a ${kind}: the instance has ${count}, the most it can have is ${max}`, { field: kind === 'disk' ? 'disks' : 'nics' });

  const hv = runtimeHvParams(runtime[2]);
  const machine = resolveMachine(hv.machine_version === '' ? machineFromCmd(runtime) : hv.machine_version);
  const recorded = runtimeHvInfos(runtime);

  if (model.bus === 'scsi') {
    const ctrl = SCSI_CONTROLLERS[hv.scsi_controller_type];
    // A controller type from a release this one does not model: its target count is unknown, so no target can be chosen safely.
    if (ctrl === undefined) {
      throw new GkdError('GKD_HOTPLUG_UNSUPPORTED', `Cannot hot-add a SCSI disk: the runtime's scsi_controller_type ${JSON.stringify(hv.scsi_controller_type)} is not one this release knows (${Object.keys(SCSI_CONTROLLERS).join(', ')})`, { field: 'hvparams.scsi_controller_type' });
    }
    const used = new Set<number>([...live.scsiTargets]);
    for (const h of recorded) if (isScsiHvInfo(h) && h.bus === SCSI_BUS) used.add(h['scsi-id']);
    for (let t = 0; t < ctrl.targets; t++) {
      if (!used.has(t)) return { driver: model.driver, id, bus: SCSI_BUS, channel: 0, 'scsi-id': t, lun: 0 };
    }
    throw new GkdError(
      'GKD_CAPACITY',
      `Cannot hot-add a disk on "${hv.scsi_controller_type}" (${ctrl.driver}): all ${ctrl.targets} usable targets are taken (${ctrl.note}); the instance needs scsi_controller_type "virtio-scsi-pci" at its next restart`,
      { field: 'hvparams.scsi_controller_type' },
    );
  }

  if (machine.family === 'q35') {
    // pcie.0 takes no hot-plugged device: a free spare root port is one no recorded device,
    // no controller from kvm_cmd and nothing live sits behind.
    const cmd = runtime[0];
    const usedBuses = new Set<string>([...live.busyBuses, ...recorded.map((h) => h.bus)]);
    for (let i = 0; i < cmd.length - 1; i++) {
      const bus = cmd[i] === '-device' && typeof cmd[i + 1] === 'string' ? deviceOptions(cmd[i + 1] as string).get('bus') : undefined;
      if (bus !== undefined) usedBuses.add(String(bus));
    }
    const port = parsePorts(cmd).find((p) => !usedBuses.has(p.id));
    if (port === undefined) {
      throw new GkdError('GKD_CAPACITY', `Cannot hot-add a ${kind}: no spare PCIe root port is left; raise hvparams.kvm_pcie_spare_ports (takes effect at the next restart)`, {
        field: 'hvparams.kvm_pcie_spare_ports',
      });
    }
    return { driver: model.driver, id, bus: port.id, addr: '0x0' };
  }

  const taken = new Set<number>([...machine.builtinSlots, ...live.rootSlots]);
  for (const h of recorded) if (isPciHvInfo(h) && h.bus === machine.rootBus) taken.add(parseInt(h.addr, 16));
  for (let s = hv.kvm_pci_reservations; s < 32; s++) {
    if (!taken.has(s)) return { driver: model.driver, id, bus: machine.rootBus, addr: `0x${s.toString(16)}` };
  }
  throw new GkdError('GKD_CAPACITY', `Cannot hot-add a ${kind} on ${machine.rootBus}: no free PCI slot from ${hv.kvm_pci_reservations} to 31`, {
    field: 'hvparams.kvm_pci_reservations',
  });
}

/** The machine type recorded in kvm_cmd (`-machine TYPE[,opts]`), for runtimes whose hvparam is empty. */
export function machineFromCmd(runtime: RuntimeV2_16): string {
  const cmd = runtime[0];
  const i = cmd.indexOf('-machine');
  const v = i >= 0 ? String(cmd[i + 1] ?? '') : '';
  const type = v.split(',')[0];
  // Ganeti's pre-2.16 names like "pc-1.1" are i440fx machines.
  return /^pc-\d/.test(type) ? 'pc' : type === '' ? 'pc' : type;
}
