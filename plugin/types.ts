/**
 * Domain types shared by the planner, the runtime formats, hotplug and
 * migration. Plain data only: everything here round-trips through JSON.
 */

/** A device on a PCI (or PCIe root-port) bus: Ganeti 2.16's PCI hvinfo. */
export interface PciHvInfo {
  driver: string;
  id: string;
  /** `pci.0`, or the id of the `pcie-root-port` the device sits behind (q35). */
  bus: string;
  /** Slot as a hex string (`"0xc"`), as Ganeti writes it. */
  addr: string;
}

/** A device on a SCSI bus: Ganeti 2.16's SCSI hvinfo. */
export interface ScsiHvInfo {
  driver: string;
  id: string;
  /** `<controller id>.0`, e.g. `scsi.0`. */
  bus: string;
  channel: number;
  'scsi-id': number;
  lun: number;
}

/** A device on an IDE bus (our extension; Ganeti gives IDE disks an unused PCI hvinfo). */
export interface IdeHvInfo {
  driver: string;
  id: string;
  bus: string;
  unit: number;
}

/** A device on an ISA bus (ne2k_isa); no address. */
export interface IsaHvInfo {
  driver: string;
  id: string;
  bus: string;
}

export type HvInfo = PciHvInfo | ScsiHvInfo | IdeHvInfo | IsaHvInfo;

export function isPciHvInfo(h: HvInfo): h is PciHvInfo {
  return typeof (h as PciHvInfo).addr === 'string';
}

export function isScsiHvInfo(h: HvInfo): h is ScsiHvInfo {
  return typeof (h as ScsiHvInfo)['scsi-id'] === 'number';
}

export function isIdeHvInfo(h: HvInfo): h is IdeHvInfo {
  return typeof (h as IdeHvInfo).unit === 'number';
}

/** A PCI slot on a given bus. */
export interface PciAddress {
  bus: string;
  slot: number;
}

/** A SCSI address on a given bus. */
export interface ScsiAddress {
  bus: string;
  channel: number;
  target: number;
  lun: number;
}

/** Hypervisor parameters: Ganeti's names; unknown keys are kept untouched. */
export type HvParams = Record<string, unknown>;

/** How QEMU reaches a NIC's network (node-local; never stored in the runtime file). */
export type NicBackend =
  | { type: 'tap'; ifname?: string; fd?: number; vhost?: boolean }
  | { type: 'user' };

export interface DiskSpec {
  uuid: string;
  mode?: 'rw' | 'ro';
  size?: number;
  /** Block device or file QEMU opens. */
  path: string;
  /** Userspace access URI (`rbd:pool/image`, `gluster://…`), else null. */
  uri?: string | null;
  name?: string;
  [extra: string]: unknown;
}

export interface NicSpec {
  uuid: string;
  mac: string;
  nicparams?: Record<string, unknown>;
  backend?: NicBackend;
  name?: string;
  ip?: string | null;
  [extra: string]: unknown;
}

/** The Ganeti-shaped instance spec the planner reads (schemas/instance.schema.json). */
export interface InstanceSpec {
  name: string;
  uuid: string;
  hvparams?: HvParams;
  beparams?: { maxmem?: number; minmem?: number; memory?: number; vcpus?: number; [k: string]: unknown };
  disks: DiskSpec[];
  nics: NicSpec[];
}

/** One element of kvm_cmd: Ganeti stores `-m`'s value as a number. */
export type KvmCmdItem = string | number;

/** A NIC dict as stored in a runtime file (Ganeti's NIC.ToDict plus `pci` or `hvinfo`). */
export interface RuntimeNic {
  mac?: string;
  uuid?: string;
  pci?: number;
  hvinfo?: HvInfo | Record<string, never>;
  [extra: string]: unknown;
}

/** A disk dict as stored in a runtime file (Ganeti's Disk.ToDict plus `pci` or `hvinfo`). */
export interface RuntimeDisk {
  uuid?: string;
  mode?: string;
  pci?: number;
  hvinfo?: HvInfo | Record<string, never>;
  [extra: string]: unknown;
}

/** `[disk dict, link path, uri or null]`. */
export type RuntimeDiskEntry = [RuntimeDisk, string, string | null];

export type RuntimeV2_9 = [KvmCmdItem[], RuntimeNic[], HvParams];
export type RuntimeV2_10 = [KvmCmdItem[], RuntimeNic[], HvParams, RuntimeDiskEntry[]];
/** Same shape as 2.10; devices carry `hvinfo` instead of `pci`. */
export type RuntimeV2_16 = [KvmCmdItem[], RuntimeNic[], HvParams, RuntimeDiskEntry[]];

export type RuntimeFormatId = '2.9' | '2.10' | '2.16';
export type AnyRuntime = RuntimeV2_9 | RuntimeV2_10 | RuntimeV2_16;
