/**
 * What a JSON-RPC method is to the daemon: a name, a params schema (the
 * contract file under `schemas/rpc/`) and a handler that receives params
 * already validated against that schema.
 */
import type { Logger } from 'pino';
import type { Config } from '../config';

/** An opaque handle on one connected client, used to address notifications. */
export interface RpcPeer {
  /** Unique for the daemon's lifetime; appears in logs. */
  readonly id: number;
}

/** Sends a server→client notification to one client or to every client. */
export type Notify = (target: RpcPeer | 'all', method: string, params?: Record<string, unknown>) => void;

/** What a handler gets besides its params. */
export interface CallContext {
  /** Child logger bound to this call's method, request id and instance. */
  log: Logger;
  /**
   * Sends a notification. Stays usable after the call returned (a pending
   * unplug reports later); sending to a client that has gone is a no-op.
   */
  notify: Notify;
  /** The calling client. */
  client: RpcPeer;
  /** Aborted when the caller disconnects or the daemon's shutdown grace ends. */
  signal: AbortSignal;
  /** The daemon's configuration. */
  config: Config;
}

/** One method the daemon serves. */
export interface RpcMethod {
  name: string;
  /** One line for `rpc.discover` and `--help`. */
  summary: string;
  /** JSON Schema (2020-12) of the params object. */
  schema: Record<string, unknown>;
  handler(params: Record<string, unknown>, ctx: CallContext): unknown | Promise<unknown>;
}
