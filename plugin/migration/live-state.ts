/**
 * What the live QEMU has, read over QMP for drift checks: every
 * `/machine/peripheral` device in hvinfo terms, the devices without an id
 * (`/machine/peripheral-anon`), each disk device's block backend and each
 * NIC's MAC.
 */
import { readLiveLayout, type LiveDevice } from '../inspect';
import { NIC_MODELS } from '../planner';
import type { QmpClient } from '../qmp';
import { fdsetOf, readFdsets, type FdsetFacts } from './fd-paths';

/** The block backend QEMU attached to a device (query-block). */
export interface LiveBlock {
  /** The top node's name (our `-blockdev` uses the device id). */
  nodeName?: string;
  /** The file the node reads, as QEMU reports it (`json:{…}` for network protocols, `/dev/fdset/N` for a passed descriptor). */
  file?: string;
  readOnly: boolean;
  /** For `/dev/fdset/N`: the real file the set's descriptors are open on, when QEMU still lists them. */
  opened?: string;
}

/** A device without an id. */
export interface AnonDevice {
  path: string;
  driver: string;
}

export interface LiveState {
  devices: LiveDevice[];
  anon: AnonDevice[];
  /** Block backends by device id; a disk device without medium has no entry. */
  blocks: Map<string, LiveBlock>;
  /** MAC addresses by NIC device id. */
  macs: Map<string, string>;
  /** Read only when a disk reads `/dev/fdset/N`: QEMU's fd sets and open files. */
  fdsets?: FdsetFacts;
}

/** Where the QEMU behind the QMP connection is, to read its descriptors (see fd-paths.ts). */
export interface LiveStateWhere {
  qmpSocket?: string;
  /** Pid files that may name the QEMU (tried before all processes). */
  pidFiles?: readonly string[];
}

interface QueryBlockEntry {
  qdev?: string;
  inserted?: { 'node-name'?: string; file?: string; ro?: boolean };
}

const NIC_DRIVERS = new Set(Object.values(NIC_MODELS).map((m) => m.driver));

/**
 * The device id a query-block `qdev` names: QEMU 7.2 gives the id for SCSI
 * and IDE disks and a QOM path (`/machine/peripheral/<id>/virtio-backend`)
 * for virtio-blk.
 */
export function qdevToId(qdev: string | undefined): string | undefined {
  if (qdev === undefined || qdev === '') return undefined;
  const m = /^\/machine\/peripheral\/([^/]+)/.exec(qdev);
  if (m !== null) return m[1];
  return qdev.startsWith('/') ? undefined : qdev;
}

/** Reads the whole live state; a few dozen QMP round trips for a usual instance. */
export async function readLiveState(qmp: QmpClient, where: LiveStateWhere = {}): Promise<LiveState> {
  const devices = await readLiveLayout(qmp);
  const anon: AnonDevice[] = [];
  const children = await qmp.execute<Array<{ name: string; type: string }>>('qom-list', { path: '/machine/peripheral-anon' });
  for (const c of children) {
    const m = /^child<(.+)>$/.exec(c.type);
    if (m !== null) anon.push({ path: `/machine/peripheral-anon/${c.name}`, driver: m[1] });
  }
  const blocks = new Map<string, LiveBlock>();
  for (const b of await qmp.execute<QueryBlockEntry[]>('query-block')) {
    const id = qdevToId(b.qdev);
    if (id === undefined || b.inserted === undefined) continue;
    const { 'node-name': nodeName, file, ro } = b.inserted;
    blocks.set(id, { ...(nodeName === undefined ? {} : { nodeName }), ...(file === undefined ? {} : { file }), readOnly: ro === true });
  }
  const macs = new Map<string, string>();
  for (const d of devices) {
    if (!NIC_DRIVERS.has(d.driver)) continue;
    const mac = await qmp.execute('qom-get', { path: `/machine/peripheral/${d.id}`, property: 'mac' }).catch(() => undefined);
    if (typeof mac === 'string') macs.set(d.id, mac);
  }
  let fdsets: FdsetFacts | undefined;
  if ([...blocks.values()].some((b) => fdsetOf(b.file) !== undefined)) {
    fdsets = await readFdsets(qmp, where);
    for (const b of blocks.values()) {
      const files = fdsets.sets.get(fdsetOf(b.file) ?? -1) ?? [];
      // A set whose descriptors are open on different files names no one file.
      if (files.length > 0 && files.every((f) => f === files[0])) b.opened = files[0];
    }
  }
  return { devices, anon, blocks, macs, ...(fdsets === undefined ? {} : { fdsets }) };
}
