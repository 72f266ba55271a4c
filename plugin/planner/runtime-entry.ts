/**
 * The disk and NIC dicts this project writes into a runtime file, from a
 * Ganeti-shaped spec. Pure.
 *
 * Ganeti reads every runtime file back into its own Disk and NIC objects
 * (a migration target, a hotplug, `gnt-instance info` all do), and those
 * objects are strict: a key that is not one of their fields makes the read
 * fail (`TypeError: Object Disk doesn't support the parameter …`), and the
 * target's block options call `disk.params.get(…)`, check `disk.mode` and
 * `disk.dev_type`, and its NIC setup reads `nicparams["mode"]` and
 * `nicparams["link"]`. So an entry carries Ganeti 3.0's fields only, with
 * every field the KVM code reads filled in. Files written by Ganeti (or by
 * a newer Ganeti with more fields) are never rewritten through here: their
 * dicts are kept as they are.
 */
import { GkdError } from '../errors';
import type { DiskSpec, HvInfo, NicSpec, RuntimeDisk, RuntimeDiskEntry, RuntimeNic } from '../types';

/** Ganeti 3.0's Disk fields, in the order its ToDict writes them. */
export const GANETI_DISK_FIELDS = [
  'forthcoming', 'name', 'dev_type', 'logical_id', 'children', 'nodes', 'iv_name', 'size', 'mode', 'params', 'spindles',
  'pci', 'hvinfo', 'serial_no', 'dynamic_params', 'uuid', 'ctime', 'mtime',
] as const;

/** Ganeti 3.0's NIC fields, in the order its ToDict writes them. */
export const GANETI_NIC_FIELDS = ['name', 'mac', 'ip', 'network', 'nicparams', 'netinfo', 'pci', 'hvinfo', 'uuid'] as const;

/**
 * Ganeti's built-in NIC parameter defaults (a cluster's `nicparams` start
 * from these). A spec without nicparams gets them: Ganeti fills a NIC's
 * parameters from the cluster before it writes a runtime file, and the
 * spec does not say what the cluster has.
 */
export const DEFAULT_NICPARAMS: Readonly<Record<string, string>> = { mode: 'bridged', link: 'xen-br0', vlan: '' };

/** Ganeti's disk templates that run on DRBD: their logical_id is a 6-tuple Ganeti must be given. */
const DRBD_DEV_TYPES = new Set(['drbd', 'drbd8']);

/** How to tell a block device from a file (I/O stays with the caller). */
export interface EntryOptions {
  /** The disk path is a block device; default: it is not. */
  isBlockDevice?: (path: string) => boolean;
}

/**
 * Ganeti's dev_type for a disk the spec does not type: a userspace URI
 * names its protocol (`rbd`, `gluster`); otherwise a block device is
 * `blockdev` and anything else a `file`.
 */
export function inferDevType(path: string, uri: string | null, options: EntryOptions = {}): string {
  if (uri !== null) {
    if (uri.startsWith('rbd:')) return 'rbd';
    if (uri.startsWith('gluster:')) return 'gluster';
  }
  return options.isBlockDevice?.(path) === true ? 'blockdev' : 'file';
}

