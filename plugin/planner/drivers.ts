/**
 * Device models: which QEMU driver each Ganeti type becomes, which bus it
 * sits on, whether it can be hot-plugged, and each SCSI controller's limits.
 */
import type { DiskType, NicType, ScsiControllerType } from './hvparams';

/** The kind of bus a device model sits on. */
export type BusKind = 'pci' | 'scsi' | 'ide' | 'isa';

/** How a disk_type becomes a QEMU device. */
export interface DiskModel {
  driver: string;
  bus: BusKind;
  hotpluggable: boolean;
  /** The device accepts `write-cache=` (scsi-generic and scsi-cd don't cache writes). */
  writeCache: boolean;
}

export const DISK_MODELS: Record<DiskType, DiskModel> = {
  paravirtual: { driver: 'virtio-blk-pci', bus: 'pci', hotpluggable: true, writeCache: true },
  'scsi-hd': { driver: 'scsi-hd', bus: 'scsi', hotpluggable: true, writeCache: true },
  'scsi-block': { driver: 'scsi-block', bus: 'scsi', hotpluggable: true, writeCache: false },
  'scsi-generic': { driver: 'scsi-generic', bus: 'scsi', hotpluggable: true, writeCache: false },
  'scsi-cd': { driver: 'scsi-cd', bus: 'scsi', hotpluggable: true, writeCache: false },
  // IDE has no hotplug in QEMU; Ganeti refuses it too.
  ide: { driver: 'ide-hd', bus: 'ide', hotpluggable: false, writeCache: true },
};

/** How a nic_type becomes a QEMU device. */
export interface NicModel {
  driver: string;
  bus: BusKind;
  hotpluggable: boolean;
}

export const NIC_MODELS: Record<NicType, NicModel> = {
  paravirtual: { driver: 'virtio-net-pci', bus: 'pci', hotpluggable: true },
  e1000: { driver: 'e1000', bus: 'pci', hotpluggable: true },
  i82551: { driver: 'i82551', bus: 'pci', hotpluggable: true },
  i82559er: { driver: 'i82559er', bus: 'pci', hotpluggable: true },
  i82557b: { driver: 'i82557b', bus: 'pci', hotpluggable: true },
  ne2k_pci: { driver: 'ne2k_pci', bus: 'pci', hotpluggable: true },
  pcnet: { driver: 'pcnet', bus: 'pci', hotpluggable: true },
  rtl8139: { driver: 'rtl8139', bus: 'pci', hotpluggable: true },
  // An ISA card: not on PCI, and ISA has no hotplug (Ganeti refuses it too).
  ne2k_isa: { driver: 'ne2k_isa', bus: 'isa', hotpluggable: false },
};

/** A SCSI controller's QEMU device and the targets a guest can use. */
export interface ScsiControllerModel {
  driver: string;
  /** Targets a guest can use: 0 .. targets-1. */
  targets: number;
  /**
   * Targets QEMU accepts (`scsi-id` 0 .. qemuTargets-1). More disks than
   * `targets` but no more than this still start, with the last ones unseen
   * by the guest: an instance Ganeti already runs like that is warned about,
   * not stopped.
   */
  qemuTargets: number;
  /** Why the limit is what it is, shown in capacity errors. */
  note: string;
}

/**
 * Limits are what a Linux guest can use, which is narrower than what QEMU
 * accepts: lsi53c895a takes scsi-id 7 but that is the HBA's own id, so a
 * disk there is never seen (QEMU 7.2, Linux 6.1 sym53c8xx).
 */
export const SCSI_CONTROLLERS: Record<ScsiControllerType, ScsiControllerModel> = {
  lsi: { driver: 'lsi53c895a', targets: 7, qemuTargets: 8, note: 'targets 0-6; 7 is the HBA itself' },
  dc390: { driver: 'dc390', targets: 7, qemuTargets: 8, note: 'targets 0-6; 7 is the HBA itself' },
  mptsas1068: { driver: 'mptsas1068', targets: 8, qemuTargets: 8, note: 'targets 0-7' },
  megasas: { driver: 'megasas', targets: 64, qemuTargets: 64, note: 'targets 0-63' },
  pvscsi: { driver: 'pvscsi', targets: 64, qemuTargets: 64, note: 'targets 0-63' },
  'virtio-scsi-pci': { driver: 'virtio-scsi-pci', targets: 256, qemuTargets: 256, note: 'targets 0-255' },
};

/** The SCSI controller's QEMU id; its bus is `<id>.0` (Ganeti uses `scsi`, so `scsi.0`). */
export const SCSI_CONTROLLER_ID = 'scsi';
export const SCSI_BUS = `${SCSI_CONTROLLER_ID}.0`;

/** Ganeti's MAX_DISKS and MAX_NICS. */
export const MAX_DISKS = 16;
export const MAX_NICS = 8;

/** True for the disk types that sit on a SCSI bus. */
export function isScsiDiskType(t: string): boolean {
  return t === 'scsi-hd' || t === 'scsi-block' || t === 'scsi-generic' || t === 'scsi-cd';
}
