/**
 * Migration capabilities and parameters from the runtime's hvparams, with
 * Ganeti's names and units: `migration_bandwidth` in MiB/s (QEMU's
 * `max-bandwidth` is bytes/s), `migration_downtime` in ms (QEMU's
 * `downtime-limit`), `migration_caps` a colon-separated capability list
 * (`xbzrle:auto-converge`). A missing hvparam leaves QEMU's default. Pure.
 */
import { GkdError } from '../errors';
import type { HvParams } from '../types';

export interface MigrationSettings {
  /** `migrate-set-parameters` arguments; empty when no hvparam sets one. */
  parameters: { 'max-bandwidth'?: number; 'downtime-limit'?: number };
  /** Capabilities to turn on, on both sides. */
  capabilities: string[];
}

/**
 * QEMU 7.2's migration capabilities (qapi/migration.json MigrationCapability).
 * Anything else QEMU refuses at `migrate-set-capabilities`, which on a target
 * comes only after QEMU started.
 */
export const QEMU_MIGRATION_CAPABILITIES: readonly string[] = [
  'xbzrle', 'rdma-pin-all', 'auto-converge', 'zero-blocks', 'compress', 'events', 'postcopy-ram', 'x-colo', 'release-ram',
  'block', 'return-path', 'pause-before-switchover', 'multifd', 'dirty-bitmaps', 'postcopy-blocktime', 'late-block-activate',
  'x-ignore-shared', 'validate-uuid', 'background-snapshot', 'zero-copy-send', 'postcopy-preempt',
];
const KNOWN_CAPABILITIES = new Set(QEMU_MIGRATION_CAPABILITIES);

const MIB = 1024 * 1024;
/** QEMU 7.2 refuses a downtime-limit above 2000 s ("Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds"). */
const MAX_DOWNTIME_MS = 2_000_000;

function positiveInt(hv: HvParams, key: string, max: number): number | undefined {
  const v = hv[key];
  if (v === undefined || v === null || v === '') return undefined;
  // Ganeti keeps some ints as strings in old configs.
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0 || n > max) {
    throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot use hvparams.${key} ${JSON.stringify(v)}: expected an integer from 1 to ${max}`, { field: `hvparams.${key}` });
  }
  return n;
}

/**
 * Reads the migration hvparams; capability names are checked against
 * QEMU 7.2's list and repeated ones dropped.
 * @throws GkdError `GKD_UNSUPPORTED_VALUE` naming a bad hvparam
 */
export function migrationSettings(hv: HvParams): MigrationSettings {
  const parameters: MigrationSettings['parameters'] = {};
  const bw = positiveInt(hv, 'migration_bandwidth', Math.floor(Number.MAX_SAFE_INTEGER / MIB));
  if (bw !== undefined) parameters['max-bandwidth'] = bw * MIB;
  const dt = positiveInt(hv, 'migration_downtime', MAX_DOWNTIME_MS);
  if (dt !== undefined) parameters['downtime-limit'] = dt;
  const caps = hv.migration_caps;
  if (caps !== undefined && caps !== null && typeof caps !== 'string') {
    throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot use hvparams.migration_caps ${JSON.stringify(caps)}: expected capabilities separated by ":"`, { field: 'hvparams.migration_caps' });
  }
  const capabilities = [...new Set((caps ?? '').split(':').map((c) => c.trim()).filter((c) => c !== ''))];
  const unknown = capabilities.filter((c) => !KNOWN_CAPABILITIES.has(c));
  if (unknown.length > 0) {
    const list = unknown.map((c) => `"${c}"`).join(', ');
    throw new GkdError('GKD_UNSUPPORTED_VALUE', `Cannot use hvparams.migration_caps ${JSON.stringify(caps)}: ${list} ${unknown.length === 1 ? 'is not a migration capability' : 'are not migration capabilities'} of QEMU 7.2 (${QEMU_MIGRATION_CAPABILITIES.join(', ')})`, {
      field: 'hvparams.migration_caps',
      data: { unknown },
    });
  }
  return { parameters, capabilities };
}
