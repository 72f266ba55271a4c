/**
 * QMP: a small, exact client for QEMU's machine protocol.
 *
 * Layers (style guide rule 7): `framing` (bytes → JSON objects) →
 * `reader`/`writer` (one write at a time) → `client` (ids, timeouts, events,
 * failure on close). Other areas import only from here.
 */

export { QmpClient, QMP_CLIENT_DEFAULTS } from './client';
export type { QmpConnectOptions, QmpExecuteOptions } from './client';
export type { QmpEvent, QmpEventMatch, EventExpectation } from './events';
export type { QemuVersion, QmpGreeting } from './greeting';
export { QmpFrameDecoder, encodeQmpMessage, FRAMING_DEFAULTS } from './framing';
export type { QmpMessage, QmpFrameDecoderOptions, QmpFrameState } from './framing';
