/**
 * What a JSON-RPC method is to the daemon: a name, a params schema (the
 * contract file under `schemas/rpc/`) and a handler that receives params
 * already validated against that schema.
 */
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { RpcParams } from './param-types.generated';

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
  /**
   * Aborted when work the call has not started yet must not start: the caller disconnects, or the
   * daemon begins to shut down (at once, before the grace). An operation waiting for its turn on an
   * instance is then answered GKD_CANCELLED, nothing done; work already under way ignores it (it
   * has `signal`). Also aborted whenever `signal` is.
   */
  cancel: AbortSignal;
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

/** A method whose handler takes the params type generated from its schema (param-types.generated.ts). */
export interface TypedRpcMethod<K extends keyof RpcParams> {
  name: K;
  summary: string;
  /** `schemas/rpc/<name>.schema.json`: the schema `RpcParams[K]` is generated from. */
  schema: Record<string, unknown>;
  handler(params: RpcParams[K], ctx: CallContext): unknown | Promise<unknown>;
}

/**
 * An {@link RpcMethod} from a typed one. The server validates params against
 * `schema` before any handler runs, and RpcParams is generated from the same
 * schema, so this is the one place the params type is asserted.
 */
export function defineMethod<K extends keyof RpcParams>(m: TypedRpcMethod<K>): RpcMethod {
  return m as unknown as RpcMethod;
}
