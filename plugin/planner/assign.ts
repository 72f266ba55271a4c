/**
 * Address assignment: an instance spec becomes a 2.16 runtime (kvm_cmd,
 * NICs and disks with hvinfo). Pure: no I/O, no clock.
 *
 * pc (i440fx), Ganeti-compatible: root slots below `kvm_pci_reservations`
 * are left to QEMU and to kvm_extra; disks take the lowest free slots from
 * there, then NICs. Each SCSI disk gets its own target on one controller
 * whose real limit is enforced.
 * q35: every PCI device sits alone on its own root port (see pcie-ports.ts);
 * the reservation rule does not apply.
 */
import { GkdError } from '../errors';
import type { HvInfo, InstanceSpec, KvmCmdItem, NicBackend, RuntimeDiskEntry, RuntimeNic, RuntimeV2_16 } from '../types';
import { deviceId } from './device-id';
import { DISK_MODELS, MAX_DISKS, MAX_NICS, NIC_MODELS, SCSI_BUS, SCSI_CONTROLLER_ID, SCSI_CONTROLLERS, isScsiDiskType } from './drivers';
import { fillHvParams, type PlannerHvParams } from './hvparams';
import { autoSlots, checkExtraClaims, checkExtraSlots, claimedSlots, deviceOptions, shellSplit, type PlannedFunction } from './kvm-extra';
import { resolveMachine, type MachineLayout } from './machine';
import { DEFAULT_RUN_DIR } from './build-args';
import { escapeOptionValue } from './option-escape';
import { diskEntry, nicEntry } from './runtime-entry';
import { layoutPorts, portDeviceArg, rootClaims, type RootPort } from './pcie-ports';
import { highestFreeSlot, lowestFreeSlot, parseAddr, slotToAddr } from './pci-slots';

/** Facts about this node the pure planner is given. */
export interface PlanOptions {
  /** Alias → versioned machine type of the local QEMU (`{pc: 'pc-i440fx-7.2'}`), to freeze `pc`/`q35`. */
  machineAliases?: Readonly<Record<string, string>>;
  /** Tells a block device from a file, for a disk's Ganeti `dev_type` when the spec gives none; default: a file. */
  isBlockDevice?: (path: string) => boolean;
}

/** One planned disk or NIC, for people and tests. */
export interface PlannedDevice {
  kind: 'disk' | 'nic';
  index: number;
  uuid: string;
  id: string;
  hvinfo: HvInfo;
  hotpluggable: boolean;
}

