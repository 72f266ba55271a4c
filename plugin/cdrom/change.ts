/**
 * Live CD-ROM change: Ganeti 3.0 applies `cdrom_image_path` (and
 * `cdrom2_image_path`) only when it next starts QEMU. This changes the
 * medium of the running QEMU's drive at once and rewrites the drive's
 * `file=` in the runtime file's kvm_cmd, where Ganeti keeps its CD-ROM
 * drives, so a migration target (which Ganeti starts from kvm_cmd) opens
 * the new image too.
 *
 * Ganeti passes a CD-ROM as `-drive file=IMG,media=cdrom,format=raw,if=ide`
 * without an index or id: QEMU gives the first one IDE index 0 and the
 * second index 1, i.e. the block backends `ide0-cd0` and `ide0-cd1`.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { GkdError } from '../errors';
import { splitOptions } from '../planner/kvm-extra';
import { escapeOptionValue } from '../planner/option-escape';
import type { QmpClient } from '../qmp';
import type { InstanceHold, RuntimeStore } from '../runtime';

export interface CdromChangeResult {
  name: string;
  slot: 1 | 2;
  /** The QEMU block backend whose medium changed. */
  drive: string;
  before: string | null;
  after: string | null;
}

/** The `file=` of one `-drive` value, `,,` unescaped; undefined when it has none. */
export function driveFile(value: string): string | undefined {
  const f = splitOptions(value).find((o) => o.startsWith('file='));
  return f === undefined ? undefined : f.slice('file='.length);
}

/** `value` with its `file=` set to `path`, or removed for an empty drive; every option re-escaped. */
export function withDriveFile(value: string, path: string | null): string {
  // An empty drive takes no format either (QEMU refuses a format without a file).
  const rest = splitOptions(value).filter((o) => !o.startsWith('file=') && !(path === null && o.startsWith('format=')));
  const hasFormat = rest.some((o) => o.startsWith('format='));
  const file = path === null ? [] : [`file=${path}`, ...(hasFormat ? [] : ['format=raw'])];
  return [...file, ...rest].map(escapeOptionValue).join(',');
}

/** Index in kvm_cmd of the value of the `slot`-th CD-ROM `-drive`. */
function cdromDriveIndex(cmd: unknown[], slot: 1 | 2): number | undefined {
  let n = 0;
  for (let i = 0; i + 1 < cmd.length; i++) {
    if (cmd[i] === '-drive' && typeof cmd[i + 1] === 'string' && /(^|,)media=cdrom(,|$)/.test(String(cmd[i + 1]))) {
      n++;
      if (n === slot) return i + 1;
    }
  }
  return undefined;
}

/** Refuses an image QEMU could not open, before anything changes. */
async function checkImage(path: string): Promise<void> {
  try {
    const st = await stat(path);
    if (!st.isFile() && !st.isBlockDevice()) throw new Error('not a file or block device');
    await access(path, constants.R_OK);
  } catch (e) {
    throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot insert "${path}": ${(e as Error).message}`, { field: 'path', cause: e });
  }
}

/**
 * Puts `path` into CD-ROM drive `slot` of the running instance `name`
 * (`null` ejects), then records it in kvm_cmd. `force` opens a tray the
 * guest locked. `hold` is how the instance is held meanwhile (InstanceHold;
 * default its lock).
 */
export async function changeCdrom(
  store: RuntimeStore, qmp: <T>(fn: (q: QmpClient) => Promise<T>) => Promise<T>, name: string, slot: 1 | 2, path: string | null, force = false,
  hold: InstanceHold = (fn) => store.withLock(name, fn),
): Promise<CdromChangeResult> {
  if (path !== null) await checkImage(path);
  return hold(async () => {
    const read = await store.read(name);
    const cmd = read.upgraded[0];
    const at = cdromDriveIndex(cmd, slot);
    if (at === undefined) {
      throw new GkdError('GKD_DEVICE_NOT_FOUND', `Cannot change CD-ROM ${slot} of "${name}": its QEMU was started without that drive (Ganeti adds it when cdrom${slot === 1 ? '' : '2'}_image_path is set at start); the image applies at the next start`, { field: 'slot' });
    }
    const value = String(cmd[at]);
    if (!/(^|,)if=ide(,|$)/.test(value)) {
      throw new GkdError('GKD_HOTPLUG_UNSUPPORTED', `Cannot change CD-ROM ${slot} of "${name}" live: only IDE CD-ROM drives are changed (this one is "${value}"); the image applies at the next start`, { field: 'slot' });
    }
    const drive = `ide0-cd${slot - 1}`;
    const before = driveFile(value) ?? null;
    // One short sequence on the monitor (it may be Ganeti's, which serves one client at a time).
    await qmp(async (q) => {
      if (path === null) await q.execute('eject', { device: drive, force });
      else await q.execute('blockdev-change-medium', { device: drive, filename: path, format: 'raw', ...(force ? { force: true } : {}) });
    });
    cmd[at] = withDriveFile(value, path);
    await store.writeKeepingFormat(name, read.upgraded, read);
    return { name, slot, drive, before, after: path };
  });
}
