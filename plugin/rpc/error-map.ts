/**
 * Maps whatever a handler threw to a JSON-RPC error object.
 *
 * - `GkdError` → `{code: err.rpcCode, message, data: err.toJSON()}`: stable
 *   numeric and string codes (docs/errors.md).
 * - `JSONRPCErrorException` (params validation, transport) → as is.
 * - Anything else is a bug: GKD_INTERNAL with a generic message and the
 *   request id to find the details in the daemon's log; no stack leaves
 *   the daemon.
 */
import { JSONRPCErrorException, type JSONRPCError } from 'json-rpc-2.0';
import { ERROR_CODES, isGkdError } from '../errors';

/** True when `err` is one we report as-is (not an internal failure). */
export function isExpectedError(err: unknown): boolean {
  return isGkdError(err) || err instanceof JSONRPCErrorException;
}

/** The JSON-RPC error object for `err`; `requestId` is quoted for internal errors. */
export function toRpcError(err: unknown, requestId: string): JSONRPCError {
  if (isGkdError(err)) return { code: err.rpcCode, message: err.message, data: err.toJSON() };
  if (err instanceof JSONRPCErrorException) return err.toObject();
  const message = `Internal error: see the daemon log for request ${requestId}`;
  return { code: ERROR_CODES.GKD_INTERNAL.rpc, message, data: { code: 'GKD_INTERNAL', message, requestId } };
}