/** A planned instance: its runtime file (2.16), its devices, its node-local NIC backends and machine. */
export interface Plan {
  runtime: RuntimeV2_16;
  devices: PlannedDevice[];
  /** Node-local NIC backends by NIC UUID (never stored in the runtime file). */
  backends: Record<string, NicBackend>;
  machine: MachineLayout;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function specError(field: string, message: string): GkdError {
  return new GkdError('GKD_SPEC_INVALID', message, { field });
}

/** Places every device; throws GkdError naming the field when anything doesn't fit. */
export function planInstance(spec: InstanceSpec, options: PlanOptions = {}): Plan {
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name)) {
    throw specError('name', `Cannot plan instance ${JSON.stringify(spec.name)}: name must be a host name (letters, digits, ".", "_", "-")`);
  }
  const { filled, hv } = fillHvParams(spec.hvparams);
  const machine = resolveMachine(hv.machine_version, options.machineAliases);
  const disks = spec.disks ?? [];
  const nics = spec.nics ?? [];
  if (disks.length > MAX_DISKS) {
    throw new GkdError('GKD_CAPACITY', `Cannot plan ${disks.length} disks: an instance has at most ${MAX_DISKS}`, { field: 'disks' });
  }
  if (nics.length > MAX_NICS) {
    throw new GkdError('GKD_CAPACITY', `Cannot plan ${nics.length} NICs: an instance has at most ${MAX_NICS}`, { field: 'nics' });
  }

  const ids = new Map<string, string>();
  const idOf = (kind: 'disk' | 'nic', uuid: unknown, field: string): string => {
    const id = deviceId(kind, uuid, field);
    const other = ids.get(id);
    if (other !== undefined) {
      throw new GkdError('GKD_ID_INVALID', `Cannot use ${field}: its id "${id}" collides with ${other} (the first three UUID groups must differ)`, { field, device: id });
    }
    ids.set(id, field);
    return id;
  };
  const diskIds = disks.map((d, i) => idOf('disk', d.uuid, `disks[${i}].uuid`));
  const nicIds = nics.map((n, i) => idOf('nic', n.uuid, `nics[${i}].uuid`));
  nics.forEach((n, i) => {
    if (typeof n.mac !== 'string' || !MAC_RE.test(n.mac)) throw specError(`nics[${i}].mac`, `Cannot plan nics[${i}]: mac ${JSON.stringify(n.mac)} is not a MAC address like "aa:00:00:bf:2f:16"`);
    // The low bit of the first octet marks a group address (multicast; ff:ff:ff:ff:ff:ff is broadcast): no NIC may have one.
    if ((parseInt(n.mac.slice(0, 2), 16) & 1) === 1) throw specError(`nics[${i}].mac`, `Cannot plan nics[${i}]: mac "${n.mac}" is a multicast or broadcast address; a NIC needs a unicast one (first octet even), like "aa:00:00:bf:2f:16"`);
  });
  disks.forEach((d, i) => {
    if (typeof d.path !== 'string' || d.path === '') throw specError(`disks[${i}].path`, `Cannot plan disks[${i}]: path must be a non-empty string`);
    if (d.mode !== undefined && d.mode !== 'rw' && d.mode !== 'ro') throw specError(`disks[${i}].mode`, `Cannot plan disks[${i}]: mode ${JSON.stringify(d.mode)} must be "rw" or "ro"`);
  });
  if (DISK_MODELS[hv.disk_type].bus === 'ide') {
    // QEMU's ide-hd refuses a read-only node ("Block node is read-only").
    const ro = disks.findIndex((d) => d.mode === 'ro');
    if (ro >= 0) throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot plan disks[${ro}] read-only on IDE: ide-hd has no read-only mode; use hvparams.disk_type "paravirtual" or "scsi-hd"`, { field: `disks[${ro}].mode` });
  }

  const extra = shellSplit(hv.kvm_extra);
  const diskModel = DISK_MODELS[hv.disk_type];
  const nicModel = NIC_MODELS[hv.nic_type];
  // Like Ganeti, the controller comes with the disk type, not with the disks: an instance
  // started without disks can still hot-add SCSI disks.
  const scsi = isScsiDiskType(hv.disk_type);
  const ctrl = SCSI_CONTROLLERS[hv.scsi_controller_type];
  if (scsi && disks.length > ctrl.targets) {
    throw new GkdError(
      'GKD_CAPACITY',
      `Cannot place ${disks.length} SCSI disks on "${hv.scsi_controller_type}" (${ctrl.driver}): it has ${ctrl.targets} usable targets (${ctrl.note}); set hvparams.scsi_controller_type to "virtio-scsi-pci" or "megasas"`,
      {
        field: 'hvparams.scsi_controller_type',
        data: { controller: hv.scsi_controller_type, limit: ctrl.targets, requested: disks.length, startsAnyway: disks.length <= ctrl.qemuTargets },
      },
    );
  }
  const isaNics = nicModel.bus === 'isa' ? nics.length : 0;
  if (isaNics > 1) {
    throw new GkdError('GKD_CAPACITY', `Cannot place ${isaNics} ne2k_isa NICs: the ISA bus takes one at its fixed I/O port; use another hvparams.nic_type`, { field: 'hvparams.nic_type' });
  }
  const ideDisks = diskModel.bus === 'ide' ? disks.length : 0;
  const ideCap = machine.ide.buses * machine.ide.units;
  if (ideDisks > ideCap) {
    throw new GkdError('GKD_CAPACITY', `Cannot place ${ideDisks} IDE disks on ${machine.type}: it has ${ideCap} IDE units; use hvparams.disk_type "paravirtual" or "scsi-hd"`, { field: 'hvparams.disk_type' });
  }

  // Which PCI functions does this instance need, in Ganeti's order: controller, disks, NICs.
  const pciDisks = diskModel.bus === 'pci' ? disks.length : 0;
  const pciNics = nicModel.bus === 'pci' ? nics.length : 0;
  const layout =
    machine.family === 'q35'
      ? placeOnPorts(machine, hv, extra, scsi, pciDisks, pciNics)
      : placeOnRootBus(machine, hv, extra, scsi, pciDisks, pciNics);

  const devices: PlannedDevice[] = [];
  let pciDisk = 0;
  const runtimeDisks: RuntimeDiskEntry[] = disks.map((d, i) => {
    const id = diskIds[i];
    let hvinfo: HvInfo;
    if (diskModel.bus === 'pci') hvinfo = { driver: diskModel.driver, id, ...layout.disks[pciDisk++] };
    else if (diskModel.bus === 'scsi') hvinfo = { driver: diskModel.driver, id, bus: SCSI_BUS, channel: 0, 'scsi-id': i, lun: 0 };
    else hvinfo = { driver: diskModel.driver, id, bus: `ide.${Math.floor(i / machine.ide.units)}`, unit: i % machine.ide.units };
    devices.push({ kind: 'disk', index: i, uuid: d.uuid, id, hvinfo, hotpluggable: diskModel.hotpluggable });
    return diskEntry(d, hvinfo, i, `disks[${i}]`, options);
  });
  const backends: Record<string, NicBackend> = {};
  const runtimeNics: RuntimeNic[] = nics.map((n, i) => {
    const id = nicIds[i];
    const hvinfo: HvInfo = nicModel.bus === 'pci' ? { driver: nicModel.driver, id, ...layout.nics[i] } : { driver: nicModel.driver, id, bus: 'isa.0' };
    devices.push({ kind: 'nic', index: i, uuid: n.uuid, id, hvinfo, hotpluggable: nicModel.hotpluggable });
    backends[n.uuid] = n.backend ?? { type: 'tap' };
    return nicEntry(n, hvinfo);
  });

  // Ids of every kind the plan uses: device ids, and the same ids as netdev ids and block node names.
  const plannedIds = new Set<string>([...diskIds, ...nicIds, ...(scsi ? [SCSI_CONTROLLER_ID] : [])]);
  for (const f of layout.fixedDevices) {
    const id = /(?:^|,)id=([^,]+)/.exec(f)?.[1];
    if (id !== undefined) plannedIds.add(id);
  }
  checkExtraClaims(extra, plannedIds);
  const planned = [...layout.disks, ...layout.nics].map((at) => ({ ...at, what: 'a planned disk or NIC' }));
  checkExtraSlots(extra, machine, rootFunctions(layout.fixedDevices.map(fixedAt), machine.rootBus), rootFunctions(planned, machine.rootBus));
  const kvmCmd = fixedCommand(spec, hv, machine, layout.fixedDevices, extra);
  return { runtime: [kvmCmd, runtimeNics, filled, runtimeDisks], devices, backends, machine };
}

interface Layout {
  disks: Array<{ bus: string; addr: string }>;
  nics: Array<{ bus: string; addr: string }>;
  /** `-device` values for controllers and ports, in creation order. */
  fixedDevices: string[];
}

/** Where a planned device sits, for the kvm_extra slot play. */
interface PlannedAt {
  bus?: unknown;
  addr?: unknown;
  what: string;
}

/** A `-device` value the plan puts in kvm_cmd, as a PlannedAt. */
function fixedAt(value: string): PlannedAt {
  const kv = deviceOptions(value);
  return { bus: kv.get('bus'), addr: kv.get('addr'), what: `the plan's ${String(kv.get('driver'))} "${String(kv.get('id'))}"` };
}

