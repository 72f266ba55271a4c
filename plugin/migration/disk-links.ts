/**
 * Disk link names a migration target cannot rebuild.
 *
 * Ganeti links every disk of an instance as `<links dir>/<name>:<index>`
 * (index = the disk's position in the instance's disk list) when it opens
 * the disks on a node, and a migration target starts QEMU with the paths
 * the source's runtime file holds. Ganeti 3.0 keeps a hot-added disk's link
 * name after an earlier disk is hot-removed: the runtime file then says
 * `<name>:2` for what is now disk 1, the target links `<name>:1`, and the
 * target QEMU exits at once ("Failed to accept instance"). Found on a real
 * two-node cluster; these functions find such entries and give the name
 * the target will create.
 */
import type { RuntimeV2_16 } from '../types';

/** Where Ganeti links instance disks on every node. */
export const GANETI_DISK_LINKS_DIR = '/var/run/ganeti/instance-disks';

/** One disk whose runtime path carries another index than its position. */
export interface StaleDiskLink {
  /** Position in the runtime file's disk list (= Ganeti's disk index). */
  index: number;
  uuid: string;
  /** The link the runtime file names. */
  path: string;
  /** The link Ganeti creates for this disk on any node that opens it. */
  expected: string;
}

/** Disks of instance `name` whose link name does not match their index. */
export function staleDiskLinks(runtime: RuntimeV2_16, name: string, dir = GANETI_DISK_LINKS_DIR): StaleDiskLink[] {
  const prefix = `${dir}/${name}:`;
  const out: StaleDiskLink[] = [];
  for (const [index, [disk, path]] of runtime[3].entries()) {
    if (!path.startsWith(prefix)) continue;
    const tail = path.slice(prefix.length);
    if (!/^\d+$/.test(tail) || Number(tail) === index) continue;
    out.push({ index, uuid: disk.uuid ?? `#${index}`, path, expected: `${prefix}${index}` });
  }
  return out;
}

/** One line per stale link, for messages. */
export function describeStaleLinks(stale: StaleDiskLink[]): string {
  return stale.map((s) => `disk ${s.index} (${s.uuid}) is named ${s.path}, a target links it as ${s.expected}`).join('; ');
}
