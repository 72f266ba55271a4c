/**
 * `instance.verify`: the runtime file against the live QEMU, and optionally
 * the file rewritten from QEMU.
 */
import { realpathSync } from 'node:fs';
import { DEFAULT_RUN_DIR } from '../planner';
import type { QmpClient } from '../qmp';
import type { InstanceHold } from '../runtime';
import type { RuntimeFormatId, RuntimeV2_16 } from '../types';
import type { MigrationContext } from './context';
import { GANETI_DISK_LINKS_DIR, staleDiskLinks, type StaleDiskLink } from './disk-links';
import { findDrift, type Difference } from './drift';
import { findLeaks, removeLeaks, type Leak } from './leaks';
import { expectedLayout } from './expected-layout';
import { readLiveState, type LiveStateWhere } from './live-state';
import { deviceAliasesOf } from './node-facts';
import { relinkDisks } from './relink';
import { repairRuntime, type KnownDevices } from './repair';
import { unplacedDevices } from './unplaced';

/** Options of {@link verifyInstance}. */
export interface VerifyOptions {
  /** QMP socket; overrides `ctx.qmpSocket(name)`. */
  qmp?: string;
  /**
   * Rewrite the runtime file from what QEMU reports when every drifted
   * device can be described; `known` gives the Ganeti specs of devices only
   * QEMU has (their UUIDs are not in QEMU). @default false
   */
  repair?: boolean | { known?: KnownDevices };
  /** Where Ganeti links instance disks. @default GANETI_DISK_LINKS_DIR */
  diskLinksDir?: string;
  /** How a repair holds the instance (InstanceHold). @default its lock, `ctx.store.withLock` */
  hold?: InstanceHold;
}

/** What {@link verifyInstance} returns. */
export interface VerifyResult {
  /** The runtime file matches QEMU (after the repair, when one was made). */
  clean: boolean;
  /** Every difference found (before any repair). */
  differences: Difference[];
  /** The runtime file was rewritten from QEMU. */
  repaired: boolean;
  /** What could not be checked, e.g. a disk QEMU reads through a descriptor that cannot be resolved here; absent when nothing. */
  notes?: string[];
  /** Block nodes and netdevs named like ours that no device uses (before any repair). */
  leaks: Leak[];
  /** With repair: what was done about the leaks, one line each. */
  removed?: string[];
  /**
   * Disks whose runtime link name a migration target would not have (a
   * Ganeti 3.0 hot-remove leftover, see disk-links.ts); absent when none.
   * QEMU is unaffected, so they do not make the instance unclean; with
   * repair they are relinked (before the repair: what was found).
   */
  staleLinks?: StaleDiskLink[];
  /** With repair: the disks relinked, one line each. */
  relinked?: string[];
}

/** A path with its symlinks resolved; undefined when it does not exist here. */
export function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** Pid files that may name instance `name`'s QEMU: the one in kvm_cmd (Ganeti's) and this node's. */
export function pidFilesOf(runtime: RuntimeV2_16, name: string, runDir = DEFAULT_RUN_DIR): string[] {
  const cmd = runtime[0];
  const i = cmd.indexOf('-pidfile');
  const out = i >= 0 && typeof cmd[i + 1] === 'string' ? [String(cmd[i + 1])] : [];
  return [...out, `${runDir}/pid/${name}`];
}

/** The staleLinks field, present only when there are any. */
function withStale(stale: StaleDiskLink[]): { staleLinks?: StaleDiskLink[] } {
  return stale.length === 0 ? {} : { staleLinks: stale };
}

function withNotes(r: VerifyResult, notes: string[]): VerifyResult {
  return notes.length === 0 ? r : { ...r, notes };
}

/** Where the QEMU of `name` is, for reading its descriptors. */
function whereOf(ctx: MigrationContext, runtime: RuntimeV2_16, name: string, qmpSocket: string): LiveStateWhere {
  return { qmpSocket, pidFiles: pidFilesOf(runtime, name, ctx.node?.runDir) };
}

/** The binary to ask for device aliases; undefined (built-in aliases) when the context may not run kvm_cmd[0]. */
function binaryOf(runtime: RuntimeV2_16, ctx: Pick<MigrationContext, 'qemuBinary'> | undefined): string | undefined {
  const kvm = String(runtime[0][0]);
  try {
    return ctx?.qemuBinary === undefined ? kvm : ctx.qemuBinary(kvm, 'runtime[0][0]');
  } catch {
    return undefined;
  }
}

