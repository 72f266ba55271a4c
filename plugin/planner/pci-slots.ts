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

/** `0xc` from 12, as Ganeti writes `addr`. */
export function slotToAddr(slot: number): string {
  return `0x${slot.toString(16)}`;
}

/** 12 from `0xc`, `12` or `0xc.0`; undefined when it isn't a slot. */
export function addrToSlot(addr: unknown): number | undefined {
  if (typeof addr === 'number') return Number.isInteger(addr) && addr >= 0 && addr < PCI_SLOTS ? addr : undefined;
  if (typeof addr !== 'string') return undefined;
  const m = /^(0x[0-9a-fA-F]+|\d+)(\.[0-7])?$/.exec(addr.trim());
  if (m === null) return undefined;
  const n = m[1].startsWith('0x') ? parseInt(m[1], 16) : parseInt(m[1], 10);
  return n < PCI_SLOTS ? n : undefined;
}