/** The PCI functions among `devices` that sit on `rootBus`. */
function rootFunctions(devices: readonly PlannedAt[], rootBus: string): PlannedFunction[] {
  const out: PlannedFunction[] = [];
  for (const d of devices) {
    const at = parseAddr(d.addr);
    if (d.bus === rootBus && at !== undefined) out.push({ ...at, what: d.what });
  }
  return out;
}

function placeOnRootBus(m: MachineLayout, hv: PlannerHvParams, extra: string[], scsi: boolean, disks: number, nics: number): Layout {
  const taken = new Set<number>([...m.builtinSlots, ...claimedSlots(extra, m)]);
  const reserved = hv.kvm_pci_reservations;
  const fixedDevices: string[] = [];
  if (scsi) {
    // The controller is placed explicitly (Ganeti lets QEMU pick) so the target rebuilds it at the same
    // slot whatever else kvm_extra adds. It takes the HIGHEST free slot of the reserved range: devices
    // QEMU creates at machine init from kvm_extra (-net nic, -usb...) take the lowest free ones.
    const slot = highestFreeSlot(taken, 0, reserved) ?? highestFreeSlot(taken, reserved);
    if (slot === undefined) throw capacity(m, 'the SCSI controller', reserved);
    taken.add(slot);
    fixedDevices.push(`${SCSI_CONTROLLERS[hv.scsi_controller_type].driver},id=${SCSI_CONTROLLER_ID},bus=${m.rootBus},addr=${slotToAddr(slot)}`);
  }
  // kvm_extra's -devices without addr come after the controller in kvm_cmd and before the disks and
  // NICs in the argv, each at the lowest free slot QEMU finds then: the disks and NICs keep clear of them.
  for (const s of autoSlots(extra, m, rootFunctions(fixedDevices.map(fixedAt), m.rootBus))) taken.add(s);
  const take = (what: string): { bus: string; addr: string } => {
    const slot = lowestFreeSlot(taken, reserved);
    if (slot === undefined) throw capacity(m, what, reserved);
    taken.add(slot);
    return { bus: m.rootBus, addr: slotToAddr(slot) };
  };
  return {
    disks: Array.from({ length: disks }, (_, i) => take(`disk ${i}`)),
    nics: Array.from({ length: nics }, (_, i) => take(`NIC ${i}`)),
    fixedDevices,
  };
}

