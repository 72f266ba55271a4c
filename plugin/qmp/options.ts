/**
 * Options and defaults of the QMP client.
 */
import type { QmpEvent } from './events';

/** Options for {@link QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Default timeout of every command, ms. @default 10000 */
  timeoutMs?: number;
  /** Budget for socket connect + greeting + `qmp_capabilities`, ms. @default 5000 */
  connectTimeoutMs?: number;
  /** Largest accepted message, bytes. @default 16 MiB */
  maxMessageBytes?: number;
  /**
   * Ask QEMU for the `oob` capability, so it reads pipelined commands ahead
   * instead of one at a time (no out-of-band command is ever sent). @default true
   */
  oob?: boolean;
  /**
   * Called once the socket is connected and `qmp_capabilities` written, before
   * QEMU's greeting: a caller that connects ahead of other work can let that
   * much happen first, and do its work while QEMU greets.
   */
  onSocketOpen?: () => void;
  /**
   * Event listener attached before the handshake, so events QEMU sends before
   * `connect()` resolves (before or right after the greeting) are not lost.
   */
  onEvent?: (ev: QmpEvent) => void;
}

/** Options for one command. */
export interface QmpExecuteOptions {
  /** Overrides the connection's default command timeout, ms. */
  timeoutMs?: number;
}

/** Defaults of {@link QmpClient}. */
export const QMP_CLIENT_DEFAULTS = {
  timeoutMs: 10_000,
  connectTimeoutMs: 5_000,
  maxMessageBytes: 16 * 1024 * 1024,
  oob: true,
} as const;
