/**
 * QEMU ids for disks and NICs, exactly as Ganeti 2.16+ derives them:
 * `disk-` / `nic-` plus the first three dash-separated groups of the UUID
 * (`disk-9e7c85f6-b6e5-4243`).
 */
import { GkdError } from '../errors';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** QEMU's identifier rule: a letter, then letters, digits, '-', '.', '_'. */
const QEMU_ID_RE = /^[A-Za-z][A-Za-z0-9._-]*$/;
/** QEMU rejects block node names longer than 31 characters ("Node name too long"). */
export const MAX_NODE_NAME = 31;

/** True for a lowercase UUID, the form Ganeti stores. */
export function isUuid(s: unknown): s is string {
  return typeof s === 'string' && UUID_RE.test(s);
}

/** True for a valid QEMU identifier. */
export function isQemuId(s: string): boolean {
  return QEMU_ID_RE.test(s);
}

/**
 * The QEMU id of a disk or NIC. Throws GKD_ID_INVALID naming `field` when
 * the UUID is malformed.
 */
export function deviceId(kind: 'disk' | 'nic', uuid: unknown, field: string): string {
  if (!isUuid(uuid)) {
    throw new GkdError('GKD_ID_INVALID', `Cannot derive a device id from ${field} ${JSON.stringify(uuid)}: expected a lowercase UUID like "9e7c85f6-b6e5-4243-b27d-680b78c6d203"`, { field });
  }
  const id = `${kind}-${uuid.split('-').slice(0, 3).join('-')}`;
  // Cannot happen for a valid UUID (23 chars at most), but the node-name rule is QEMU's, so keep the check honest.
  if (!isQemuId(id) || id.length > MAX_NODE_NAME) {
    throw new GkdError('GKD_ID_INVALID', `Cannot use device id "${id}": not a QEMU identifier of at most ${MAX_NODE_NAME} characters`, { field });
  }
  return id;
}
