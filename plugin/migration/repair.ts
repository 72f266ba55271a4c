/**
 * Rewriting a runtime from what QEMU reports, when every drifted device can
 * be described. Pure.
 *
 * QEMU knows where a device is, its driver, its disk file and its MAC, but
 * not the Ganeti UUID the runtime file must record (a QEMU id keeps only the
 * first three UUID groups). A device only QEMU has is therefore recorded
 * only when the caller passes its Ganeti spec (`known`); everything else the
 * runtime file would need comes from QEMU.
 */
import { GkdError } from '../errors';
import { type LiveDevice } from '../inspect';
import { DISK_MODELS, NIC_MODELS, deviceId, diskEntry, nicEntry } from '../planner';
import type { DiskSpec, HvInfo, NicSpec, RuntimeV2_16 } from '../types';
import type { Difference } from './drift';
import { fdsetOf } from './fd-paths';
import type { LiveBlock, LiveState } from './live-state';

/** Ganeti specs of devices QEMU has but the runtime lacks, matched by their derived id. */
export interface KnownDevices {
  disks?: DiskSpec[];
  nics?: NicSpec[];
}

const DISK_DRIVERS = new Set(Object.values(DISK_MODELS).map((m) => m.driver));
const NIC_DRIVERS = new Set(Object.values(NIC_MODELS).map((m) => m.driver));

/** hvinfo for a live device, or why it can't be written as one. */
function hvinfoOf(l: LiveDevice): HvInfo | string {
  if (l.bus === undefined) return 'QEMU reports no bus for it';
  if (l.addr !== undefined) {
    if (l.addr.includes('.')) return `it sits at function ${l.addr}, which hvinfo cannot express`;
    return { driver: l.driver, id: l.id, bus: l.bus, addr: l.addr };
  }
  if (l['scsi-id'] !== undefined && l.channel !== undefined && l.lun !== undefined) {
    return { driver: l.driver, id: l.id, bus: l.bus, channel: l.channel, 'scsi-id': l['scsi-id'], lun: l.lun };
  }
  if (l.unit !== undefined) return { driver: l.driver, id: l.id, bus: l.bus, unit: l.unit };
  return { driver: l.driver, id: l.id, bus: l.bus };
}

/** Options of {@link repairRuntime}. */
export interface RepairOptions {
  /** The real path of a path on this node, undefined when it does not exist. @default every absolute path exists */
  realpath?: (path: string) => string | undefined;
}

/**
 * The path a repair may record for QEMU's block backend: a real file QEMU
 * opened. `/dev/fdset/N` is QEMU's name for a passed descriptor, not a path
 * (it becomes the file the descriptor is open on, when known); `json:{…}`
 * and protocol URIs are no paths either, and neither is a path that does not
 * exist here.
 */
function realFile(block: LiveBlock | undefined, realpath: (p: string) => string | undefined): string | undefined {
  if (block?.file === undefined) return undefined;
  if (fdsetOf(block.file) !== undefined) return block.opened;
  if (!block.file.startsWith('/') || block.file.startsWith('/dev/fdset/')) return undefined;
  return realpath(block.file) === undefined ? undefined : block.file;
}

/**
 * The runtime rewritten so it matches `live` for every difference.
 * @throws GkdError `GKD_DRIFT` naming every device that cannot be described,
 *   with the reasons in `data.undescribable`; nothing is returned then
 */
