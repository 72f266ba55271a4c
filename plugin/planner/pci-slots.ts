/**
 * PCI slot bookkeeping on one bus: a set of occupied slots and a
 * lowest-free search, the rule Ganeti uses (`GetFreeSlot`).
 */
import { PCI_SLOTS } from './machine';

/** The lowest slot in [from, to) not in `occupied`, or undefined. */
export function lowestFreeSlot(occupied: ReadonlySet<number>, from = 0, to = PCI_SLOTS): number | undefined {
  for (let s = Math.max(0, from); s < to; s++) if (!occupied.has(s)) return s;
  return undefined;
}

/** The highest slot in [from, to) not in `occupied`, or undefined. */
export function highestFreeSlot(occupied: ReadonlySet<number>, from = 0, to = PCI_SLOTS): number | undefined {
  for (let s = Math.min(PCI_SLOTS, to) - 1; s >= Math.max(0, from); s--) if (!occupied.has(s)) return s;
  return undefined;
}

/** `0xc` from 12, as Ganeti writes `addr`. */
export function slotToAddr(slot: number): string {
  return `0x${slot.toString(16)}`;
}

/**
 * QEMU reads a PCI `addr` given as text as hexadecimal "SLOT[.FN]" whether
 * or not it has a 0x prefix (`addr=10` is slot 0x10); undefined when it is
 * not an address.
 */
export function parseDevfnText(addr: string): { slot: number; fn: number } | undefined {
  const m = /^\s*(?:0[xX])?([0-9a-fA-F]+)(?:\.(?:0[xX])?([0-9a-fA-F]+))?\s*$/.exec(addr);
  if (m === null) return undefined;
  const slot = parseInt(m[1], 16);
  const fn = m[2] === undefined ? 0 : parseInt(m[2], 16);
  return slot < PCI_SLOTS && fn < 8 ? { slot, fn } : undefined;
}

/**
 * The slot and function a QEMU `addr` value names: slot 12 from `"0xc"`,
 * `"c"` or `"0xc.0x1"` (function 1). QEMU reads a PCI address on the
 * command line as hex with or without `0x` (`addr=12` is slot 0x12) and an
 * integer in a JSON `-device` as a devfn; undefined when it isn't one.
 */
export function parseAddr(addr: unknown): { slot: number; fn: number } | undefined {
  // In a JSON -device on the command line an integer addr is a devfn (16 is slot 2), QEMU 7.2.
  if (typeof addr === 'number') return Number.isInteger(addr) && addr >= 0 && addr < PCI_SLOTS * 8 ? { slot: addr >> 3, fn: addr & 7 } : undefined;
  return typeof addr === 'string' ? parseDevfnText(addr) : undefined;
}

/** The slot a QEMU `addr` value names (see parseAddr), or undefined. */
export function addrToSlot(addr: unknown): number | undefined {
  return parseAddr(addr)?.slot;
}
