/**
 * Live disk grow: after the storage under a running instance's disk grew
 * (`gnt-instance grow-disk`, which Ganeti 3.0 never tells QEMU about), QEMU
 * is told the new size with `block_resize`. A virtio-blk or SCSI guest sees
 * it at once (config change, capacity-change sense); an IDE guest (libata)
 * keeps the size it probed until the disk is detached and probed again,
 * which a disk in use does not survive (test/guest/ide-resize.test.ts):
 * after a live grow, any later libata revalidation (a host scan, its error
 * handling) treats the disk as replaced and detaches it, the root disk
 * included. So an IDE disk is resized only when the caller says it accepts
 * that (`allowIdeReprobe`); the hook leaves it for the next full restart.
 * The size comes from the storage itself (file size, or the block device's
 * size in sysfs), never from the request alone; shrinking is refused. The
 * runtime file records the new size in the disk's `size` (MiB, as Ganeti),
 * in the file's own format.
 */
import { realpathSync, readFileSync, statSync } from 'node:fs';
import { GkdError } from '../errors';
import type { QmpClient } from '../qmp';
import type { InstanceHold, RuntimeStore } from '../runtime';
import type { RuntimeV2_16 } from '../types';

const MIB = 1024 * 1024;

/** Which disk: its UUID or its index in the runtime file. */
export type DiskRef = { uuid: string; index?: undefined } | { index: number; uuid?: undefined };

export interface ResizeResult {
  name: string;
  device: string;
  /** Bytes QEMU saw before, and sees now. */
  before: number;
  after: number;
  /** False when QEMU already had the storage's size (nothing to do). */
  resized: boolean;
}

/** Options of {@link resizeDisk}. */
export interface ResizeOptions {
  /** New size in MiB (at most what the storage holds); default the storage's size. */
  sizeMib?: number;
  /**
   * Resize an IDE disk although the guest sees the new size only by
   * re-probing it (detach and attach), which a disk in use does not
   * survive. @default false
   */
  allowIdeReprobe?: boolean;
  /** How the instance is held while resizing (InstanceHold). @default its lock, `store.withLock` */
  hold?: InstanceHold;
}

/** The disk entry `ref` names, with its index. */
function findDisk(runtime: RuntimeV2_16, ref: DiskRef, name: string): { index: number; id: string; path: string; field: string; driver?: string } {
  const disks = runtime[3];
  const index = ref.uuid !== undefined ? disks.findIndex((d) => d[0].uuid === ref.uuid) : ref.index;
  const field = ref.uuid !== undefined ? 'uuid' : 'index';
  const entry = index === undefined || index < 0 ? undefined : disks[index];
  if (entry === undefined) {
    throw new GkdError('GKD_DEVICE_NOT_FOUND', `Cannot resize a disk of "${name}": no disk with ${field} ${JSON.stringify(ref.uuid ?? ref.index)} in its runtime file`, { field });
  }
  const id = (entry[0].hvinfo as { id?: unknown } | undefined)?.id;
  if (typeof id !== 'string') {
    throw new GkdError('GKD_DEVICE_NOT_FOUND', `Cannot resize disks[${index}] of "${name}": its runtime entry has no device id (a file from before 2.10)`, { field });
  }
  const driver = (entry[0].hvinfo as { driver?: unknown } | undefined)?.driver;
  return { index, id, path: entry[1], field, ...(typeof driver === 'string' ? { driver } : {}) };
}

/**
 * The size of the storage behind `path` in bytes: a regular file's length,
 * or a block device's size from sysfs. Symlinks (Ganeti's disk links) are
 * followed.
 */
