/**
 * Devices a runtime records without a place: Ganeti before 2.10 (format
 * 2.9) kept disks as `-drive` options inside kvm_cmd and gave NICs no slot,
 * and 2.10 to 2.15 left a device without `pci` when hotplug was off (it
 * upgrades to `hvinfo: {}`). QEMU made such devices without an id, at
 * addresses it chose itself, so neither a migration target (which builds
 * every disk and NIC from its hvinfo) nor a drift check can place them. A
 * restart under this release gives every device an id. Pure.
 */
import { splitOptions } from '../planner';
import type { RuntimeFormatId, RuntimeV2_16 } from '../types';

/** One device without a recorded place. */
export interface UnplacedDevice {
  recordedIn: 'nic' | 'disk' | 'kvm_cmd';
  /** Index in the runtime's NICs / disks / kvm_cmd. */
  index: number;
  /** JSON path into the runtime (`[1][0].hvinfo`, `[0][12]`), to prefix with the param name. */
  path: string;
  /** One readable name: `nic with uuid "…" (nics[0])`, `disk "-drive file=…" (kvm_cmd[12])`. */
  label: string;
  /** The QEMU type QEMU most likely made of it (to match it among the devices without an id). */
  driver?: string;
}

/** Why such a device blocks a migration, and what to do. */
export const UNPLACED_REASON = 'started by a release without device ids; restart the instance under this release before migrating';

function typeDriver(type: unknown, paravirtual: string): string | undefined {
  const t = typeof type === 'string' && type !== '' ? type : 'paravirtual';
  if (t === 'paravirtual') return paravirtual;
  // Ganeti's other values are QEMU models already (e1000, rtl8139) or buses QEMU fills itself (ide, scsi).
  return ['ide', 'scsi', 'sd', 'mtd', 'pflash'].includes(t) ? undefined : t;
}

/** `-drive` disks (not CD-ROMs) of a pre-2.10 kvm_cmd and the QEMU type `if=` gives them. */
function legacyDrives(kvmCmd: RuntimeV2_16[0]): UnplacedDevice[] {
  const out: UnplacedDevice[] = [];
  for (let i = 0; i < kvmCmd.length - 1; i++) {
    if (kvmCmd[i] !== '-drive') continue;
    const value = String(kvmCmd[i + 1]);
    const opts = splitOptions(value);
    if (opts.includes('media=cdrom')) continue;
    const iface = opts.find((o) => o.startsWith('if='))?.slice(3);
    out.push({
      recordedIn: 'kvm_cmd',
      index: i + 1,
      path: `[0][${i + 1}]`,
      label: `disk "-drive ${value}" (kvm_cmd[${i + 1}])`,
      ...(iface === 'virtio' ? { driver: 'virtio-blk-pci' } : {}),
    });
  }
  return out;
}

/**
 * Every device of `runtime` (the 2.16 form of a file read in `format`)
 * without a QEMU id: NICs and disks whose hvinfo lacks `id`, and for a 2.9
 * file the disks inside kvm_cmd. Empty for every file this release writes.
 */
export function unplacedDevices(runtime: RuntimeV2_16, format: RuntimeFormatId): UnplacedDevice[] {
  const [kvmCmd, nics, hv, disks] = runtime;
  const out: UnplacedDevice[] = [];
  const uuid = (u: unknown): string => (typeof u === 'string' ? `with uuid "${u}"` : 'without uuid');
  nics.forEach((n, i) => {
    if (typeof (n.hvinfo as { id?: unknown } | undefined)?.id === 'string') return;
    const driver = typeDriver(hv.nic_type, 'virtio-net-pci');
    out.push({ recordedIn: 'nic', index: i, path: `[1][${i}].hvinfo`, label: `nic ${uuid(n.uuid)} (nics[${i}])`, ...(driver === undefined ? {} : { driver }) });
  });
  disks.forEach(([d], i) => {
    if (typeof (d.hvinfo as { id?: unknown } | undefined)?.id === 'string') return;
    const driver = typeDriver(hv.disk_type, 'virtio-blk-pci');
    out.push({ recordedIn: 'disk', index: i, path: `[3][${i}][0].hvinfo`, label: `disk ${uuid(d.uuid)} (disks[${i}])`, ...(driver === undefined ? {} : { driver }) });
  });
  if (format === '2.9') out.push(...legacyDrives(kvmCmd));
  return out;
}

/** `nic with uuid "…" (nics[0]) and disk "-drive …" (kvm_cmd[5]) have no device id: started by … */
export function describeUnplaced(devices: readonly UnplacedDevice[]): string {
  const names = devices.map((d) => d.label);
  const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
  return `${list} ${names.length === 1 ? 'has' : 'have'} no device id: ${UNPLACED_REASON}`;
}
