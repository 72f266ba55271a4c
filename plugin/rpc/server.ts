/**
 * The daemon's transport: JSON-RPC 2.0 (json-rpc-2.0) over WebSocket (ws)
 * on a Unix socket.
 *
 * Each text frame is one request, a notification or a batch. The envelope is
 * checked here (the library assumes objects), params are validated against
 * the method's schema before its handler runs, and every outcome is logged
 * once with method, instance, duration and request id.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { lstat, unlink } from 'node:fs/promises';
import {
  JSONRPCErrorCode, JSONRPCServer, createJSONRPCErrorResponse, createJSONRPCNotification, createJSONRPCSuccessResponse,
  type JSONRPCID, type JSONRPCRequest, type JSONRPCResponse,
} from 'json-rpc-2.0';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { ERROR_CODES } from '../errors';
import { checkBudget } from '../value-budget';
import { isExpectedError, toRpcError } from './error-map';
import type { CallContext, RpcMethod, RpcPeer } from './method';
import { ParamsValidator } from './params';
import { applySocketPermissions, claimSocketPath, publishSocket, stagingSocketPath, type SocketLock } from './socket-file';

/**
 * Most requests in one batch. A batch larger than this is refused whole
 * (-32600): it could never run at once under {@link MAX_INFLIGHT_PER_CLIENT}.
 */
export const MAX_BATCH = 64;
/** Most calls one connection may have running; more are answered GKD_OVERLOADED. */
export const MAX_INFLIGHT_PER_CLIENT = 64;
/**
 * Replies and notifications queued for a client that does not read them, in
 * bytes; beyond this the connection is closed with 1008 (policy violation).
 */
export const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
/** How long a closed client has to read up to our close frame before its socket is destroyed. */
const SLOW_CLIENT_KILL_MS = 1000;

/** Per-call state handed through json-rpc-2.0 to the method wrapper. */
interface CallState {
  ctx: CallContext;
  rid: string;
  /** What the handler threw, for the log line. */
  thrown?: unknown;
}

/** The two signals of one call (CallContext `signal` and `cancel`). */
interface CallControl {
  /** Aborts the call itself: its caller went away, or the shutdown grace is over. */
  abort: AbortController;
  /** Stops work the call has not started yet: at once when the shutdown begins (and with `abort`). */
  cancel: AbortController;
}

/** Who a call comes from: a WebSocket client, or a caller inside the daemon ({@link RpcServer.localPeer}). */
interface CallerPeer extends RpcPeer {
  /** The calls running for it, aborted when it goes away. */
  calls: Set<CallControl>;
}

interface Peer extends CallerPeer {
  ws: WebSocket;
  log: Logger;
  /** Set once the peer is being dropped for not reading. */
  dropped?: boolean;
}

export interface RpcServerOptions {
  config: Config;
  logger: Logger;
  methods: RpcMethod[];
  /** Schemas that method schemas `$ref` (e.g. the instance spec). */
  sharedSchemas?: Record<string, unknown>[];
  /**
   * Answers plain HTTP requests on the socket (the hook endpoint); without
   * it they get 426. Shutdown waits for the promise like for a call.
   */
  httpRequest?: (req: IncomingMessage, res: ServerResponse, server: RpcServer) => Promise<void>;
}

/**
 * Calls into the daemon from inside it, through the same checks, limits and
 * logging as a WebSocket client's (a fresh client id; notifications to it go
 * nowhere). Made by {@link RpcServer.localPeer}.
 */
export interface LocalPeer {
  readonly id: number;
  /** The JSON-RPC response the call gets, exactly as a client would read it. */
  call(method: string, params: Record<string, unknown>): Promise<JSONRPCResponse>;
  /** Aborts the calls still running, as a client's disconnect does. */
  close(reason?: string): void;
}

/** A listening daemon. Create with {@link RpcServer.start}. */
export class RpcServer {
  readonly socketPath: string;
  #config: Config;
  #log: Logger;
  #http: Server;
  #wss: WebSocketServer;
  #rpc = new JSONRPCServer<CallState>({ errorListener: () => undefined });
  #validator = new ParamsValidator();
  #methods = new Map<string, RpcMethod>();
  #peers = new Set<Peer>();
  #inflight = new Set<Promise<void>>();
  /** Every call in progress, of WebSocket clients and local callers alike. */
  #calls = new Set<CallControl>();
  #nextPeer = 1;
  #nextCall = 1;
  #closing: Promise<void> | undefined;
  #lock: SocketLock | undefined;
  /** The inode of the socket file this server bound, so shutdown removes only its own. */
  #socketIno: number | undefined;

