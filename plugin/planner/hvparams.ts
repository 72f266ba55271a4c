/**
 * The hvparams the planner reads: Ganeti's names, values and defaults
 * (Ganeti `Constants.hs` and `hv_kvm` parameter checks), plus our own
 * additions. Unknown hvparams pass through untouched.
 */
import { GkdError } from '../errors';
import type { HvParams } from '../types';

export const DISK_TYPES = ['paravirtual', 'scsi-hd', 'scsi-block', 'scsi-generic', 'scsi-cd', 'ide'] as const;
/** Values Ganeti accepts but this planner refuses, with the reason shown to the operator. */
export const REFUSED_DISK_TYPES: Record<string, string> = {
  scsi: 'the deprecated "-drive if=scsi" model has no hotplug; use "scsi-hd" with scsi_controller_type "lsi"',
  sd: 'SD cards are not a disk model for servers; use "paravirtual" or "scsi-hd"',
  mtd: 'MTD flash is not a disk model for servers; use "paravirtual" or "scsi-hd"',
  pflash: 'pflash holds firmware, not instance disks; use "paravirtual" or "scsi-hd"',
};
export const NIC_TYPES = [
  'paravirtual', 'e1000', 'i82551', 'i82559er', 'i82557b', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139',
] as const;
export const SCSI_CONTROLLER_TYPES = ['lsi', 'megasas', 'virtio-scsi-pci', 'mptsas1068', 'pvscsi', 'dc390'] as const;
export const DISK_CACHE = ['default', 'none', 'writeback', 'writethrough'] as const;
export const DISK_AIO = ['threads', 'native', 'io_uring'] as const;
export const DISK_DISCARD = ['ignore', 'unmap'] as const;
export const REBOOT_BEHAVIOR = ['reboot', 'exit'] as const;

export type DiskType = (typeof DISK_TYPES)[number];
export type NicType = (typeof NIC_TYPES)[number];
export type ScsiControllerType = (typeof SCSI_CONTROLLER_TYPES)[number];

/** Ganeti's default for `kvm_pci_reservations` (QEMU_DEFAULT_PCI_RESERVATIONS). */
export const DEFAULT_PCI_RESERVATIONS = 12;
/**
 * `kvm_pcie_spare_ports` default: "auto" gives a q35 instance enough empty
 * root ports to grow to MAX_DISKS PCI disks and MAX_NICS NICs by hot-add.
 */
export const DEFAULT_PCIE_SPARE_PORTS = 'auto';

/** Defaults for every hvparam the planner reads. */
export const HVPARAM_DEFAULTS = {
  kvm_path: '/usr/bin/qemu-system-x86_64',
  disk_type: 'paravirtual',
  nic_type: 'paravirtual',
  scsi_controller_type: 'lsi',
  kvm_pci_reservations: DEFAULT_PCI_RESERVATIONS,
  kvm_pcie_spare_ports: DEFAULT_PCIE_SPARE_PORTS,
  machine_version: '',
  kvm_extra: '',
  disk_cache: 'default',
  disk_aio: 'threads',
  disk_discard: 'ignore',
  cdrom_image_path: '',
  cpu_type: '',
  kernel_path: '',
  initrd_path: '',
  kernel_args: '',
  root_path: '',
  vhost_net: true,
  reboot_behavior: 'reboot',
} as const;

/** The typed view of the hvparams the planner uses. */
export interface PlannerHvParams {
  kvm_path: string;
  disk_type: DiskType;
  nic_type: NicType;
  scsi_controller_type: ScsiControllerType;
  kvm_pci_reservations: number;
  kvm_pcie_spare_ports: number | 'auto';
  machine_version: string;
  kvm_extra: string;
  disk_cache: (typeof DISK_CACHE)[number];
  disk_aio: (typeof DISK_AIO)[number];
  disk_discard: (typeof DISK_DISCARD)[number];
  cdrom_image_path: string;
  cpu_type: string;
  kernel_path: string;
  initrd_path: string;
  kernel_args: string;
  root_path: string;
  vhost_net: boolean;
  reboot_behavior: (typeof REBOOT_BEHAVIOR)[number];
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new GkdError(
    'GKD_UNSUPPORTED_VALUE',
    `Cannot use hvparams.${name} ${JSON.stringify(value)}: expected one of ${allowed.map((a) => `"${a}"`).join(', ')}`,
    { field: `hvparams.${name}` },
  );
}

function str(name: string, value: unknown): string {
  if (typeof value === 'string') return value;
  throw new GkdError('GKD_SPEC_INVALID', `Cannot use hvparams.${name}: expected a string, got ${JSON.stringify(value)}`, {
    field: `hvparams.${name}`,
  });
}

function intIn(name: string, value: unknown, min: number, max: number): number {
  // Ganeti stores some ints as strings in old configs; accept "12" as 12.
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max) return n;
  throw new GkdError(
    'GKD_UNSUPPORTED_VALUE',
    `Cannot use hvparams.${name} ${JSON.stringify(value)}: expected an integer from ${min} to ${max}`,
    { field: `hvparams.${name}` },
  );
}

function bool(name: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  throw new GkdError('GKD_SPEC_INVALID', `Cannot use hvparams.${name}: expected true or false, got ${JSON.stringify(value)}`, {
    field: `hvparams.${name}`,
  });
}

/**
 * Fills Ganeti's defaults in and checks every value the planner uses.
 * Returns the filled dict (what the runtime file stores: unknown keys kept,
 * in the caller's order first) and the typed view.
 */