export function repairRuntime(runtime: RuntimeV2_16, differences: readonly Difference[], live: LiveState, known: KnownDevices = {}, options: RepairOptions = {}): RuntimeV2_16 {
  const realpath = options.realpath ?? ((p: string) => p);
  const next = structuredClone(runtime);
  const byId = new Map(live.devices.map((d) => [d.id, d] as const));
  const refuse: Array<{ device: string; reason: string }> = [];
  const dropNics = new Set<number>();
  const dropDisks = new Set<number>();
  const nicIndex = (id: string): number => next[1].findIndex((n) => (n.hvinfo as { id?: string } | undefined)?.id === id);
  const diskIndex = (id: string): number => next[3].findIndex(([d]) => (d.hvinfo as { id?: string } | undefined)?.id === id);

  for (const d of differences) {
    if (d.kind === 'unplaced') {
      refuse.push({ device: d.device, reason: 'it was started by a release without device ids, so nothing can place it; restart the instance under this release' });
      continue;
    }
    const dev = byId.get(d.device);
    if (d.recordedIn === 'kvm_cmd' || (d.recordedIn === undefined && dev === undefined)) {
      const reason = d.recordedIn === 'kvm_cmd' ? 'it belongs to the fixed command line (kvm_cmd), which a running QEMU cannot change' : 'it has no id, so the runtime cannot record it';
      refuse.push({ device: d.device, reason });
      continue;
    }
    if (d.kind === 'missing-in-qemu') {
      if (d.recordedIn === 'nic') dropNics.add(nicIndex(d.device));
      else dropDisks.add(diskIndex(d.device));
      continue;
    }
    const l = dev as LiveDevice;
    if (d.kind === 'address' || d.kind === 'driver') {
      const h = hvinfoOf(l);
      if (typeof h === 'string') refuse.push({ device: d.device, reason: h });
      else if (d.recordedIn === 'nic') next[1][nicIndex(d.device)].hvinfo = h;
      else next[3][diskIndex(d.device)][0].hvinfo = h;
      continue;
    }
    if (d.kind === 'property') {
      if (d.recordedIn === 'nic') {
        next[1][nicIndex(d.device)].mac = String(d.qemu?.mac);
        continue;
      }
      const file = realFile(live.blocks.get(l.id), realpath);
      if (file === undefined) refuse.push({ device: d.device, reason: `QEMU reports no real file for its block backend (${JSON.stringify(live.blocks.get(l.id)?.file ?? null)})` });
      else next[3][diskIndex(d.device)][1] = file;
      continue;
    }
    // missing-in-runtime: QEMU has it, the runtime does not.
    const h = hvinfoOf(l);
    if (typeof h === 'string') {
      refuse.push({ device: d.device, reason: h });
    } else if (DISK_DRIVERS.has(l.driver)) {
      const spec = known.disks?.find((s) => safeId('disk', s.uuid) === l.id);
      const block = live.blocks.get(l.id);
      let file = realFile(block, realpath);
      const specReal = realpath(spec?.path ?? '');
      const viaFd = fdsetOf(block?.file) !== undefined;
      const fileReal = file === undefined ? undefined : viaFd ? file : realpath(file);
      // The spec's path (Ganeti's link) is recorded when it is the file QEMU has open; QEMU's own name for a
      // passed descriptor never is. An emptied fd set names no file: then QEMU's open files are the evidence.
      if (spec !== undefined && specReal !== undefined && ((fileReal !== undefined && fileReal === specReal) || (file === undefined && viaFd && live.fdsets?.open?.has(specReal) === true))) file = spec.path;
      if (spec === undefined) refuse.push({ device: d.device, reason: 'its Ganeti UUID is unknown; pass its disk spec to record it' });
      else if (block === undefined) refuse.push({ device: d.device, reason: 'QEMU has no block backend attached to it' });
      else if (file === undefined && (spec.uri ?? null) === null) refuse.push({ device: d.device, reason: `QEMU reports no real file for its block backend (${JSON.stringify(block.file ?? null)}) and the spec's path is not a file QEMU has open` });
      else {
        // The spec says what Ganeti needs to know of the disk; QEMU says where it is, what it opened and how.
        const entry = diskEntry({ ...spec, mode: block.readOnly ? 'ro' : 'rw' }, h, next[3].length, `known disk "${l.id}"`);
        entry[1] = file ?? spec.path;
        next[3].push(entry);
      }
    } else if (NIC_DRIVERS.has(l.driver)) {
      const spec = known.nics?.find((s) => safeId('nic', s.uuid) === l.id);
      if (spec === undefined) refuse.push({ device: d.device, reason: 'its Ganeti UUID is unknown; pass its NIC spec to record it' });
      else {
        next[1].push(nicEntry({ ...spec, mac: live.macs.get(l.id) ?? spec.mac }, h));
      }
    } else {
      refuse.push({ device: d.device, reason: `"${l.driver}" is neither a disk nor a NIC model` });
    }
  }
  if (refuse.length > 0) {
    throw new GkdError(
      'GKD_DRIFT',
      `Cannot repair the runtime from QEMU: ${refuse.map((r) => `"${r.device}": ${r.reason}`).join('; ')}`,
      { device: refuse[0].device, data: { undescribable: refuse } },
    );
  }
  next[1] = next[1].filter((_, i) => !dropNics.has(i));
  next[3] = next[3].filter((_, i) => !dropDisks.has(i));
  return next;
}

function safeId(kind: 'disk' | 'nic', uuid: unknown): string | undefined {
  try {
    return deviceId(kind, uuid, kind);
  } catch {
    return undefined;
  }
}
