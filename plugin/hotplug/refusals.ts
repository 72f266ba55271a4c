/**
 * QEMU's refusals that mean "already taken", read from its error texts
 * (QEMU 7.2; the same since 2.x): a device_add at an address in use, or an
 * id, node name or netdev id that exists. The engine places a device from
 * the runtime file without reading QEMU's layout first; a device put there
 * behind its back (by hand, by kvm_extra, left by a failed unplug) makes
 * QEMU refuse, and only then is the live layout read.
 */
import { GkdError, isGkdError } from '../errors';

/** `device_add` at an address in use: SCSI (target and LUN), PCI (slot and function; a root port's only slot). */
const ADDRESS_TAKEN = [/\blun already used by\b/i, /\bPCI: slot \d+ function \d+ not available for\b/i, /\bPCI: slot \d+ function 0 already occupied by\b/i];

/** An id QEMU already has: device, block node, netdev. */
const NAME_TAKEN = [/\bDuplicate device ID\b/i, /\bDuplicate nodes with node-name=/i, /\bis conflicting with a device id\b/i, /\bDuplicate ID '[^']*'( for netdev)?/i];

function desc(e: unknown): string | undefined {
  if (!isGkdError(e) || e.code !== 'GKD_QMP_COMMAND') return undefined;
  return String((e.data as { desc?: unknown } | undefined)?.desc ?? e.message);
}

/** What `e` (from a QMP command) says is taken, if anything. */
export function takenBy(e: unknown): 'address' | 'name' | undefined {
  const d = desc(e);
  if (d === undefined) return undefined;
  if (ADDRESS_TAKEN.some((r) => r.test(d))) return 'address';
  if (NAME_TAKEN.some((r) => r.test(d))) return 'name';
  return undefined;
}

/**
 * `e` as GKD_DEVICE_EXISTS when QEMU refused because the name is taken (a
 * device, node or netdev `id` not in the runtime file), else `e` itself.
 */
export function nameTaken(e: unknown, kind: 'disk' | 'nic', id: string): unknown {
  if (takenBy(e) !== 'name') return e;
  return new GkdError('GKD_DEVICE_EXISTS', `Cannot hot-add ${kind} "${id}": QEMU already has something named "${id}" (not in the runtime file: run instance.verify): ${desc(e) ?? ''}`, {
    field: `${kind}.uuid`, device: id, cause: e,
  });
}
