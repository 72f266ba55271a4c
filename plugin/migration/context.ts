/**
 * What the migration functions need from their caller (the daemon, the CLI
 * or a test): the runtime store, the QMP connection pool shared with the
 * hotplug engine, where an instance's QMP socket is, and node-local build
 * settings. Plain data and callbacks, no logger: progress goes to the
 * optional `notify` of `startMigration`.
 */
import type { BuildOptions } from '../planner';
import type { LaunchQemuOptions, QemuProcess } from '../process';
import type { QmpClient } from '../qmp';
import type { Journal, RuntimeStore } from '../runtime';

/** The part of the QMP connections migration uses (`QmpConnections` fits). */
export interface QmpPool {
  /** Runs `fn` over a connection to `socket` that is closed when `fn` ends (never idle-closed meanwhile). */
  use<T>(socket: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T>;
  /** Hands over a client connected elsewhere (the launcher's). */
  adopt?(socket: string, client: QmpClient): void;
}

/** Node-local settings for every argv a target builds (never taken from the runtime). */
export type NodeBuildOptions = Pick<BuildOptions, 'accel' | 'runDir' | 'isBlockDevice'>;

/** Context of {@link verifyInstance}, {@link acceptMigration} and {@link startMigration}. */
export interface MigrationContext {
  store: RuntimeStore;
  connections: QmpPool;
  /** The QMP socket of instance `name` when a call gives none (the daemon's pattern). */
  qmpSocket(name: string): string;
  /** Node-local build settings for `acceptMigration`. @default {} (KVM, Ganeti's run dir) */
  node?: NodeBuildOptions;
  /**
   * The binary to run for a runtime's kvm_cmd[0] (the daemon maps it onto its
   * configured qemuBinaries); throws naming `field` when it may not run.
   * @default the path itself
   */
  qemuBinary?(kvmPath: string, field: string): string;
  /**
   * Why a host path an incoming runtime names (a disk, a kernel) may not be
   * handed to QEMU on this node, or undefined when it may.
   * @default every path may
   */
  pathProblem?(path: string, kind: 'disk' | 'kernel'): Promise<string | undefined>;
  /**
   * What in an incoming kvm_cmd (`args`, its binary left out; `start` the
   * index of args[0] in kvm_cmd) this node may not hand a root QEMU: host
   * files outside its roots, programs QEMU would run. Replaces the
   * `-kernel`/`-initrd`/`-cdrom` checks of pathProblem when given.
   * @default those checks only
   */
  commandProblems?(args: readonly string[], start: number): Promise<Array<{ index: number; message: string }>>;
  /**
   * The intent journal (the daemon's, shared with hotplug): a migration records itself before
   * `migrate` and closes the entry with its verdict, so a restart after a crash reports what QEMU
   * did meanwhile. @default none
   */
  journal?: Journal;
  /**
   * Finishes what a dead process left half done on instance `name` (its open journal entries, see
   * hotplug/reconcile.ts), for a caller that already holds the instance lock: `startMigration` runs
   * it first under its exclusive hold. The daemon passes its hotplug engine's. @default nothing
   */
  reconcileLocked?(name: string): Promise<unknown>;
  /** Starts QEMU for `acceptMigration` with `launch`. @default launchQemu */
  launcher?: (argv: readonly string[], options: LaunchQemuOptions) => Promise<QemuProcess>;
}
