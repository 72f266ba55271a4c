/**
 * `kvm_extra`: extra QEMU arguments the operator appends. Ganeti 3.1+
 * splits it like a POSIX shell (shlex); we do the same, and read the PCI
 * slots its `-device` options claim explicitly so no planned device is put
 * on top of them.
 */
import { GkdError } from '../errors';
import { addrToSlot } from './pci-slots';

/** Splits like a POSIX shell without expansions: quotes and backslashes. */
export function shellSplit(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < s.length && '"\\$`'.includes(s[i + 1])) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote !== null) {
    throw new GkdError('GKD_SPEC_INVALID', 'Cannot split hvparams.kvm_extra: unterminated quote', { field: 'hvparams.kvm_extra' });
  }
  if (inWord) out.push(cur);
  return out;
}

/** Splits a QEMU option string on single commas (`,,` is a literal comma). */
export function splitOptions(s: string): string[] {
  return s.replace(/,,/g, '\u0000').split(',').map((p) => p.replace(/\u0000/g, ','));
}

/**
 * The options of one `-device` value, in either QEMU syntax (`driver,k=v,…`
 * or JSON `{"driver":…}`), the driver under `driver`. JSON numbers stay
 * numbers: QEMU reads an integer `addr` there as a devfn, not as hex text.
 */
export function deviceOptions(value: string): Map<string, string | number> {
  const kv = new Map<string, string | number>();
  if (value.trimStart().startsWith('{')) {
    try {
      const o = JSON.parse(value) as Record<string, unknown>;
      for (const [k, v] of Object.entries(o)) if (typeof v === 'string' || typeof v === 'number') kv.set(k, v);
    } catch {
      // Not JSON after all: QEMU will say so when it starts.
    }
    return kv;
  }
  splitOptions(value).forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq > 0) kv.set(p.slice(0, eq), p.slice(eq + 1));
    else if (i === 0) kv.set('driver', p);
  });
  return kv;
}

/**
 * Slots on `rootBus` that `args` (kvm_extra) take before any planned device
 * is created: `-device` options with an explicit `addr` (a device with no
 * `bus=` lands on the root bus), and the display adapter `-vga` creates at
 * machine init, which takes the first free slot (`vgaSlot`: 2 on pc, 1 on
 * q35) ahead of every `-device`.
 */
export function claimedSlots(args: readonly string[], rootBus: string, vgaSlot?: number): number[] {
  const slots: number[] = [];
  for (let i = 0; i < args.length - 1; i++) {
    if (args[i] === '-vga' && args[i + 1] !== 'none' && vgaSlot !== undefined) slots.push(vgaSlot);
    if (args[i] !== '-device') continue;
    const kv = deviceOptions(args[i + 1]);
    const bus = kv.get('bus') ?? rootBus;
    const slot = addrToSlot(kv.get('addr'));
    if (bus === rootBus && slot !== undefined) slots.push(slot);
  }
  return slots;
}
