/**
 * The QMP greeting: the first message QEMU sends on a new connection.
 *
 * QEMU 7.2 sends `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2,
 * "major": 7}, "package": "…"}, "capabilities": ["oob"]}}` and then waits for
 * `qmp_capabilities` before it accepts any other command.
 */

import { GkdError } from '../errors';
import type { QmpMessage } from './framing';

/** QEMU's version as announced in the greeting. */
export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
  /** Distribution build string, e.g. `Debian 1:7.2+dfsg-7+deb12u18+b3`; may be empty. */
  package: string;
}

/** What the greeting tells a client. */
export interface QmpGreeting {
  version: QemuVersion;
  /** Optional protocol capabilities QEMU offers (7.2: `["oob"]`); the client asks for `oob` (see QmpClient.oob). */
  capabilities: string[];
}

/** True if a message is a greeting (has the `QMP` key). */
export function isGreeting(message: QmpMessage): boolean {
  return Object.prototype.hasOwnProperty.call(message, 'QMP');
}

/**
 * Parse and check a greeting.
 * @throws GkdError `GKD_QMP_PROTOCOL` if the version triple or capabilities are malformed
 */
export function parseGreeting(message: QmpMessage): QmpGreeting {
  const qmp = message.QMP as { version?: { qemu?: Record<string, unknown>; package?: unknown }; capabilities?: unknown } | undefined;
  const qemu = qmp?.version?.qemu;
  const nums = ['major', 'minor', 'micro'].map((k) => qemu?.[k]);
  const caps = qmp?.capabilities;
  if (!nums.every((n) => Number.isInteger(n) && (n as number) >= 0) || !Array.isArray(caps) || !caps.every((c) => typeof c === 'string')) {
    throw new GkdError('GKD_QMP_PROTOCOL', `Cannot parse QMP greeting: ${JSON.stringify(message).slice(0, 200)}`, {
      data: { greeting: message },
    });
  }
  const [major, minor, micro] = nums as number[];
  const pkg = qmp?.version?.package;
  return {
    version: { major, minor, micro, package: typeof pkg === 'string' ? pkg.trim() : '' },
    capabilities: caps as string[],
  };
}
