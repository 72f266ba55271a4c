/**
 * Finding, adding and dropping a disk or NIC entry in a 2.16 runtime.
 * Pure; the changed runtime is a copy.
 */
import type { HvInfo, RuntimeDiskEntry, RuntimeNic, RuntimeV2_16 } from '../types';
import type { DeviceKind } from './allocate';

/** The entry with `uuid`: its index among the disks or NICs and its hvinfo. */
export function entryOf(runtime: RuntimeV2_16, kind: DeviceKind, uuid: string): { index: number; hvinfo: Partial<HvInfo> } | undefined {
  const list = kind === 'disk' ? runtime[3].map((e) => e[0]) : runtime[1];
  const index = list.findIndex((d) => d.uuid === uuid);
  return index < 0 ? undefined : { index, hvinfo: (list[index].hvinfo ?? {}) as Partial<HvInfo> };
}

/** A copy of `runtime` with `entry` appended to its disks or NICs. */
export function withEntry(runtime: RuntimeV2_16, kind: DeviceKind, entry: RuntimeDiskEntry | RuntimeNic): RuntimeV2_16 {
  const next = structuredClone(runtime);
  if (kind === 'disk') next[3].push(entry as RuntimeDiskEntry);
  else next[1].push(entry as RuntimeNic);
  return next;
}

/** A copy of `runtime` without the disk or NIC whose UUID is `uuid`. */
export function withoutEntry(runtime: RuntimeV2_16, kind: DeviceKind, uuid: string): RuntimeV2_16 {
  const next = structuredClone(runtime);
  if (kind === 'disk') next[3] = next[3].filter((e) => e[0].uuid !== uuid);
  else next[1] = next[1].filter((n) => n.uuid !== uuid);
  return next;
}
