/**
 * `instance.verify`: the runtime file against the live QEMU, and optionally
 * the file rewritten from QEMU.
 */
import type { QmpClient } from '../qmp';
import type { RuntimeV2_16 } from '../types';
import type { MigrationContext } from './context';
import { findDrift, type Difference } from './drift';
import { expectedLayout } from './expected-layout';
import { readLiveState } from './live-state';
import { repairRuntime, type KnownDevices } from './repair';

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
}

/** What {@link verifyInstance} returns. */
export interface VerifyResult {
  /** The runtime file matches QEMU (after the repair, when one was made). */
  clean: boolean;
  /** Every difference found (before any repair). */
  differences: Difference[];
  /** The runtime file was rewritten from QEMU. */
  repaired: boolean;
}

/** Differences between `runtime` and the QEMU behind `qmp`. */
export async function runtimeDrift(runtime: RuntimeV2_16, qmp: QmpClient): Promise<Difference[]> {
  return findDrift(expectedLayout(runtime), await readLiveState(qmp));
}

/**
 * Compares instance `name`'s runtime file with its live QEMU: every disk and
 * NIC hvinfo, every kvm_cmd `-device` (SCSI controller, root ports,
 * kvm_extra), devices QEMU has that the file does not, disk files and MACs.
 *
 * @throws GkdError `GKD_RUNTIME_*` (no or bad runtime file), `GKD_QMP_*`;
 *   with `repair`, `GKD_DRIFT` naming each device that cannot be described
 *   (the file is then unchanged) and `GKD_INSTANCE_BUSY` during a migration
 */
export async function verifyInstance(ctx: MigrationContext, name: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const qmp = await ctx.connections.get(options.qmp ?? ctx.qmpSocket(name));
  if (options.repair === undefined || options.repair === false) {
    const { upgraded } = await ctx.store.read(name);
    const differences = await runtimeDrift(upgraded, qmp);
    return { clean: differences.length === 0, differences, repaired: false };
  }
  const known = options.repair === true ? {} : options.repair.known ?? {};
  // Under the lock: a hotplug between reading QEMU and writing the file would be lost.
  return ctx.store.withLock(name, async () => {
    const read = await ctx.store.read(name);
    const live = await readLiveState(qmp);
    const differences = findDrift(expectedLayout(read.upgraded), live);
    if (differences.length === 0) return { clean: true, differences, repaired: false };
    const next = repairRuntime(read.upgraded, differences, live, known);
    await ctx.store.write(name, next, { expect: read.stamp });
    const after = await runtimeDrift(next, qmp);
    return { clean: after.length === 0, differences, repaired: true };
  });
}
