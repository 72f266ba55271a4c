/**
 * Typed errors with stable codes.
 *
 * Every error the product reports to a caller carries a stable string code
 * (`GKD_…`) and a stable numeric JSON-RPC code. Domain codes are positive
 * and grouped by area (1xxx planner, 2xxx runtime files, 3xxx QMP,
 * 4xxx hotplug, 5xxx migration/verify, 6xxx daemon); JSON-RPC transport
 * errors keep their negative codes and live in the RPC layer. The table is
 * mirrored in docs/errors.md; a unit test keeps the two in step.
 */

export const ERROR_CODES = {
  // planner
  GKD_SPEC_INVALID: { rpc: 1001, meaning: 'The instance spec is malformed or a field has a wrong type' },
  GKD_UNSUPPORTED_VALUE: { rpc: 1002, meaning: 'An hvparam or field has a value this release does not support' },
  GKD_CAPACITY: { rpc: 1003, meaning: 'The devices do not fit: no free PCI slot, SCSI target or port' },
  GKD_ID_INVALID: { rpc: 1004, meaning: 'A device UUID or derived QEMU id is malformed, too long or collides' },
  // runtime files
  GKD_RUNTIME_INVALID: { rpc: 2001, meaning: 'A runtime file is not valid for its format version' },
  GKD_RUNTIME_UNKNOWN_FORMAT: { rpc: 2002, meaning: 'A runtime file matches no known format version' },
  GKD_RUNTIME_LOSSY: { rpc: 2003, meaning: 'A conversion would lose information the target format cannot express' },
  GKD_RUNTIME_NOT_FOUND: { rpc: 2004, meaning: 'The instance has no runtime file' },
  GKD_RUNTIME_IO: { rpc: 2005, meaning: 'A runtime file could not be read or written' },
  GKD_RUNTIME_LOCKED: { rpc: 2006, meaning: 'Another process holds the instance lock' },
  GKD_RUNTIME_NAME_INVALID: { rpc: 2007, meaning: 'An instance name is not usable as a runtime file name' },
  GKD_RUNTIME_EXISTS: { rpc: 2008, meaning: 'The instance already has a runtime file; replacing it must be asked for (replace: true)' },
  // QMP
  GKD_QMP_CONNECT: { rpc: 3001, meaning: 'The QMP socket could not be reached' },
  GKD_QMP_TIMEOUT: { rpc: 3002, meaning: 'QEMU did not answer a QMP command in time' },
  GKD_QMP_CLOSED: { rpc: 3003, meaning: 'The QMP connection closed (QEMU exited or the socket vanished)' },
  GKD_QMP_COMMAND: { rpc: 3004, meaning: 'QEMU answered a QMP command with an error' },
  GKD_QMP_PROTOCOL: { rpc: 3005, meaning: 'The QMP peer broke the protocol (bad greeting, garbage, oversize message)' },
  GKD_QMP_BUSY: { rpc: 3006, meaning: 'Another client (Ganeti) holds the QMP monitor, which serves one client at a time; retry later' },
  // hotplug
  GKD_HOTPLUG_UNSUPPORTED: { rpc: 4001, meaning: 'The device type, QEMU or machine cannot hot-plug this device' },
  GKD_HOTPLUG_FAILED: { rpc: 4002, meaning: 'A hotplug step failed; earlier steps were rolled back' },
  GKD_HOTPLUG_PENDING: { rpc: 4003, meaning: 'The guest has not released the device yet; removal finishes when it does' },
  GKD_DEVICE_NOT_FOUND: { rpc: 4004, meaning: 'No device with that UUID in the runtime file' },
  GKD_DEVICE_EXISTS: { rpc: 4005, meaning: 'A device with that UUID or id is already present' },
  GKD_HOTPLUG_VERIFY: { rpc: 4006, meaning: 'QEMU accepted the device but does not show it where expected' },
  // migration and verification
  GKD_DRIFT: { rpc: 5001, meaning: 'The runtime file and the live QEMU disagree' },
  GKD_MIGRATION_REFUSED: { rpc: 5002, meaning: 'The migration cannot be honoured (machine type, disk path, format, a removal still pending)' },
  GKD_MIGRATION_FAILED: { rpc: 5003, meaning: 'The migration failed; the source keeps running, unless data.ambiguous says neither side was resumed' },
  GKD_INSTANCE_BUSY: { rpc: 5004, meaning: 'Another operation (hotplug, migration) holds the instance' },
  GKD_INSTANCE_RUNNING: { rpc: 5005, meaning: "The instance's QEMU is running; the operation needs it stopped" },
  // daemon
  GKD_INTERNAL: { rpc: 6001, meaning: 'An unexpected internal error' },
  GKD_SHUTTING_DOWN: { rpc: 6002, meaning: 'The daemon is shutting down and takes no new calls' },
  GKD_LAUNCH_FAILED: { rpc: 6003, meaning: 'QEMU could not be started' },
  GKD_CANCELLED: { rpc: 6005, meaning: 'The caller gave up (disconnected, timed out, shutdown) before the operation started; nothing was done' },
  GKD_OVERLOADED: { rpc: 6004, meaning: 'Too many calls in flight on the connection or queued for the instance; wait for an answer before calling again' },
  GKD_HOOK_REQUEST_INVALID: { rpc: 6006, meaning: 'A request to the hook endpoint is malformed: unknown hook, wrong method, body too large or not NUL-separated KEY=VALUE records' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface GkdErrorOptions {
  /** JSON path or dotted name of the offending input field, e.g. `disks[3].uuid`. */
  field?: string;
  /** QEMU id of the device concerned. */
  device?: string;
  /** Extra machine-readable detail (returned as JSON-RPC error data). */
  data?: Record<string, unknown>;
  cause?: unknown;
}

/** The one error class callers catch; `code` says what happened. */
export class GkdError extends Error {
  readonly code: ErrorCode;
  readonly field?: string;
  readonly device?: string;
  readonly data?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: GkdErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GkdError';
    this.code = code;
    if (options.field !== undefined) this.field = options.field;
    if (options.device !== undefined) this.device = options.device;
    if (options.data !== undefined) this.data = options.data;
  }

  /** The numeric JSON-RPC error code for this error's `code`. */
  get rpcCode(): number {
    return ERROR_CODES[this.code].rpc;
  }

  /** Plain data for JSON-RPC `error.data` and `--json` output. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.field !== undefined) out.field = this.field;
    if (this.device !== undefined) out.device = this.device;
    if (this.data !== undefined) Object.assign(out, this.data);
    return out;
  }
}

export function isGkdError(e: unknown): e is GkdError {
  return e instanceof GkdError;
}
