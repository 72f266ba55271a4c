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
import { claimedSlots, splitOptions } from './kvm-extra';
import { lowestFreeSlot } from './pci-slots';

export const PORT_DRIVER = 'pcie-root-port';
export const FUNCTIONS_PER_SLOT = 8;

export interface RootPort {
  id: string;
  /** Root-bus slot and function of the port itself. */
  slot: number;
  fn: number;
  chassis: number;
}

export function portId(index: number): string {
  return `rp${index}`;
}

/**
 * Places `count` ports on the root bus, lowest free root slots first,
 * eight functions per slot. `occupied` holds root slots already taken.
 */
export function layoutPorts(count: number, occupied: ReadonlySet<number>): RootPort[] {
  const ports: RootPort[] = [];
  const taken = new Set(occupied);
  for (let i = 0; i < count; i += FUNCTIONS_PER_SLOT) {
    const slot = lowestFreeSlot(taken, 1);
    if (slot === undefined) {
      throw new GkdError(
        'GKD_CAPACITY',
        `Cannot place ${count} PCIe root ports: the q35 root bus has no free slot for ports ${i}-${count - 1}; lower hvparams.kvm_pcie_spare_ports`,
        { field: 'hvparams.kvm_pcie_spare_ports' },
      );
    }
    taken.add(slot);
    for (let fn = 0; fn < FUNCTIONS_PER_SLOT && i + fn < count; fn++) {
      ports.push({ id: portId(i + fn), slot, fn, chassis: i + fn + 1 });
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

/** The root ports a runtime's kvm_cmd declares, in order. */
export function parsePorts(kvmCmd: readonly (string | number)[]): RootPort[] {
  const ports: RootPort[] = [];
  for (let i = 0; i < kvmCmd.length - 1; i++) {
    if (kvmCmd[i] !== '-device' || typeof kvmCmd[i + 1] !== 'string') continue;
    const parts = splitOptions(kvmCmd[i + 1] as string);
    if (parts[0] !== PORT_DRIVER) continue;
    const kv = new Map(parts.slice(1).map((o) => [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)] as const));
    const [s, f] = (kv.get('addr') ?? '0').split('.');
    ports.push({ id: kv.get('id') ?? '', slot: parseInt(s, 16), fn: f === undefined ? 0 : parseInt(f, 16), chassis: Number(kv.get('chassis') ?? 0) });
  }
  return ports;
}

export { claimedSlots };
