/**
 * Runtime files: formats 2.9 / 2.10 / 2.16 (detection, validation, upgrade,
 * downgrade, Ganeti's encoding), the atomic store with per-instance locks,
 * and bulk conversion. Other areas import only from here.
 */
export type { RuntimeChange, RuntimeProblem } from './format/change';
export { type ConvertOptions, type ConvertResult, convertRuntime } from './format/convert';
export { RUNTIME_FORMATS, detectFormat, isRuntimeFormatId } from './format/detect';
export { canonicalAddrToSlot, pciEraDriver, pciEraId } from './format/pci-era';
export { encodePythonJson, parseRuntime, serializeRuntime } from './format/serialize';
export { type RuntimeIssue, type RuntimeOf, isValidRuntime, runtimeIssues, validateRuntime } from './format/validate';
export type { FileStamp, StagedFile } from './atomic-file';
export { currentStamp, readTextFile, sameStamp } from './atomic-file';
export { type BulkFileResult, type BulkOptions, type BulkReport, type BulkStatus, convertAll } from './bulk';
export { RUNTIME_SUFFIX, assertInstanceName, isSafeInstanceName } from './instance-name';
export { Journal, type JournalEntry, type JournalOp, type JournalWriteOptions } from './journal';
export { type InstanceHold, LOCK_DEFAULTS, type LockOptions, busyPath, lockPath, withInstanceLock } from './lock';
export { RuntimeStore, type RuntimeRead, type RuntimeStoreOptions, STORE_DEFAULTS, type WriteOptions } from './store';
