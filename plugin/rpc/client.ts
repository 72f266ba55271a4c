/**
 * A small client for the daemon, used by `kvm-devices call`, the hooks and
 * the tests: one WebSocket on the daemon's Unix socket, calls with ids, and
 * server→client notifications delivered to listeners.
 */
import { EventEmitter } from 'node:events';
import { resolve as resolvePath } from 'node:path';
import {
  JSONRPCClient, JSONRPCErrorException, createJSONRPCErrorResponse, isJSONRPCResponse, isJSONRPCResponses,
  type JSONRPCError, type JSONRPCErrorResponse, type JSONRPCID, type JSONRPCResponse,
} from 'json-rpc-2.0';
import { WebSocket } from 'ws';

/** An error the daemon answered with: JSON-RPC code, message and data as sent. */
export class RpcCallError extends Error {
  readonly code: number;
  readonly data: unknown;
  constructor(error: JSONRPCError) {
    super(error.message);
    this.name = 'RpcCallError';
    this.code = error.code;
    this.data = error.data;
  }

  /** The error object exactly as on the wire. */
  toJSON(): JSONRPCError {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

/** The daemon could not be reached or the connection dropped. */
export class RpcConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RpcConnectionError';
  }
}

/** The daemon did not answer a call within the client's call timeout. */
export class RpcTimeoutError extends RpcConnectionError {
  readonly method: string;
  readonly timeoutMs: number;
  constructor(method: string, timeoutMs: number) {
    super(`Cannot get an answer from the daemon: no reply to "${method}" within ${timeoutMs} ms`);
    this.name = 'RpcTimeoutError';
    this.method = method;
    this.timeoutMs = timeoutMs;
  }
}

export interface RpcClientOptions {
  /** Give up connecting after this long. @default 5000 */
  connectTimeoutMs?: number;
  /** Fail a call that gets no answer in this long; 0 waits forever. @default 0 */
  callTimeoutMs?: number;
}

/** A connected client. Create with {@link RpcClient.connect}. */
export class RpcClient extends EventEmitter {
  #ws: WebSocket;
  #rpc: JSONRPCClient<void>;
  #callTimeoutMs: number;
  #closed = false;

  private constructor(ws: WebSocket, options: RpcClientOptions) {
    super();
    this.#ws = ws;
    this.#callTimeoutMs = options.callTimeoutMs ?? 0;
    this.#rpc = new JSONRPCClient<void>((payload) => {
      if (ws.readyState !== WebSocket.OPEN) throw new RpcConnectionError('Cannot send: the connection to the daemon is closed');
      ws.send(JSON.stringify(payload));
    });
    ws.on('message', (data) => this.#onMessage(data.toString()));
    ws.on('close', (code, reason) => {
      this.#closed = true;
      this.#rpc.rejectAllPendingRequests(`Connection to the daemon closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
      this.emit('close', code, reason.toString());
    });
    ws.on('error', (err) => this.emit('transport-error', err));
  }

  /**
   * Connects to the daemon listening on `socketPath`.
   * @throws RpcConnectionError when nothing answers (missing socket, refused, timeout)
   */
  static connect(socketPath: string, options: RpcClientOptions = {}): Promise<RpcClient> {
    const timeoutMs = options.connectTimeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      // ws+unix URLs carry an absolute path (a relative one loses its first segment): resolve against the cwd.
      const ws = new WebSocket(`ws+unix://${resolvePath(socketPath)}:/`, { handshakeTimeout: timeoutMs });
      const fail = (err: Error): void => {
        ws.removeAllListeners();
        ws.on('error', () => undefined);
        ws.terminate();
        reject(new RpcConnectionError(`Cannot reach the daemon on "${socketPath}": ${err.message}`, { cause: err }));
      };
      ws.once('error', fail);
      ws.once('open', () => {
        ws.off('error', fail);
        resolve(new RpcClient(ws, options));
      });
    });
  }

  /**
   * Calls `method` with `params` and resolves to its result.
   * @throws RpcCallError when the daemon answers with an error
   * @throws RpcTimeoutError when the call timeout passes without an answer
   * @throws RpcConnectionError when the connection drops before the answer
   */
  async call<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    if (this.#closed) throw new RpcConnectionError('Cannot call: the connection to the daemon is closed');
    let timedOut = false;
    const onTimeout = (id: JSONRPCID): JSONRPCErrorResponse => {
      timedOut = true;
      return createJSONRPCErrorResponse(id, 0, 'Request timeout');
    };
    const requester = this.#callTimeoutMs > 0 ? this.#rpc.timeout(this.#callTimeoutMs, onTimeout) : this.#rpc;
    try {
      return (await requester.request(method, params, undefined)) as T;
    } catch (e) {
      if (timedOut) throw new RpcTimeoutError(method, this.#callTimeoutMs);
      if (e instanceof JSONRPCErrorException) throw new RpcCallError(e.toObject());
      if (e instanceof RpcConnectionError) throw e;
      throw new RpcConnectionError((e as Error).message, { cause: e });
    }
  }

  /** Sends raw text as one frame (tests use it for malformed messages). */
  sendRaw(text: string | Buffer): void {
    this.#ws.send(text);
  }

  /** Closes the connection; pending calls fail. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#ws.once('close', () => resolve());
      this.#ws.close(1000);
    });
  }

  #onMessage(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.emit('transport-error', new Error('The daemon sent a frame that is not JSON'));
      return;
    }
    const idless = isJSONRPCResponse(msg) && msg.id === null;
    if (!idless && (isJSONRPCResponse(msg) || isJSONRPCResponses(msg))) {
      this.#rpc.receive(msg as JSONRPCResponse | JSONRPCResponse[]);
      return;
    }
    const note = msg as { method?: unknown; params?: unknown; id?: unknown };
    if (typeof note.method === 'string' && note.id === undefined) {
      /** Emitted for every server→client notification. */
      this.emit('notification', note.method, note.params);
      return;
    }
    // An answer without id (e.g. a parse error) has nobody to go to: surface it.
    this.emit('unmatched', msg);
  }
}