/**
 * Differences between `runtime` (the 2.16 form of a file read in `format`)
 * and the QEMU behind `qmp`. Drivers are compared through the aliases of
 * the QEMU binary kvm_cmd names.
 */
export async function runtimeDrift(
  runtime: RuntimeV2_16, qmp: QmpClient, format: RuntimeFormatId = '2.16', where: LiveStateWhere & { notes?: string[] } = {},
  ctx?: Pick<MigrationContext, 'qemuBinary'>,
): Promise<Difference[]> {
  const aliases = await deviceAliasesOf(binaryOf(runtime, ctx));
  const live = await readLiveState(qmp, where);
  return findDrift(expectedLayout(runtime), live, { aliases, unplaced: unplacedDevices(runtime, format), realpath: realpathOrUndefined, ...(where.notes === undefined ? {} : { notes: where.notes }) });
}

/**
 * Compares instance `name`'s runtime file with its live QEMU: every disk and
 * NIC hvinfo, every kvm_cmd `-device` (SCSI controller, root ports,
 * kvm_extra), devices QEMU has that the file does not, disk files and MACs.
 * Devices a release before 2.10 started without an id are `unplaced`.
 *
 * @throws GkdError `GKD_RUNTIME_*` (no or bad runtime file), `GKD_QMP_*`;
 *   with `repair`, `GKD_DRIFT` naming each device that cannot be described
 *   (the file is then unchanged) and `GKD_INSTANCE_BUSY` during a migration
 */
export async function verifyInstance(ctx: MigrationContext, name: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const socket = options.qmp ?? ctx.qmpSocket(name);
  const linksDir = options.diskLinksDir ?? GANETI_DISK_LINKS_DIR;
  const notes: string[] = [];
  if (options.repair === undefined || options.repair === false) {
    const { upgraded, format } = await ctx.store.read(name);
    const stale = withStale(staleDiskLinks(upgraded, name, linksDir));
    return ctx.connections.use(socket, async (qmp) => {
      const differences = await runtimeDrift(upgraded, qmp, format, { ...whereOf(ctx, upgraded, name, socket), notes }, ctx);
      const leaks = await findLeaks(qmp);
      return withNotes({ clean: differences.length === 0 && leaks.length === 0, differences, repaired: false, leaks, ...stale }, notes);
    });
  }
  const known = options.repair === true ? {} : options.repair.known ?? {};
  // Under the lock: a hotplug between reading QEMU and writing the file would be lost. The monitor is
  // only taken once the lock is ours, so a long lock wait never holds (or loses) a connection.
  const hold: InstanceHold = options.hold ?? ((fn) => ctx.store.withLock(name, fn));
  return hold(() => ctx.connections.use(socket, async (qmp) => {
    const read = await ctx.store.read(name);
    const where = whereOf(ctx, read.upgraded, name, socket);
    const live = await readLiveState(qmp, where);
    const aliases = await deviceAliasesOf(binaryOf(read.upgraded, ctx));
    const differences = findDrift(expectedLayout(read.upgraded), live, { aliases, unplaced: unplacedDevices(read.upgraded, read.format), realpath: realpathOrUndefined, notes });
    const leaks = await findLeaks(qmp);
    const removed = leaks.length === 0 ? undefined : await removeLeaks(qmp, leaks);
    const leaksLeft = removed === undefined ? [] : await findLeaks(qmp);
    const extra = removed === undefined ? {} : { removed };
    const staleBefore = staleDiskLinks(read.upgraded, name, linksDir);
    if (differences.length === 0 && staleBefore.length === 0) return withNotes({ clean: leaksLeft.length === 0, differences, repaired: false, leaks, ...extra }, notes);
    let next = differences.length === 0 ? read.upgraded : repairRuntime(read.upgraded, differences, live, known, { realpath: realpathOrUndefined });
    // After the repair, entries rebuilt from QEMU may carry other names: judge those.
    const stale = staleDiskLinks(next, name, linksDir);
    let relinked: string[] | undefined;
    if (stale.length > 0) ({ runtime: next, lines: relinked } = relinkDisks(next, stale));
    await ctx.store.writeKeepingFormat(name, next, read);
    const after = await runtimeDrift(next, qmp, '2.16', where, ctx);
    return withNotes({
      clean: after.length === 0 && leaksLeft.length === 0, differences, repaired: true, leaks, ...extra,
      ...withStale(staleBefore), ...(relinked === undefined ? {} : { relinked }),
    }, notes);
  }));
}
