/**
 * PCI Express root ports for q35. `pcie.0` does not take hot-plugged
 * devices (QEMU: "Bus 'pcie.0' does not support hotplugging"), so every
 * disk, NIC and SCSI controller sits alone at slot 0 of its own
 * `pcie-root-port` (a Linux guest scans only device 0 behind a PCIe port;
 * QEMU 7.2 accepts other slots but the guest never sees them). Ports are
 * packed eight to a root slot as multifunction devices to save root slots.
 * They live in the runtime's kvm_cmd, so a migration target rebuilds the
 * same topology.
 */
import { GkdError } from '../errors';
import { claimedSlots, deviceOptions, extraDevices, type RootBus } from './kvm-extra';
import { lowestFreeSlot, parseDevfnText } from './pci-slots';

export const PORT_DRIVER = 'pcie-root-port';
export const FUNCTIONS_PER_SLOT = 8;
/** PCIe chassis numbers are 8 bits; 0 is what a port without `chassis=` gets, so ours start at 1. */
export const MAX_CHASSIS = 255;
/** Ids of the ports the planner makes; only these are spare ports for hot-add. */
export const PORT_ID_RE = /^rp\d+$/;

export interface RootPort {
  id: string;
  /** Root-bus slot and function of the port itself. */
  slot: number;
  fn: number;
  chassis: number;
}

/** The id of the `index`-th root port. */
export function portId(index: number): string {
  return `rp${index}`;
}

/** What other `-device` options (kvm_extra) already take: root slots, PCIe chassis numbers, ids. */
export interface RootClaims {
  slots: ReadonlySet<number>;
  chassis: ReadonlySet<number>;
  ids: ReadonlySet<string>;
}

export const NO_CLAIMS: RootClaims = { slots: new Set(), chassis: new Set(), ids: new Set() };

/**
 * What the options in `args` take on a q35 root bus: the slots (read as for
 * pc, with those `-vga` and `-nic` take at machine init, before any port is
 * created), PCIe chassis numbers and `-device` ids.
 */
export function rootClaims(args: readonly string[], m: RootBus): RootClaims {
  const chassis = new Set<number>();
  const ids = new Set<string>();
  for (const kv of extraDevices(args)) {
    const id = kv.get('id');
    if (id !== undefined) ids.add(String(id));
    const c = kv.get('chassis');
    if (c !== undefined && /^\d+$/.test(String(c))) chassis.add(Number(c));
  }
  return { slots: new Set(claimedSlots(args, m)), chassis, ids };
}

function capacityError(count: number, why: string): GkdError {
  return new GkdError('GKD_CAPACITY', `Cannot place ${count} PCIe root ports: ${why}; lower hvparams.kvm_pcie_spare_ports`, {
    field: 'hvparams.kvm_pcie_spare_ports',
  });
}

/**
 * Places `count` ports on the root bus, lowest free root slots first,
 * eight functions per slot. `occupied` holds root slots the machine takes;
 * `claims` what kvm_extra takes: its slots and chassis numbers are skipped
 * (QEMU refuses a second port on a chassis: "Can't add chassis slot"), and
 * an `rp<N>` id there is refused, so a port id always means a plugin port.
 */
export function layoutPorts(count: number, occupied: ReadonlySet<number>, claims: RootClaims = NO_CLAIMS): RootPort[] {
  const reserved = [...claims.ids].find((id) => PORT_ID_RE.test(id));
  if (reserved !== undefined) {
    throw new GkdError('GKD_SPEC_INVALID', `Cannot use hvparams.kvm_extra: its device id "${reserved}" has the form rp<N>, which q35 instances keep for the plugin's root ports; rename it`, {
      field: 'hvparams.kvm_extra',
    });
  }
  const ports: RootPort[] = [];
  const taken = new Set([...occupied, ...claims.slots]);
  let chassis = 1;
  const nextChassis = (): number => {
    while (claims.chassis.has(chassis)) chassis++;
    if (chassis > MAX_CHASSIS) throw capacityError(count, `PCIe chassis numbers run out at ${MAX_CHASSIS}`);
    return chassis++;
  };
  for (let i = 0; i < count; i += FUNCTIONS_PER_SLOT) {
    const slot = lowestFreeSlot(taken, 1);
    if (slot === undefined) throw capacityError(count, `the q35 root bus has no free slot for ports ${i}-${count - 1}`);
    taken.add(slot);
    for (let fn = 0; fn < FUNCTIONS_PER_SLOT && i + fn < count; fn++) {
      ports.push({ id: portId(i + fn), slot, fn, chassis: nextChassis() });
    }
  }
  return ports;
}

/** The `-device` value for a port. */
export function portDeviceArg(p: RootPort, rootBus: string, multifunction: boolean): string {
  const addr = p.fn === 0 ? `0x${p.slot.toString(16)}` : `0x${p.slot.toString(16)}.0x${p.fn.toString(16)}`;
  const mf = multifunction && p.fn === 0 ? ',multifunction=on' : '';
  return `${PORT_DRIVER},id=${p.id},bus=${rootBus},chassis=${p.chassis},addr=${addr}${mf}`;
}

/**
 * The root ports the planner declared in a runtime's kvm_cmd, in order.
 * `rp<N>` ids are the planner's (planning refuses them in kvm_extra), so
 * ports kvm_extra adds are the operator's and never listed.
 */
export function parsePorts(kvmCmd: readonly (string | number)[]): RootPort[] {
  const ports: RootPort[] = [];
  for (let i = 0; i < kvmCmd.length - 1; i++) {
    if (kvmCmd[i] !== '-device' || typeof kvmCmd[i + 1] !== 'string') continue;
    const kv = deviceOptions(kvmCmd[i + 1] as string);
    const id = String(kv.get('id') ?? '');
    if (kv.get('driver') !== PORT_DRIVER || !PORT_ID_RE.test(id)) continue;
    const at = parseDevfnText(String(kv.get('addr') ?? '0')) ?? { slot: 0, fn: 0 };
    ports.push({ id, slot: at.slot, fn: at.fn, chassis: Number(kv.get('chassis') ?? 0) });
  }
  return ports;
}

export { claimedSlots, parseDevfnText };
