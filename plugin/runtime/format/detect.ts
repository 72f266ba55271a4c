/**
 * Format detection by shape. Ganeti writes no version field (adding one
 * would break older readers), so the version is read from the member count
 * and from what the devices carry: `pci` (2.10 to 2.15) or `hvinfo` (2.16+).
 */
import { GkdError } from '../../errors';
import type { RuntimeFormatId } from '../../types';
import { fieldPath } from './field-path';

/** Known formats, oldest first: the conversion chain. */
export const RUNTIME_FORMATS: readonly RuntimeFormatId[] = ['2.9', '2.10', '2.16'];

/** True when `id` names a known format. */
export function isRuntimeFormatId(id: unknown): id is RuntimeFormatId {
  return typeof id === 'string' && (RUNTIME_FORMATS as readonly string[]).includes(id);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unknownFormat(what: string, field: string): GkdError {
  return new GkdError('GKD_RUNTIME_UNKNOWN_FORMAT', `Cannot detect runtime file format: ${what}`, { field });
}

/** Every device dict with its readable name; throws when a container has the wrong type. */
function devices(value: unknown[]): Array<{ dict: Record<string, unknown>; field: string }> {
  const out: Array<{ dict: Record<string, unknown>; field: string }> = [];
  const nics = value[1];
  if (!Array.isArray(nics)) throw unknownFormat(`nics is ${describe(nics)}, expected an array`, 'nics');
  nics.forEach((nic, i) => {
    if (!isPlainObject(nic)) throw unknownFormat(`nics[${i}] is ${describe(nic)}, expected an object`, `nics[${i}]`);
    out.push({ dict: nic, field: `nics[${i}]` });
  });
  if (value.length < 4) return out;
  const disks = value[3];
  if (!Array.isArray(disks)) throw unknownFormat(`disks is ${describe(disks)}, expected an array`, 'disks');
  disks.forEach((entry, i) => {
    const dict: unknown = Array.isArray(entry) ? entry[0] : undefined;
    if (!isPlainObject(dict)) {
      throw unknownFormat(`disks[${i}] is not a [disk, link, uri] entry`, fieldPath([3, i]));
    }
    out.push({ dict, field: `disks[${i}]` });
  });
  return out;
}

/**
 * The format of a parsed runtime file, from its shape alone:
 * three members → `2.9`; four members → `2.16` if any device carries
 * `hvinfo`, else `2.10`. A four-member file without devices is valid in both
 * 2.10 and 2.16 (byte for byte); it is reported as `2.10`, the oldest format
 * that reads it. Detection does not validate: use `validateRuntime` for that.
 *
 * @throws GkdError `GKD_RUNTIME_UNKNOWN_FORMAT` naming what matches no format
 *   (not an array, wrong member count, a device with both markers, devices
 *   mixing `pci` and `hvinfo`, a 2.9 file whose devices carry either).
 */
export function detectFormat(value: unknown): RuntimeFormatId {
  if (!Array.isArray(value)) {
    throw unknownFormat(`the top-level value is ${describe(value)}, expected an array of 3 or 4 members`, 'runtime');
  }
  if (value.length !== 3 && value.length !== 4) {
    throw unknownFormat(`the top-level array has ${value.length} members, expected 3 (2.9) or 4 (2.10, 2.16)`, 'runtime');
  }
  const withPci: string[] = [];
  const withHvinfo: string[] = [];
  for (const { dict, field } of devices(value)) {
    const pci = 'pci' in dict;
    const hvinfo = 'hvinfo' in dict;
    if (pci && hvinfo) throw unknownFormat(`${field} has both "pci" and "hvinfo"`, field);
    if (pci) withPci.push(field);
    if (hvinfo) withHvinfo.push(field);
  }
  if (value.length === 3) {
    const marked = [...withPci, ...withHvinfo];
    if (marked.length > 0) {
      throw unknownFormat(`the array has 3 members (2.9) but ${marked.join(', ')} carry "pci" or "hvinfo" (2.10 and later)`, marked[0]);
    }
    return '2.9';
  }
  if (withPci.length > 0 && withHvinfo.length > 0) {
    throw unknownFormat(
      `devices mix "pci" (${withPci.join(', ')}, 2.10) and "hvinfo" (${withHvinfo.join(', ')}, 2.16)`,
      withPci[0],
    );
  }
  return withHvinfo.length > 0 ? '2.16' : '2.10';
}
