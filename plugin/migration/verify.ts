/**
 * `instance.verify`: the runtime file against the live QEMU, and optionally
 * the file rewritten from QEMU.
 */
import type { QmpClient } from '../qmp';
import type { RuntimeFormatId, RuntimeV2_16 } from '../types';
import type { MigrationContext } from './context';
import { findDrift, type Difference } from './drift';
import { expectedLayout } from './expected-layout';
import { readLiveState } from './live-state';
import { deviceAliasesOf } from './node-facts';
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
export async function runtimeDrift(runtime: RuntimeV2_16, qmp: QmpClient, format: RuntimeFormatId = '2.16', ctx?: Pick<MigrationContext, 'qemuBinary'>): Promise<Difference[]> {
  const aliases = await deviceAliasesOf(binaryOf(runtime, ctx));
  return findDrift(expectedLayout(runtime), await readLiveState(qmp), { aliases, unplaced: unplacedDevices(runtime, format) });
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
  const qmp = await ctx.connections.get(options.qmp ?? ctx.qmpSocket(name));
  if (options.repair === undefined || options.repair === false) {
    const { upgraded, format } = await ctx.store.read(name);
    const differences = await runtimeDrift(upgraded, qmp, format, ctx);
    return { clean: differences.length === 0, differences, repaired: false };
  }
  const known = options.repair === true ? {} : options.repair.known ?? {};
  // Under the lock: a hotplug between reading QEMU and writing the file would be lost.
  return ctx.store.withLock(name, async () => {
    const read = await ctx.store.read(name);
    const live = await readLiveState(qmp);
    const aliases = await deviceAliasesOf(binaryOf(read.upgraded, ctx));
    const differences = findDrift(expectedLayout(read.upgraded), live, { aliases, unplaced: unplacedDevices(read.upgraded, read.format) });
    if (differences.length === 0) return { clean: true, differences, repaired: false };
    const next = repairRuntime(read.upgraded, differences, live, known);
    await ctx.store.write(name, next, { expect: read.stamp });
    const after = await runtimeDrift(next, qmp, '2.16', ctx);
    return { clean: after.length === 0, differences, repaired: true };
  });
}
