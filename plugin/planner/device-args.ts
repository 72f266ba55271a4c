/**
 * The QEMU objects for one disk or NIC, as structured data. The same data
 * feeds the command line (`-blockdev`/`-device`/`-netdev`, rendered by
 * `renderFlat`) and QMP (`blockdev-add`/`device_add`/`netdev_add`), so a
 * hot-added device is configured exactly like one present at start
 * (Ganeti #1559: hot-added disks ignored disk_cache).
 */
import { GkdError } from '../errors';
import type { HvInfo, NicBackend } from '../types';
import { DISK_MODELS } from './drivers';
import { escapeOptionValue } from './option-escape';

/** A value in a QEMU option dict (QMP JSON, or dotted `k=v` on the command line). */
export type QemuValue = string | number | boolean | QemuDict | QemuValue[];
/** A QEMU option dict: QMP arguments, rendered flat for the command line. */
export interface QemuDict {
  [k: string]: QemuValue;
}

/** The disk I/O hvparams, as Ganeti names them. */
export interface DiskIoParams {
  cache: 'default' | 'none' | 'writeback' | 'writethrough';
  aio: 'threads' | 'native' | 'io_uring';
  discard: 'ignore' | 'unmap';
}

/** Ganeti 3.1's cache map: (write-cache, cache.direct) per disk_cache. */
function cacheSettings(io: DiskIoParams): { writeCache: boolean; direct: boolean } {
  // aio=native needs O_DIRECT (QEMU: "aio=native was specified, but it requires cache.direct=on"),
  // so Ganeti forces cache "none" with it; we do the same.
  const cache = io.aio === 'native' ? 'none' : io.cache;
  switch (cache) {
    case 'none':
      return { writeCache: true, direct: true };
    case 'writethrough':
      return { writeCache: false, direct: false };
    default:
      return { writeCache: true, direct: false };
  }
}

/** The protocol layer for a userspace URI (`rbd:pool/image`, `gluster://host[:port]/volume/path`). */
export function uriProtocol(uri: string, field: string): QemuDict {
  const rbd = /^rbd:([^/]+)\/(.+)$/.exec(uri);
  if (rbd !== null) return { driver: 'rbd', pool: rbd[1], image: rbd[2] };
  const gl = /^gluster:\/\/([^/:]+)(?::(\d+))?\/([^/]+)\/(.+)$/.exec(uri);
  if (gl !== null) {
    return { driver: 'gluster', volume: gl[3], path: gl[4], server: [{ type: 'inet', host: gl[1], port: gl[2] ?? '24007' }] };
  }
  throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot use ${field} ${JSON.stringify(uri)}: expected "rbd:POOL/IMAGE" or "gluster://HOST[:PORT]/VOLUME/PATH"`, { field });
}

/** Where a disk's data comes from. */
export interface DiskSource {
  /** Path QEMU opens (Ganeti's link path). */
  path: string;
  uri: string | null;
  readOnly: boolean;
  /** The path is a block device (`host_device`) rather than a file. */
  blockDevice: boolean;
}

/** `blockdev-add` arguments for a disk whose node name is `id`. */
export function blockdevArgs(id: string, src: DiskSource, io: DiskIoParams, field = 'disk'): QemuDict {
  const { direct } = cacheSettings(io);
  const file: QemuDict =
    src.uri !== null
      ? uriProtocol(src.uri, `${field}.uri`)
      : { driver: src.blockDevice ? 'host_device' : 'file', filename: src.path, aio: io.aio };
  const node: QemuDict = { driver: 'raw', 'node-name': id };
  if (src.readOnly) node['read-only'] = true;
  node.discard = io.discard;
  node.cache = { direct, 'no-flush': false };
  node.file = file;
  return node;
}

/** Whether a disk opens read-only: its mode, or a model that is read-only by nature (a CD). */
export function diskReadOnly(mode: unknown, driver: string): boolean {
  return mode === 'ro' || driver === 'scsi-cd';
}

/** `device_add` arguments for a disk: its hvinfo, then the drive and cache flag. */
export function diskDeviceArgs(hvinfo: HvInfo, io: DiskIoParams, opts: { bootindex?: number } = {}): QemuDict {
  const dev: QemuDict = { ...(hvinfo as unknown as QemuDict), drive: hvinfo.id };
  // Only models that cache writes take the property (scsi-cd, scsi-block, scsi-generic don't).
  if (Object.values(DISK_MODELS).find((m) => m.driver === hvinfo.driver)?.writeCache === true) {
    dev['write-cache'] = cacheSettings(io).writeCache ? 'on' : 'off';
  }
  if (opts.bootindex !== undefined) dev.bootindex = opts.bootindex;
  return dev;
}

/** `netdev_add` arguments for a NIC backend. */
export function netdevArgs(id: string, backend: NicBackend, vhost: boolean): QemuDict {
  if (backend.type === 'user') return { type: 'user', id };
  const nd: QemuDict = { type: 'tap', id };
  if (backend.fd !== undefined) nd.fd = String(backend.fd);
  else {
    if (backend.ifname !== undefined) nd.ifname = backend.ifname;
    // Ganeti runs its own NIC scripts; QEMU must not run /etc/qemu-ifup.
    nd.script = 'no';
    nd.downscript = 'no';
  }
  if (vhost) nd.vhost = true;
  return nd;
}

/** `device_add` arguments for a NIC. */
export function nicDeviceArgs(hvinfo: HvInfo, mac: string): QemuDict {
  return { ...(hvinfo as unknown as QemuDict), netdev: hvinfo.id, mac };
}

function flatten(prefix: string, v: QemuValue, out: string[]): void {
  if (Array.isArray(v)) v.forEach((x, i) => flatten(`${prefix}.${i}`, x, out));
  else if (typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(prefix === '' ? k : `${prefix}.${k}`, x, out);
  else out.push(`${prefix}=${escapeOptionValue(typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v))}`);
}

/**
 * The command-line form of a dict: `key=value,…` with nested keys dotted
 * and booleans as on/off. With `head`, that key's value leads bare
 * (`virtio-blk-pci,id=…` for `-device`, `tap,id=…` for `-netdev`).
 */
export function renderFlat(dict: QemuDict, head?: string): string {
  const out: string[] = [];
  const rest: QemuDict = { ...dict };
  let lead: string | undefined;
  if (head !== undefined) {
    lead = escapeOptionValue(String(dict[head]));
    delete rest[head];
  }
  flatten('', rest, out);
  return lead === undefined ? out.join(',') : [lead, ...out].join(',');
}
