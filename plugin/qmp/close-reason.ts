/**
 * Why a QMP connection ended, and the errors pending commands get then.
 */
import { GkdError, type ErrorCode } from '../errors';
import type { QmpMessage } from './framing';
import type { QmpReaderEnd } from './reader';
import { deviceOpt } from './requests';

/** Why the connection ended: an error code and the state text after the colon. */
export interface CloseReason {
  code: ErrorCode;
  detail: string;
  cause?: unknown;
}

/** The error a command gets when the connection ends before its reply. */
export function closeError(req: { command: string; device: string | undefined }, reason: CloseReason): GkdError {
  return new GkdError(reason.code, `Cannot run QMP command "${req.command}": ${reason.detail}`, {
    ...deviceOpt(req.device),
    data: { command: req.command },
    cause: reason.cause,
  });
}

/** The close reason for the reader's end of stream. */
export function endReason(info: QmpReaderEnd): CloseReason {
  const detail = info.truncatedBytes > 0
    ? `QEMU closed the connection in the middle of a message (${info.truncatedBytes} bytes received)`
    : 'QEMU closed the connection (it exited or the socket vanished)';
  return info.cause === undefined ? { code: 'GKD_QMP_CLOSED', detail } : { code: 'GKD_QMP_CLOSED', detail: `${detail}: ${info.cause.message}`, cause: info.cause };
}

/** `o` without its undefined members, so defaults can fill them. */
export function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A short JSON rendering of a message for error texts. */
export function preview(m: QmpMessage): string {
  const s = JSON.stringify(m);
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}
