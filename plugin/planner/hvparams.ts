/**
 * The hvparams the planner reads: Ganeti's names, values and defaults
 * (Ganeti `Constants.hs` and `hv_kvm` parameter checks), plus our own
 * additions. Unknown hvparams pass through untouched.
 */
import { GkdError } from '../errors';
import type { HvParams } from '../types';

export const DISK_TYPES = ['paravirtual', 'scsi-hd', 'scsi-block', 'scsi-generic', 'scsi-cd', 'ide'] as const;
/** Values Ganeti accepts but this planner refuses, with the reason shown to the operator. */
export const REFUSED_DISK_TYPES: Record<string, { reason: string; startsAnyway: boolean }> = {
  // QEMU 7.2 refuses to start the first three as Ganeti 3.0 passes them (-drive if=scsi|sd|mtd on pc).
  scsi: { reason: 'the deprecated "-drive if=scsi" model does not start on pc machines and has no hotplug; use "scsi-hd" with scsi_controller_type "lsi"', startsAnyway: false },
  sd: { reason: 'SD cards are not a disk model for servers and do not start on pc machines; use "paravirtual" or "scsi-hd"', startsAnyway: false },
  mtd: { reason: 'MTD flash is not a disk model for servers and does not start on pc machines; use "paravirtual" or "scsi-hd"', startsAnyway: false },
  // QEMU starts it (the disk becomes the machine's flash), but it is no instance disk.
  pflash: { reason: 'pflash holds firmware, not instance disks; use "paravirtual" or "scsi-hd"', startsAnyway: true },
};
export const NIC_TYPES = [
  'paravirtual', 'e1000', 'i82551', 'i82559er', 'i82557b', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139',
] as const;
export const SCSI_CONTROLLER_TYPES = ['lsi', 'megasas', 'virtio-scsi-pci', 'mptsas1068', 'pvscsi', 'dc390'] as const;
export const DISK_CACHE = ['default', 'none', 'writeback', 'writethrough'] as const;
export const DISK_AIO = ['threads', 'native', 'io_uring'] as const;
/** Ganeti 3.0+ values; "default" passes no discard option, which QEMU takes as "ignore". */
export const DISK_DISCARD = ['default', 'ignore', 'unmap'] as const;
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
  disk_discard: 'default',
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
  const refused = typeof diskType === 'string' ? REFUSED_DISK_TYPES[diskType] : undefined;
  if (refused !== undefined) {
    throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot use hvparams.disk_type "${String(diskType)}": ${refused.reason}`, {
      field: 'hvparams.disk_type',
      data: { startsAnyway: refused.startsAnyway },
    });
  }
  const hv = readFields(filled, (name, read) => read());
  if (hv.cdrom_image_path !== '') {
    throw new GkdError(
      'GKD_UNSUPPORTED_VALUE',
      'Cannot use hvparams.cdrom_image_path: CD-ROM images are not planned by this release; attach the image as a disk with disk_type "scsi-cd"',
      // Ganeti attaches the CD-ROM itself when it starts the instance.
      { field: 'hvparams.cdrom_image_path', data: { startsAnyway: true } },
    );
  }
  return { filled, hv };
}

/**
 * The typed view of a runtime file's stored hvparams, read leniently: the
 * file may come from any Ganeti release (a CD-ROM lives in kvm_cmd
 * already). A value this release would refuse for a new instance
 * falls back to its default here, except the device types, which are kept
 * as they are so the caller can refuse exactly the operation that needs
 * them (a NIC hot-add must not fail because disk_type is "scsi").
 */
export function runtimeHvParams(stored: HvParams | undefined): PlannerHvParams {
  if (stored === undefined) return readRuntimeHvParams(undefined);
  // One hot-add asks several times for the same dict (placement, the block node's and the device's
  // options): read once while the dict holds the same entries (a shallow comparison: Ganeti's
  // hvparams are flat). Frozen, so no caller can change what the next one reads.
  const entries = Object.entries(stored);
  const cached = RUNTIME_HV.get(stored);
  if (cached !== undefined && sameEntries(cached.entries, entries)) return cached.hv;
  const hv = Object.freeze(readRuntimeHvParams(stored));
  RUNTIME_HV.set(stored, { entries, hv });
  return hv;
}

/** {@link runtimeHvParams} by the stored dict it was read from (weak: it goes with the runtime value). */
const RUNTIME_HV = new WeakMap<HvParams, { entries: Array<[string, unknown]>; hv: PlannerHvParams }>();

function sameEntries(a: Array<[string, unknown]>, b: Array<[string, unknown]>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as [string, unknown];
    const y = b[i] as [string, unknown];
    if (x[0] !== y[0] || x[1] !== y[1]) return false;
  }
  return true;
}

function readRuntimeHvParams(stored: HvParams | undefined): PlannerHvParams {
  const filled: HvParams = { ...HVPARAM_DEFAULTS, ...(stored ?? {}) };
  return readFields(filled, (name, read) => {
    try {
      return read();
    } catch {
      const raw = filled[name];
      return DEVICE_TYPE_FIELDS.has(name) && typeof raw === 'string' ? raw : HVPARAM_DEFAULTS[name];
    }
  });
}

/** Fields whose unknown values the lenient reader keeps, so only the operation that needs them refuses. */
const DEVICE_TYPE_FIELDS = new Set<keyof PlannerHvParams>(['disk_type', 'nic_type', 'scsi_controller_type']);

type FieldReaders = { [K in keyof PlannerHvParams]: (name: K, value: unknown) => PlannerHvParams[K] };

/** How each hvparam the planner uses is checked and typed; throws a GkdError naming it. */
const FIELD_READERS: FieldReaders = {
  kvm_path: str,
  disk_type: (n, v) => oneOf(n, v, DISK_TYPES),
  nic_type: (n, v) => oneOf(n, v, NIC_TYPES),
  scsi_controller_type: (n, v) => oneOf(n, v, SCSI_CONTROLLER_TYPES),
  kvm_pci_reservations: (n, v) => intIn(n, v, 0, 32),
  kvm_pcie_spare_ports: (n, v) => (v === 'auto' ? 'auto' : intIn(n, v, 0, 200)),
  machine_version: str,
  kvm_extra: str,
  disk_cache: (n, v) => oneOf(n, v, DISK_CACHE),
  disk_aio: (n, v) => oneOf(n, v, DISK_AIO),
  disk_discard: (n, v) => oneOf(n, v, DISK_DISCARD),
  cdrom_image_path: str,
  cpu_type: str,
  kernel_path: str,
  initrd_path: str,
  kernel_args: str,
  root_path: str,
  vhost_net: bool,
  reboot_behavior: (n, v) => oneOf(n, v, REBOOT_BEHAVIOR),
};

/**
 * The typed view of `filled`, one field at a time through FIELD_READERS;
 * `each` decides what a field whose reader throws becomes (rethrow, or a
 * fallback).
 */
function readFields(filled: HvParams, each: <K extends keyof PlannerHvParams>(name: K, read: () => PlannerHvParams[K]) => unknown): PlannerHvParams {
  const hv: Record<string, unknown> = {};
  for (const name of Object.keys(FIELD_READERS) as Array<keyof PlannerHvParams>) {
    const reader = FIELD_READERS[name] as (n: string, v: unknown) => unknown;
    hv[name] = each(name, () => reader(name, filled[name]) as never);
  }
  return hv as unknown as PlannerHvParams;
}