function capacity(m: MachineLayout, what: string, reserved: number): GkdError {
  const room = reserved >= 32 ? 'it leaves no slot for disks and NICs' : `all ${32 - reserved} slots from ${reserved} to 31 are taken`;
  return new GkdError(
    'GKD_CAPACITY',
    `Cannot place ${what} on ${m.rootBus}: hvparams.kvm_pci_reservations is ${reserved} and ${room}; lower it or use SCSI disks`,
    { field: 'hvparams.kvm_pci_reservations', data: { reserved, freeFrom: reserved } },
  );
}

/**
 * Spare ports for "auto": enough to grow to MAX_DISKS disks and MAX_NICS NICs
 * by hot-add. Only kinds that are hot-added onto a port count: SCSI disks go
 * on the controller, and IDE disks and ISA NICs cannot be hot-added at all.
 */
export function autoSparePorts(hv: Pick<PlannerHvParams, 'disk_type' | 'nic_type'>, pciDisks: number, pciNics: number): number {
  const disk = DISK_MODELS[hv.disk_type];
  const nic = NIC_MODELS[hv.nic_type];
  const diskRoom = disk.bus === 'pci' && disk.hotpluggable ? Math.max(0, MAX_DISKS - pciDisks) : 0;
  const nicRoom = nic.bus === 'pci' && nic.hotpluggable ? Math.max(0, MAX_NICS - pciNics) : 0;
  return diskRoom + nicRoom;
}

function placeOnPorts(m: MachineLayout, hv: PlannerHvParams, extra: string[], scsi: boolean, disks: number, nics: number): Layout {
  const used = (scsi ? 1 : 0) + disks + nics;
  const spare = hv.kvm_pcie_spare_ports === 'auto' ? autoSparePorts(hv, disks, nics) : hv.kvm_pcie_spare_ports;
  const ports: RootPort[] = layoutPorts(used + spare, new Set<number>(m.builtinSlots), rootClaims(extra, m));
  const fixedDevices = ports.map((p) => portDeviceArg(p, m.rootBus, ports.some((q) => q.slot === p.slot && q.fn > 0)));
  let next = 0;
  if (scsi) fixedDevices.push(`${SCSI_CONTROLLERS[hv.scsi_controller_type].driver},id=${SCSI_CONTROLLER_ID},bus=${ports[next++].id},addr=0x0`);
  const take = (): { bus: string; addr: string } => ({ bus: ports[next++].id, addr: '0x0' });
  return {
    disks: Array.from({ length: disks }, take),
    nics: Array.from({ length: nics }, take),
    fixedDevices,
  };
}

/** The part of the command line stored in the runtime file (Ganeti's kvm_cmd). */
function fixedCommand(spec: InstanceSpec, hv: PlannerHvParams, m: MachineLayout, devices: string[], extra: string[]): KvmCmdItem[] {
  const be = spec.beparams ?? {};
  const mem = be.maxmem ?? be.memory ?? 128;
  const vcpus = be.vcpus ?? 1;
  const cmd: KvmCmdItem[] = [hv.kvm_path, '-name', escapeOptionValue(spec.name), '-m', mem, '-smp', String(vcpus)];
  if (typeof spec.uuid === 'string' && spec.uuid !== '') cmd.push('-uuid', spec.uuid);
  // The serial port is part of the machine, so it is stored as Ganeti stores it (its own socket path,
  // `-serial none` when serial_console is off): a Ganeti target builds exactly the kvm_cmd, and a port
  // only the source has kills the migration ("Unknown savevm section or instance 'serial' 0"). Our own
  // command line replaces the path with this node's (nodeNeutralCommand counts the ports).
  const serial = spec.hvparams?.serial_console === false ? 'none' : `unix:${escapeOptionValue(`${DEFAULT_RUN_DIR}/ctrl/${spec.name}.serial`)},server,nowait`;
  cmd.push('-machine', m.type, '-nodefaults', '-serial', serial, '-display', 'none');
  if (hv.cpu_type !== '') cmd.push('-cpu', hv.cpu_type);
  if (hv.kernel_path !== '') {
    cmd.push('-kernel', hv.kernel_path);
    if (hv.initrd_path !== '') cmd.push('-initrd', hv.initrd_path);
    const append = [hv.root_path !== '' ? `root=${hv.root_path}` : '', hv.kernel_args].filter((s) => s !== '').join(' ');
    if (append !== '') cmd.push('-append', append);
  }
  if (hv.reboot_behavior === 'exit') cmd.push('-no-reboot');
  for (const d of devices) cmd.push('-device', d);
  cmd.push(...extra);
  return cmd;
}