export function fillHvParams(given: HvParams | undefined): { filled: HvParams; hv: PlannerHvParams } {
  const filled: HvParams = { ...(given ?? {}) };
  for (const [k, v] of Object.entries(HVPARAM_DEFAULTS)) if (filled[k] === undefined) filled[k] = v;
  const diskType = filled.disk_type;
  if (typeof diskType === 'string' && REFUSED_DISK_TYPES[diskType] !== undefined) {
    throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot use hvparams.disk_type "${diskType}": ${REFUSED_DISK_TYPES[diskType]}`, {
      field: 'hvparams.disk_type',
    });
  }
  const hv: PlannerHvParams = {
    kvm_path: str('kvm_path', filled.kvm_path),
    disk_type: oneOf('disk_type', filled.disk_type, DISK_TYPES),
    nic_type: oneOf('nic_type', filled.nic_type, NIC_TYPES),
    scsi_controller_type: oneOf('scsi_controller_type', filled.scsi_controller_type, SCSI_CONTROLLER_TYPES),
    kvm_pci_reservations: intIn('kvm_pci_reservations', filled.kvm_pci_reservations, 0, 32),
    kvm_pcie_spare_ports:
      filled.kvm_pcie_spare_ports === 'auto' ? 'auto' : intIn('kvm_pcie_spare_ports', filled.kvm_pcie_spare_ports, 0, 200),
    machine_version: str('machine_version', filled.machine_version),
    kvm_extra: str('kvm_extra', filled.kvm_extra),
    disk_cache: oneOf('disk_cache', filled.disk_cache, DISK_CACHE),
    disk_aio: oneOf('disk_aio', filled.disk_aio, DISK_AIO),
    disk_discard: oneOf('disk_discard', filled.disk_discard, DISK_DISCARD),
    cdrom_image_path: str('cdrom_image_path', filled.cdrom_image_path),
    cpu_type: str('cpu_type', filled.cpu_type),
    kernel_path: str('kernel_path', filled.kernel_path),
    initrd_path: str('initrd_path', filled.initrd_path),
    kernel_args: str('kernel_args', filled.kernel_args),
    root_path: str('root_path', filled.root_path),
    vhost_net: bool('vhost_net', filled.vhost_net),
    reboot_behavior: oneOf('reboot_behavior', filled.reboot_behavior, REBOOT_BEHAVIOR),
  };
  if (hv.cdrom_image_path !== '') {
    throw new GkdError(
      'GKD_UNSUPPORTED_VALUE',
      'Cannot use hvparams.cdrom_image_path: CD-ROM images are not planned by this release; attach the image as a disk with disk_type "scsi-cd"',
      { field: 'hvparams.cdrom_image_path' },
    );
  }
  return { filled, hv };
}

/**
 * The typed view of a runtime file's stored hvparams, read leniently: the
 * file may come from any Ganeti release (2.16 files carry `disk_discard:
 * "default"`, which Ganeti 3.1 reads as "ignore"; a CD-ROM lives in
 * kvm_cmd already). A value this release would refuse for a new instance
 * falls back to its default here, except the device types, which are kept
 * as they are so the caller can refuse exactly the operation that needs
 * them (a NIC hot-add must not fail because disk_type is "scsi").
 */
export function runtimeHvParams(stored: HvParams | undefined): PlannerHvParams {
  const filled: HvParams = { ...HVPARAM_DEFAULTS, ...(stored ?? {}) };
  const pick = <T>(read: () => T, fallback: T): T => {
    try {
      return read();
    } catch {
      return fallback;
    }
  };
  const d = HVPARAM_DEFAULTS;
  const raw = (k: string, dflt: string): string => (typeof filled[k] === 'string' ? (filled[k] as string) : dflt);
  return {
    kvm_path: raw('kvm_path', d.kvm_path),
    disk_type: raw('disk_type', d.disk_type) as DiskType,
    nic_type: raw('nic_type', d.nic_type) as NicType,
    scsi_controller_type: raw('scsi_controller_type', d.scsi_controller_type) as ScsiControllerType,
    kvm_pci_reservations: pick(() => intIn('kvm_pci_reservations', filled.kvm_pci_reservations, 0, 32), d.kvm_pci_reservations),
    kvm_pcie_spare_ports: filled.kvm_pcie_spare_ports === 'auto' ? 'auto' : pick<number | 'auto'>(() => intIn('kvm_pcie_spare_ports', filled.kvm_pcie_spare_ports, 0, 200), 'auto'),
    machine_version: raw('machine_version', ''),
    kvm_extra: raw('kvm_extra', ''),
    disk_cache: pick(() => oneOf('disk_cache', filled.disk_cache, DISK_CACHE), d.disk_cache),
    disk_aio: pick(() => oneOf('disk_aio', filled.disk_aio, DISK_AIO), d.disk_aio),
    disk_discard: pick(() => oneOf('disk_discard', filled.disk_discard, DISK_DISCARD), d.disk_discard),
    cdrom_image_path: raw('cdrom_image_path', ''),
    cpu_type: raw('cpu_type', ''),
    kernel_path: raw('kernel_path', ''),
    initrd_path: raw('initrd_path', ''),
    kernel_args: raw('kernel_args', ''),
    root_path: raw('root_path', ''),
    vhost_net: typeof filled.vhost_net === 'boolean' ? filled.vhost_net : d.vhost_net,
    reboot_behavior: pick(() => oneOf('reboot_behavior', filled.reboot_behavior, REBOOT_BEHAVIOR), d.reboot_behavior),
  };
}
