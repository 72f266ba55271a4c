/**
 * Migration and drift: `instance.verify`, `migration.accept` (target) and
 * `migration.start` (source) as plain async functions over a small context.
 * Other areas import only from here.
 */
export type { MigrationContext, NodeBuildOptions, QmpPool } from './context';
export { verifyInstance, runtimeDrift, type VerifyOptions, type VerifyResult } from './verify';
export { findLeaks, removeLeaks, type Leak } from './leaks';
export { staleDiskLinks, describeStaleLinks, GANETI_DISK_LINKS_DIR, type StaleDiskLink } from './disk-links';
export { findDrift, QEMU_DEVICE_ALIASES, type Difference, type DriftKind, type DriftOptions } from './drift';
export { unplacedDevices, describeUnplaced, UNPLACED_REASON, type UnplacedDevice } from './unplaced';
export { expectedLayout, type ExpectedDevice } from './expected-layout';
export { readLiveState, type LiveState } from './live-state';
export { repairRuntime, type KnownDevices } from './repair';
export { acceptMigration, refused as acceptRefused, type AcceptParams, type AcceptResult } from './accept';
export { targetRefusals, machineType, incomingProblem, type Refusal } from './target-checks';
export { qemuOffer, parseDeviceHelp, parseDeviceAliases, deviceAliasesOf, type QemuOffer } from './node-facts';
export { migrationSettings, QEMU_MIGRATION_CAPABILITIES, type MigrationSettings } from './migration-settings';
export { startMigration, START_DEFAULTS, type StartParams, type StartResult, type MigrationProgress } from './start';
export { judgeTarget, type TargetVerdict } from './target-verdict';