/** Ganeti's logical_id for a disk of `devType` at `path`, when the spec gives none. */
function defaultLogicalId(devType: string, path: string, uri: string | null): unknown[] | undefined {
  switch (devType) {
    case 'file':
    case 'sharedfile':
      return ['loop', path];
    case 'blockdev':
      return ['manual', path];
    case 'rbd':
      return ['ceph', uri !== null ? uri.replace(/^rbd:[^/]*\//, '') : path];
    default:
      return undefined;
  }
}

function pick<T extends string>(src: Record<string, unknown>, fields: readonly T[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of fields) if (Object.hasOwn(src, k) && src[k] !== undefined) out[k] = src[k];
  return out;
}

/**
 * Fields a spec may not set: the placement is ours (`hvinfo`; a `pci` slot
 * beside it would make the file unreadable as 2.16), and Ganeti never
 * stores `dynamic_params` (node-local).
 */
const NOT_FROM_SPEC = new Set(['pci', 'hvinfo', 'dynamic_params']);
const fromSpec = <T extends string>(fields: readonly T[]): T[] => fields.filter((f) => !NOT_FROM_SPEC.has(f));

/**
 * The runtime entry of disk `index` (`[dict, path, uri]`) for `spec` placed
 * at `hvinfo`. Fields the spec gives (dev_type, logical_id, iv_name, size,
 * params, name, nodes, …) are taken as given; missing ones get what Ganeti
 * needs to read it: `dev_type` from the spec else inferred, a `logical_id`
 * for the types that have an obvious one, `iv_name:
 * "disk/<index>"`, `mode: "rw"`, `params: {}` (with `access: "userspace"`
 * for a disk with a URI, which is what makes Ganeti open the URI rather
 * than the link, as we do). Spec fields Ganeti does not
 * know (and `path`, `uri`, `backend`) are not stored.
 *
 * @throws GkdError `GKD_SPEC_INVALID` for a DRBD disk without its logical_id,
 *   or a disk with a URI whose params.access is not userspace
 */
export function diskEntry(spec: DiskSpec, hvinfo: HvInfo, index: number, field: string, options: EntryOptions = {}): RuntimeDiskEntry {
  const s = spec as Record<string, unknown>;
  const uri = typeof spec.uri === 'string' ? spec.uri : null;
  const devType = typeof s.dev_type === 'string' && s.dev_type !== '' ? s.dev_type : inferDevType(spec.path, uri, options);
  const logicalId = Array.isArray(s.logical_id) ? s.logical_id : defaultLogicalId(devType, spec.path, uri);
  if (DRBD_DEV_TYPES.has(devType) && logicalId === undefined) {
    throw new GkdError('GKD_SPEC_INVALID', `Cannot record ${field}: dev_type "${devType}" needs its logical_id (Ganeti reads DRBD disks by it)`, { field: `${field}.logical_id` });
  }
  let params = typeof s.params === 'object' && s.params !== null && !Array.isArray(s.params) ? (s.params as Record<string, unknown>) : {};
  if (uri !== null) {
    // Ganeti opens a disk's URI only when its access param says userspace, and its link otherwise; we open
    // the URI, so the entry must say so, or a Ganeti target would attach another thing than we did.
    if (params.access === undefined) params = { ...params, access: 'userspace' };
    else if (params.access !== 'userspace') {
      throw new GkdError('GKD_SPEC_INVALID', `Cannot record ${field}: it has a uri but params.access ${JSON.stringify(params.access)}; a uri is opened in userspace (drop the uri to open the path)`, { field: `${field}.params.access` });
    }
  }
  const given = pick(s, fromSpec(GANETI_DISK_FIELDS));
  const filled: Record<string, unknown> = {
    ...given,
    dev_type: devType,
    ...(logicalId === undefined ? {} : { logical_id: logicalId }),
    iv_name: typeof s.iv_name === 'string' ? s.iv_name : `disk/${index}`,
    mode: spec.mode ?? 'rw',
    params,
    hvinfo,
    uuid: spec.uuid,
  };
  return [pick(filled, GANETI_DISK_FIELDS) as RuntimeDisk, spec.path, uri];
}

/**
 * The runtime dict of a NIC for `spec` placed at `hvinfo`: Ganeti's NIC
 * fields the spec gives, `nicparams` with `mode`, `link` and `vlan` filled
 * from Ganeti's defaults where the spec lacks them. The node-local
 * `backend` and fields Ganeti does not know are not stored.
 */
export function nicEntry(spec: NicSpec, hvinfo: HvInfo): RuntimeNic {
  const s = spec as Record<string, unknown>;
  const given = pick(s, fromSpec(GANETI_NIC_FIELDS));
  const nicparams = typeof spec.nicparams === 'object' && spec.nicparams !== null ? spec.nicparams : {};
  const filled: Record<string, unknown> = { ...given, mac: spec.mac, nicparams: { ...DEFAULT_NICPARAMS, ...nicparams }, hvinfo, uuid: spec.uuid };
  return pick(filled, GANETI_NIC_FIELDS) as RuntimeNic;
}