  private constructor(options: RpcServerOptions) {
    this.#config = options.config;
    this.socketPath = options.config.socket;
    this.#log = options.logger;
    for (const s of options.sharedSchemas ?? []) this.#validator.addSharedSchema(s);
    for (const m of options.methods) this.#register(m);
    // Handlers' errors are mapped in #register; this only sees library faults.
    this.#rpc.mapErrorToJSONRPCErrorResponse = (id: JSONRPCID, err: unknown) => ({ jsonrpc: '2.0', id, error: toRpcError(err, '-') });
    const plain = options.httpRequest;
    this.#http = createServer((req, res) => {
      if (plain === undefined) {
        res.writeHead(426, { 'content-type': 'text/plain' }).end('This socket speaks JSON-RPC over WebSocket\n');
        return;
      }
      const work = plain(req, res, this).catch((err: unknown) => {
        // A bug in the handler: answer, never crash the daemon.
        this.#log.error({ err }, 'cannot answer HTTP request');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end();
      });
      this.#inflight.add(work);
      void work.finally(() => this.#inflight.delete(work));
    });
    this.#wss = new WebSocketServer({ server: this.#http, maxPayload: options.config.maxPayload });
    this.#wss.on('connection', (ws) => this.#accept(ws));
    this.#wss.on('error', (err) => this.#log.error({ err }, 'websocket server error'));
  }

  /** Claims the socket path, listens, and applies the socket's mode and owner. */
  static async start(options: RpcServerOptions): Promise<RpcServer> {
    const server = new RpcServer(options);
    const { createdDirs, lock } = await claimSocketPath(server.socketPath);
    server.#lock = lock;
    // Bound under a staging name and linked into place once its permissions are set: the socket
    // path never shows a socket the configured group cannot reach yet. Closing the server later
    // unlinks only the staging name (Node removes the path it bound); the real path is removed
    // by close(), and only while it is still this server's socket.
    const staging = stagingSocketPath(server.socketPath);
    try {
      await new Promise<void>((resolve, reject) => {
        server.#http.once('error', reject);
        server.#http.listen(staging, () => {
          server.#http.off('error', reject);
          resolve();
        });
      });
      const { socketMode: mode, socketOwner: owner, socketGroup: group } = options.config;
      await applySocketPermissions(staging, { mode, owner, group, createdDirs });
      await publishSocket(staging, server.socketPath);
      server.#socketIno = (await lstat(server.socketPath)).ino;
    } catch (e) {
      server.#http.close();
      await lock.release();
      throw e;
    }
    server.#log.info({ socket: server.socketPath, methods: [...server.#methods.keys()] }, 'daemon listening');
    return server;
  }

  /** The registered methods, in registration order. */
  get methods(): RpcMethod[] {
    return [...this.#methods.values()];
  }

  /** A caller inside the daemon: its calls take the path a WebSocket client's take. */
  localPeer(log: Logger = this.#log): LocalPeer {
    const peer: CallerPeer = { id: this.#nextPeer++, calls: new Set() };
    let next = 1;
    return {
      id: peer.id,
      call: async (method, params) => {
        const id = next++;
        // Through JSON both ways, as on the wire: the caller sees exactly what a client would.
        const msg = JSON.parse(JSON.stringify({ jsonrpc: '2.0', id, method, params })) as unknown;
        const reply = await this.#onRequest(peer, msg, log);
        return JSON.parse(this.#serialize(reply ?? invalidRequest(id), log)) as JSONRPCResponse;
      },
      close: (reason = 'caller gone') => {
        for (const c of peer.calls) abortCall(c, reason);
      },
    };
  }

  /** Sends a notification to one client or to all; a closed client is skipped. */
  notify(target: RpcPeer | 'all', method: string, params?: Record<string, unknown>): void {
    let text: string;
    try {
      text = JSON.stringify(createJSONRPCNotification(method, params));
    } catch (err) {
      this.#log.error({ err: { message: (err as Error).message }, method }, 'cannot serialise notification');
      return;
    }
    const peers = target === 'all' ? [...this.#peers] : [...this.#peers].filter((p) => p.id === target.id);
    for (const p of peers) this.#send(p, text);
  }

  /**
   * Sends one frame; a client whose unread output passes MAX_BUFFERED_BYTES
   * is disconnected (1008) instead of growing the daemon's memory.
   */
  #send(peer: Peer, text: string): void {
    const { ws } = peer;
    if (ws.readyState !== WebSocket.OPEN || peer.dropped === true) return;
    ws.send(text);
    if (ws.bufferedAmount <= MAX_BUFFERED_BYTES) return;
    peer.dropped = true;
    peer.log.warn({ bufferedBytes: ws.bufferedAmount, limit: MAX_BUFFERED_BYTES }, 'client does not read its replies, disconnecting');
    ws.close(1008, 'client does not read its replies');
    // The close frame sits behind the unread data: don't wait for the client to get to it.
    setTimeout(() => ws.terminate(), SLOW_CLIENT_KILL_MS).unref();
  }

  /**
   * Stops accepting, cancels at once the work calls have not started (each
   * `ctx.cancel`: a queued operation is answered GKD_CANCELLED before any
   * connection closes), lets in-flight calls finish for up to `graceMs`, then
   * aborts what is left, closes every connection and removes the socket.
   * Calls arriving meanwhile get GKD_SHUTTING_DOWN. Idempotent.
   */
  close(graceMs = this.#config.shutdownGraceMs): Promise<void> {
    this.#closing ??= this.#shutdown(graceMs);
    return this.#closing;
  }

  async #shutdown(graceMs: number): Promise<void> {
    this.#log.info({ inflight: this.#inflight.size }, 'daemon shutting down');
    // Work not started yet will not start: an operation waiting for its instance is answered
    // GKD_CANCELLED now, while its connection is still open, instead of being cut off with the
    // connection when the grace is over. Calls already working go on and are waited for below.
    for (const c of this.#calls) c.cancel.abort(new Error('daemon shutting down'));
    const stopped = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    });
    const drained = Promise.allSettled([...this.#inflight]).then(() => true);
    const finished = await Promise.race([drained, grace]);
    clearTimeout(timer);
    if (!finished) this.#log.warn({ inflight: this.#inflight.size }, 'shutdown grace over, aborting calls');
    // Connections that never completed the WebSocket upgrade (say half a request line)
    // are still the HTTP server's, and http.close() would wait for them.
    this.#http.closeAllConnections();
    for (const c of this.#calls) abortCall(c, 'daemon shutting down');
    // Replies already sent go out before the close frame: ws writes frames in order.
    for (const p of this.#peers) p.ws.close(1001, 'daemon shutting down');
    // A peer that ignores the close frame must not hold the process.
    const kill = setTimeout(() => {
      for (const p of this.#peers) p.ws.terminate();
    }, 1000);
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    await stopped;
    clearTimeout(kill);
    // Only the socket this server bound: never one another daemon made at the same path since.
    const st = await lstat(this.socketPath).catch(() => undefined);
    if (st !== undefined && st.ino === this.#socketIno) await unlink(this.socketPath).catch(() => undefined);
    await this.#lock?.release();
    this.#log.info('daemon stopped');
  }

  #register(m: RpcMethod): void {
    this.#validator.add(m.name, m.schema);
    this.#methods.set(m.name, m);
    this.#rpc.addMethodAdvanced(m.name, async (request: JSONRPCRequest, state: CallState) => {
      const id = request.id ?? null;
      try {
        this.#validator.check(m.name, request.params);
        const result = await m.handler(request.params as Record<string, unknown>, state.ctx);
        return request.id === undefined ? null : createJSONRPCSuccessResponse(id, result ?? null);
      } catch (err) {
        // Mapped here so the reply and the log line quote the same request id.
        state.thrown = err;
        return request.id === undefined ? null : { jsonrpc: '2.0', id, error: toRpcError(err, state.rid) };
      }
    });
  }

  #accept(ws: WebSocket): void {
    const id = this.#nextPeer++;
    const log = this.#log.child({ client: id });
    const peer: Peer = { id, ws, calls: new Set(), log };
    this.#peers.add(peer);
    log.debug('client connected');
    // ws reports an oversize or malformed frame here, then closes with 1009/1002.
    ws.on('error', (err) => log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'client error'));
    ws.on('close', (code) => {
      this.#peers.delete(peer);
      for (const c of peer.calls) abortCall(c, 'client disconnected');
      log.debug({ code }, 'client disconnected');
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      // The calls' log lines are written once the reply is on its way: the caller does not wait for them.
      const logLines: Array<() => void> = [];
      const work = this.#onMessage(peer, data, isBinary, logLines).then(
        (reply) => {
          if (reply !== null) this.#send(peer, this.#serialize(reply, log));
        },
        (err: unknown) => {
          // A bug, not the client's fault: the client still gets an answer (id unknown here).
          const rid = `${process.pid}-${this.#nextCall++}`;
          log.error({ err, rid }, 'cannot answer message');
          this.#send(peer, JSON.stringify({ jsonrpc: '2.0', id: null, error: toRpcError(err, rid) }));
        },
      ).finally(() => {
        for (const line of logLines) line();
      });
      this.#inflight.add(work);
      void work.finally(() => this.#inflight.delete(work));
    });
  }

  /**
   * The reply's text. Params are budget-checked before any handler runs, so
   * this should never fail; if a result still cannot be serialised (too
   * deep, a cycle, a BigInt), each failed reply becomes GKD_INTERNAL for its
   * id instead of an exception that would end the process.
   */
  #serialize(reply: JSONRPCResponse | JSONRPCResponse[], log: Logger): string {
    try {
      return JSON.stringify(reply);
    } catch {
      const one = (r: JSONRPCResponse): JSONRPCResponse => {
        try {
          JSON.stringify(r);
          return r;
        } catch (err) {
          const rid = `${process.pid}-${this.#nextCall++}`;
          log.error({ err: { message: (err as Error).message }, rid, id: r.id }, 'cannot serialise reply');
          return { jsonrpc: '2.0', id: r.id, error: toRpcError(err, rid) };
        }
      };
      return JSON.stringify(Array.isArray(reply) ? reply.map(one) : one(reply));
    }
  }

  async #onMessage(peer: Peer, data: RawData, isBinary: boolean, logLines: Array<() => void>): Promise<JSONRPCResponse | JSONRPCResponse[] | null> {
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8');
    let msg: unknown;
    try {
      if (isBinary && text.length === 0) throw new Error('empty');
      msg = JSON.parse(text);
    } catch {
      return createJSONRPCErrorResponse(null, JSONRPCErrorCode.ParseError, 'Parse error');
    }
    if (!Array.isArray(msg)) return this.#onRequest(peer, msg, this.#log, logLines);
    if (msg.length === 0) return invalidRequest(null);
    if (msg.length > MAX_BATCH) {
      this.#log.warn({ client: peer.id, batch: msg.length, limit: MAX_BATCH }, 'batch refused');
      return createJSONRPCErrorResponse(null, JSONRPCErrorCode.InvalidRequest,
        `Invalid Request: split the batch, it holds ${msg.length} requests and the limit is ${MAX_BATCH}`);
    }
    const replies = (await Promise.all(msg.map((m) => this.#onRequest(peer, m, this.#log, logLines)))).filter(
      (r): r is JSONRPCResponse => r !== null,
    );
    return replies.length > 0 ? replies : null;
  }

  /**
   * One request's reply. The call's closing log line is written at once, or,
   * given `logLines`, left there for the caller to write after sending the reply.
   */
  async #onRequest(peer: CallerPeer, msg: unknown, parentLog: Logger = this.#log, logLines?: Array<() => void>): Promise<JSONRPCResponse | null> {
    const rid = `${process.pid}-${this.#nextCall++}`;
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return invalidRequest(null);
    const req = msg as Record<string, unknown>;
    const id = req.id;
    const idOk = id === undefined || id === null || typeof id === 'string' || typeof id === 'number';
    if (!idOk || req.jsonrpc !== '2.0' || typeof req.method !== 'string') return invalidRequest(idOk ? (id as JSONRPCID) ?? null : null);
    // The name is the caller's text: keep a long one out of every log line.
    const method = req.method.length > 128 ? `${req.method.slice(0, 128)}…` : req.method;
    const instance = instanceOf(req.params);
    const log = parentLog.child({ method, rid, client: peer.id, ...(instance === undefined ? {} : { instance }) });
    const reply = (code: number, message: string, data?: unknown): JSONRPCResponse | null =>
      id === undefined ? null : createJSONRPCErrorResponse(id as JSONRPCID, code, message, data);
    if (this.#closing !== undefined) {
      log.info({ outcome: 'GKD_SHUTTING_DOWN' }, 'call refused');
      const message = 'Cannot take the call: the daemon is shutting down';
      return reply(ERROR_CODES.GKD_SHUTTING_DOWN.rpc, message, { code: 'GKD_SHUTTING_DOWN', message });
    }
    if (req.params !== undefined && (req.params === null || typeof req.params !== 'object' || Array.isArray(req.params))) {
      const errors = [{ path: '', message: 'must be an object (params are passed by name)' }];
      return reply(JSONRPCErrorCode.InvalidParams, 'Invalid params: params must be an object', { errors });
    }
    // Before anything walks the params recursively (validation, handlers, the reply's serialisation).
    const over = checkBudget(req.params ?? {});
    if (over !== undefined) {
      log.info({ outcome: JSONRPCErrorCode.InvalidParams, path: over.path.slice(0, 512) }, 'call refused');
      return reply(JSONRPCErrorCode.InvalidParams, `Invalid params for "${method}": ${over.path || '/'} ${over.message}`, { errors: [over] });
    }
    if (peer.calls.size >= MAX_INFLIGHT_PER_CLIENT) {
      log.warn({ outcome: 'GKD_OVERLOADED', inflight: peer.calls.size }, 'call refused');
      const message = `Wait for an answer before calling again: this connection has ${peer.calls.size} calls in flight, the limit is ${MAX_INFLIGHT_PER_CLIENT}`;
      return reply(ERROR_CODES.GKD_OVERLOADED.rpc, message, { code: 'GKD_OVERLOADED', message });
    }
    const control: CallControl = { abort: new AbortController(), cancel: new AbortController() };
    peer.calls.add(control);
    this.#calls.add(control);
    const ctx: CallContext = {
      log, client: { id: peer.id }, signal: control.abort.signal, cancel: control.cancel.signal, config: this.#config,
      notify: (target, m, p) => this.notify(target, m, p),
    };
    const started = process.hrtime.bigint();
    const state: CallState = { ctx, rid };
    const request: JSONRPCRequest = { jsonrpc: '2.0', method, params: req.params ?? {}, ...(id === undefined ? {} : { id: id as JSONRPCID }) };
    let response: JSONRPCResponse | null;
    try {
      response = await this.#rpc.receive(request, state);
    } finally {
      peer.calls.delete(control);
      this.#calls.delete(control);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const err = response?.error;
    const outcome = err === undefined ? 'ok' : (err.data as { code?: string } | undefined)?.code ?? err.code;
    const thrown = state.thrown;
    const line = (): void => {
      if (thrown !== undefined && !isExpectedError(thrown)) log.error({ err: thrown, ms, outcome }, 'call failed');
      else log.info({ ms, outcome }, 'call');
    };
    if (logLines === undefined) line();
    else logLines.push(line);
    return response;
  }
}

/** Aborts a call: its work not started is cancelled first, then the call itself. */
function abortCall(c: CallControl, reason: string): void {
  const err = new Error(reason);
  c.cancel.abort(err);
  c.abort.abort(err);
}

function invalidRequest(id: JSONRPCID): JSONRPCResponse {
  return createJSONRPCErrorResponse(id, JSONRPCErrorCode.InvalidRequest, 'Invalid Request');
}

/** The instance a call concerns, for the log line; only a plain short string is trusted. */
function instanceOf(params: unknown): string | undefined {
  if (params === null || typeof params !== 'object') return undefined;
  const p = params as { name?: unknown; instance?: { name?: unknown } };
  const name = typeof p.name === 'string' ? p.name : typeof p.instance?.name === 'string' ? p.instance.name : undefined;
  return name !== undefined && name.length <= 255 ? name : undefined;
}