export function storageBytes(path: string): number {
  let real: string;
  try {
    real = realpathSync(path);
  } catch (e) {
    throw new GkdError('GKD_DEVICE_NOT_FOUND', `Cannot read the size of "${path}": ${(e as Error).message}`, { field: 'path', cause: e });
  }
  const st = statSync(real);
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    const major = Math.floor(st.rdev / 256) & 0xfff;
    const minor = (st.rdev & 0xff) | ((Math.floor(st.rdev / 0x100000) & 0xfff) << 8);
    // sysfs counts 512-byte sectors whatever the device's own sector size.
    return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim()) * 512;
  }
  throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot read the size of "${path}": "${real}" is neither a file nor a block device`, { field: 'path' });
}

interface BlockInfo {
  device?: string;
  qdev?: string;
  inserted?: { 'node-name'?: string; image?: { 'virtual-size'?: number } };
}

/** The top block node QEMU attached to device `id` (a -drive BlockBackend or a -blockdev node). */
async function blockNodeOf(qmp: QmpClient, id: string): Promise<{ node: string; size: number }> {
  const blocks = (await qmp.execute('query-block')) as BlockInfo[];
  // qdev is the device's id or its QOM path (virtio devices: .../<id>/virtio-backend).
  const b = blocks.find((x) => x.qdev === id || x.qdev === `/machine/peripheral/${id}/virtio-backend` || x.qdev === `/machine/peripheral/${id}` || x.device === id);
  const node = b?.inserted?.['node-name'];
  const size = b?.inserted?.image?.['virtual-size'];
  if (node === undefined || size === undefined) {
    throw new GkdError('GKD_DEVICE_NOT_FOUND', `Cannot resize "${id}": QEMU has no block node attached to that device`, { device: id });
  }
  return { node, size };
}

/**
 * Grows disk `ref` of instance `name` in QEMU to the storage's size (or to
 * `sizeMib`, which must not exceed it), then records the size in the
 * runtime file. `qmp` runs one short sequence (two commands) on the
 * instance's monitor and gives it back (QmpConnections.use fits).
 */
export async function resizeDisk(store: RuntimeStore, qmp: <T>(fn: (q: QmpClient) => Promise<T>) => Promise<T>, name: string, ref: DiskRef, options: ResizeOptions = {}): Promise<ResizeResult> {
  const { sizeMib } = options;
  const hold: InstanceHold = options.hold ?? ((fn) => store.withLock(name, fn));
  return hold(async () => {
    const read = await store.read(name);
    const disk = findDisk(read.upgraded, ref, name);
    // Ganeti 3.0 records its IDE disks with driver "ide" (a -drive if=ide, no -device); ours are ide-hd.
    const ide = disk.driver === 'ide-hd' || disk.driver === 'ide' || read.upgraded[2].disk_type === 'ide';
    if (ide && options.allowIdeReprobe !== true) {
      throw new GkdError(
        'GKD_UNSUPPORTED_VALUE',
        `Not resizing "${disk.id}" live: it is an IDE disk, whose guest sees a new size only by detaching and re-probing it ` +
          '(which a disk in use does not survive, and which any later libata revalidation does by itself once QEMU has the new size). ' +
          'The new size applies at the next full restart; pass allowIdeReprobe to resize anyway',
        { field: 'allowIdeReprobe', device: disk.id },
      );
    }
    const storage = storageBytes(disk.path);
    let target = storage;
    if (sizeMib !== undefined) {
      if (sizeMib * MIB > storage) {
        throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot resize "${disk.id}" to ${sizeMib} MiB: its storage "${disk.path}" holds only ${Math.floor(storage / MIB)} MiB; grow the storage first (gnt-instance grow-disk)`, { field: 'size', device: disk.id });
      }
      target = sizeMib * MIB;
    }
    const size = await qmp(async (q) => {
      const b = await blockNodeOf(q, disk.id);
      if (target < b.size) {
        throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot shrink "${disk.id}" from ${b.size} to ${target} bytes: a guest's file systems do not survive a disk shrinking under them`, { field: sizeMib === undefined ? 'path' : 'size', device: disk.id });
      }
      if (target > b.size) await q.execute('block_resize', { 'node-name': b.node, size: target });
      return b.size;
    });
    // Ganeti keeps a disk's size in MiB in its dict; the file keeps its own format.
    const dict = read.upgraded[3][disk.index][0];
    const mib = Math.floor(target / MIB);
    if (dict.size !== mib) {
      dict.size = mib;
      await store.writeKeepingFormat(name, read.upgraded, read);
    }
    return { name, device: disk.id, before: size, after: target, resized: target > size };
  });
}
