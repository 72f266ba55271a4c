/**
 * QMP client: greeting and capabilities negotiation, request ids, per-command
 * timeouts, events, and clean failure when QEMU dies.
 *
 * Every request carries a numeric `id` that QEMU echoes in its reply, so a
 * reply is never confused with an event or with another command's reply
 * (Ganeti's monitor reads "the next non-event message" instead, and failed
 * with "wrong server greeting" when events came first, Ganeti #1649).
 */

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { GkdError } from '../errors';
import type { QmpMessage } from './framing';
import { EventWaiters, isEvent, toEvent, type EventExpectation, type QmpEvent, type QmpEventMatch } from './events';
import { isGreeting, parseGreeting, type QemuVersion, type QmpGreeting } from './greeting';
import { QmpReader } from './reader';
import { QmpWriter } from './writer';
import { openSocket } from './open-socket';
import { RequestTable, deviceOpt } from './requests';
import { closeError, endReason, preview, stripUndefined, type CloseReason } from './close-reason';
import { QMP_CLIENT_DEFAULTS, type QmpConnectOptions, type QmpExecuteOptions } from './options';

export { QMP_CLIENT_DEFAULTS, type QmpConnectOptions, type QmpExecuteOptions };

type Phase = 'greeting' | 'ready' | 'closed';

/** How many timed-out command ids are remembered for matching late id-less replies. */
const MAX_LATE_IDS = 256;

/**
 * A connected QMP session. Create with {@link QmpClient.connect}.
 *
 * Events: `on('event', (ev: QmpEvent) => …)` for every event, including those
 * that arrive before the capabilities negotiation is answered;
 * `on('close', (err?: GkdError) => …)` once when the connection ends
 * (`err` is undefined after {@link QmpClient.close}). Listeners must not throw.
 */
export class QmpClient {
  readonly #socket: Socket;
  readonly #reader: QmpReader;
  readonly #writer: QmpWriter;
  readonly #emitter = new EventEmitter();
  readonly #waiters = new EventWaiters();
  readonly #requests = new RequestTable();
  /**
   * Ids of commands that timed out and whose reply has not come yet, oldest
   * first (bounded). QEMU answers in the order sent, so an id-less error may
   * be the late answer to one of them rather than to a waiting command.
   */
  readonly #late = new Set<number>();
  readonly #timeoutMs: number;
  readonly #socketClosed: Promise<void>;
  #phase: Phase = 'greeting';
  #greeting: QmpGreeting | undefined;
  #onGreeting: ((reason?: CloseReason) => void) | undefined;
  #closeReason: CloseReason | undefined;
  #commands: Promise<ReadonlySet<string>> | undefined;
  #lastActivity = Date.now();
  #oob = false;

  private constructor(socket: Socket, options: Required<Omit<QmpConnectOptions, 'onEvent' | 'onSocketOpen'>> & QmpConnectOptions) {
    this.#socket = socket;
    if (options.onEvent !== undefined) this.#emitter.on('event', options.onEvent);
    this.#timeoutMs = options.timeoutMs;
    this.#socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.#writer = new QmpWriter(socket);
    this.#reader = new QmpReader(
      socket,
      {
        message: (m) => this.#onMessage(m),
        fault: (err) => this.#protocolFault(String(err.data?.reason ?? err.message), err),
        end: (info) => this.#teardown(endReason(info)),
      },
      { maxMessageBytes: options.maxMessageBytes, fed: true },
    );
  }

  /**
   * Connect to a QMP Unix socket, read the greeting and negotiate
   * capabilities (`oob` when QEMU has it, see {@link QmpClient.oob}).
   * @throws GkdError `GKD_QMP_CONNECT` (socket unreachable, closed or silent
   *   before the handshake finished), `GKD_QMP_PROTOCOL` (bad greeting, garbage)
   */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const opts = { ...QMP_CLIENT_DEFAULTS, ...stripUndefined(options) };
    for (const k of ['timeoutMs', 'connectTimeoutMs'] as const) {
      if (!(opts[k] > 0)) throw new RangeError(`${k} must be > 0, got ${opts[k]}`);
    }
    const deadline = Date.now() + opts.connectTimeoutMs;
    // The socket's reads go straight to the client's reader; one that came before the client
    // exists (none should: the client is built in the connect callback's turn) is kept until then.
    let client: QmpClient | undefined;
    const early: Buffer[] = [];
    const socket = await openSocket(socketPath, opts.connectTimeoutMs, (chunk) => {
      if (client === undefined) early.push(Buffer.from(chunk));
      else client.#reader.feed(chunk);
    });
    try {
      client = new QmpClient(socket, opts);
    } catch (e) {
      socket.destroy(); // a bad option (maxMessageBytes): no connection is left behind, reading
      throw e;
    }
    for (const chunk of early.splice(0)) client.#reader.feed(chunk);
    // qmp_capabilities is written at once, not after the greeting: QEMU greets a client as it
    // accepts it and reads commands only after that, so the reply still comes second, and one round
    // trip is saved on every connection. On a busy monitor (no greeting) it is never read.
    const negotiated = client.#negotiate(deadline, opts.oob);
    negotiated.catch(() => undefined);
    // Out now, not at the end of the tick: whoever awaits the connection may run a long synchronous
    // stretch next (a hot-add takes its lock and writes its files), and QEMU can negotiate meanwhile.
    client.#writer.flushNow();
    opts.onSocketOpen?.();
    try {
      await client.#awaitGreeting(socketPath, deadline - Date.now());
      await negotiated;
    } catch (err) {
      client.#teardown({ code: 'GKD_QMP_CLOSED', detail: 'the handshake failed' });
      const e = err as GkdError;
      if (e.code === 'GKD_QMP_CLOSED' || e.code === 'GKD_QMP_TIMEOUT') {
        const why = e.message.replace(/^Cannot run QMP command "qmp_capabilities": /, 'qmp_capabilities: ');
        throw new GkdError('GKD_QMP_CONNECT', `Cannot connect to QMP socket "${socketPath}": ${why}`, {
          data: { socketPath, reason: e.code },
          cause: e,
        });
      }
      throw e;
    }
    return client;
  }

  /**
   * `qmp_capabilities`, asking for `oob` unless told not to. The point is not
   * out-of-band commands (none are sent) but what enabling them changes for
   * ordinary ones: without it QEMU reads one command from a client, stops
   * reading until that one is answered, and only then reads the next, so
   * commands written back to back still cost QEMU a wake-up each; with it
   * QEMU reads up to 8 ahead and runs them one after the other (a hot-add
   * writes its commands in pipelined pairs). Commands still run and are
   * answered in order. A monitor that cannot do
   * `oob` refuses the first request and stays in negotiation: ask again plainly.
   */
  async #negotiate(deadline: number, oob: boolean): Promise<void> {
    const budget = (): QmpExecuteOptions => ({ timeoutMs: Math.max(1, deadline - Date.now()) });
    if (oob) {
      try {
        await this.execute('qmp_capabilities', { enable: ['oob'] }, budget());
        this.#oob = true;
        return;
      } catch (e) {
        if (!(e instanceof GkdError) || e.code !== 'GKD_QMP_COMMAND') throw e;
      }
    }
    await this.execute('qmp_capabilities', undefined, budget());
  }

  /** True when QEMU agreed to `oob` on this connection (it then reads pipelined commands ahead). */
  get oob(): boolean {
    return this.#oob;
  }

  /** QEMU's version, from the greeting. */
  get version(): QemuVersion {
    return (this.#greeting as QmpGreeting).version;
  }

  /** Capabilities QEMU offered in the greeting (7.2: `["oob"]`). */
  get capabilities(): readonly string[] {
    return (this.#greeting as QmpGreeting).capabilities;
  }

  /** True once the connection has ended, for whatever reason. */
  get closed(): boolean {
    return this.#phase === 'closed';
  }

  /** When a command was last sent or a message last received (ms since the epoch). */
  get lastActivity(): number {
    return this.#lastActivity;
  }

  /** True while a command awaits its reply or an event wait is armed: closing now would cut someone off. */
  get busy(): boolean {
    return this.#requests.size > 0 || this.#waiters.size > 0;
  }

  /**
   * Run one command and resolve with its `return` value.
   * @throws GkdError `GKD_QMP_COMMAND` (QEMU's `class` and `desc` in `data`),
   *   `GKD_QMP_TIMEOUT`, `GKD_QMP_CLOSED`, `GKD_QMP_PROTOCOL`
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: QmpExecuteOptions = {}): Promise<T> {
    this.#lastActivity = Date.now();
    if (typeof command !== 'string' || command === '') throw new TypeError('command must be a non-empty string');
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be > 0, got ${timeoutMs}`);
    const device = typeof args?.id === 'string' ? args.id : undefined;
    if (this.#closeReason !== undefined) {
      const r = this.#closeReason;
      return Promise.reject(closeError({ command, device }, { code: 'GKD_QMP_CLOSED', detail: `the connection is closed (${r.detail})`, cause: r.cause }));
    }
    const { id, promise } = this.#requests.open<T>(command, device, timeoutMs);
    promise.catch((e: unknown) => {
      if (!(e instanceof GkdError) || e.code !== 'GKD_QMP_TIMEOUT') return;
      this.#late.add(id);
      if (this.#late.size > MAX_LATE_IDS) this.#late.delete(this.#late.values().next().value as number);
    });
    const request: QmpMessage = { execute: command, id };
    if (args !== undefined) request.arguments = args;
    this.#writer.write(request).catch((cause) => {
      this.#requests.reject(id, (req) => closeError(req, { code: 'GKD_QMP_CLOSED', detail: 'the request could not be written', cause }));
    });
    return promise;
  }

  /** Names of the commands this QEMU offers (`query-commands`, cached per connection). */
  commands(): Promise<ReadonlySet<string>> {
    this.#commands ??= this.execute<Array<{ name: string }>>('query-commands').then(
      (list) => new Set(list.map((c) => c.name)),
      (err) => {
        this.#commands = undefined; // do not cache a failure
        throw err;
      },
    );
    return this.#commands;
  }

  /** True if QEMU offers `name` (from the cached {@link QmpClient.commands}). */
  async hasCommand(name: string): Promise<boolean> {
    return (await this.commands()).has(name);
  }

  /**
   * Arm a wait for the first event `name` whose data satisfies `match`,
   * received from now on. Arm it before sending the command that causes the
   * event: QEMU may send the event before the command's reply.
   * @example
   * const gone = client.expectEvent('DEVICE_DELETED', (d) => d.device === id, 5000);
   * await client.execute('device_del', { id });
   * await gone;
   */
  expectEvent(name: string, match?: QmpEventMatch, timeoutMs: number = this.#timeoutMs): EventExpectation {
    return this.#waiters.expect(name, match, timeoutMs);
  }

  /**
   * Wait for event `name` matching `match`. Also accepts an event that
   * arrived after the most recent command reply and before this call, so
   * `await execute(…); await waitForEvent(…)` cannot miss one sent just after
   * the reply. Events sent before the reply are only caught by
   * {@link QmpClient.expectEvent}.
   */
  waitForEvent(name: string, match: QmpEventMatch | undefined, timeoutMs: number): Promise<QmpEvent> {
    return this.#waiters.expect(name, match, timeoutMs, true).promise;
  }

  /** Subscribe to every event, or to the end of the connection. */
  on(kind: 'event', listener: (ev: QmpEvent) => void): this;
  on(kind: 'close', listener: (err?: GkdError) => void): this;
  on(kind: 'event' | 'close', listener: (arg: never) => void): this {
    this.#emitter.on(kind, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Remove a listener added with {@link QmpClient.on}. */
  off(kind: 'event', listener: (ev: QmpEvent) => void): this;
  off(kind: 'close', listener: (err?: GkdError) => void): this;
  off(kind: 'event' | 'close', listener: (arg: never) => void): this {
    this.#emitter.off(kind, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * Close the connection. Pending commands and waits reject with
   * `GKD_QMP_CLOSED`. QEMU keeps running. Resolves when the socket is closed.
   */
  async close(): Promise<void> {
    this.#teardown({ code: 'GKD_QMP_CLOSED', detail: 'the client closed the connection' }, true);
    await this.#socketClosed;
  }

  #awaitGreeting(socketPath: string, timeoutMs: number): Promise<void> {
    if (this.#greeting !== undefined) return Promise.resolve();
    if (this.#closeReason !== undefined) return Promise.reject(this.#handshakeError(socketPath, this.#closeReason));
    return new Promise((resolve, reject) => {
      // QEMU accepts a second connection on a busy monitor but greets it only
      // when the first client leaves, so silence here is a real case.
      const timer = setTimeout(() => {
        this.#onGreeting = undefined;
        reject(new GkdError('GKD_QMP_CONNECT', `Cannot connect to QMP socket "${socketPath}": no greeting within ${Math.max(0, timeoutMs)} ms (is another client on this monitor?)`, {
          data: { socketPath, reason: 'no-greeting' },
        }));
      }, Math.max(1, timeoutMs));
      this.#onGreeting = (reason) => {
        clearTimeout(timer);
        this.#onGreeting = undefined;
        if (reason === undefined) resolve();
        else reject(this.#handshakeError(socketPath, reason));
      };
    });
  }

  #onMessage(m: QmpMessage): void {
    this.#lastActivity = Date.now();
    if (isEvent(m)) {
      const ev = toEvent(m);
      this.#waiters.dispatch(ev);
      this.#emitSafely('event', ev);
    } else if (this.#phase === 'greeting') {
      if (!isGreeting(m)) return this.#protocolFault(`expected the greeting, got ${preview(m)}`);
      try {
        this.#greeting = parseGreeting(m);
      } catch (err) {
        return this.#protocolFault(`bad greeting ${preview(m)}`, err);
      }
      this.#phase = 'ready';
      this.#onGreeting?.();
    } else if ('return' in m || 'error' in m) {
      this.#onReply(m);
    } else {
      this.#protocolFault(`unexpected message ${preview(m)}`);
    }
  }

  #onReply(m: QmpMessage): void {
    this.#waiters.markReply();
    if (m.id !== undefined && typeof m.id === 'number') this.#late.delete(m.id);
    // QEMU answers a request it cannot parse with an id-less error; in-band
    // commands are answered in the order sent, so it belongs to the oldest
    // unanswered one. When that is a command that already timed out, the
    // error is its late answer: dropped, never given to a younger command.
    let id: unknown = m.id;
    if (m.id === undefined) {
      const waiting = this.#requests.oldest();
      const late = this.#late.values().next().value as number | undefined;
      if (late !== undefined && (waiting === undefined || late < waiting)) {
        this.#late.delete(late);
        return;
      }
      if (waiting === undefined) return this.#protocolFault(`an id-less reply while no command is waiting: ${preview(m)}`);
      id = waiting;
    }
    if (!this.#requests.has(id)) {
      // A late reply to a command that already timed out is expected; anything else is not ours.
      if (this.#requests.issued(id)) return;
      return this.#protocolFault(`reply for unknown id ${JSON.stringify(id ?? null)}: ${preview(m)}`);
    }
    if ('return' in m) return this.#requests.resolve(id, m.return);
    const e = (m.error ?? {}) as { class?: unknown; desc?: unknown };
    const cls = typeof e.class === 'string' ? e.class : 'GenericError';
    const desc = typeof e.desc === 'string' ? e.desc : JSON.stringify(m.error);
    this.#requests.reject(id, (req) => new GkdError('GKD_QMP_COMMAND', `Cannot run QMP command "${req.command}": ${desc}`, {
      ...deviceOpt(req.device),
      data: { command: req.command, class: cls, desc },
    }));
  }

  #protocolFault(detail: string, cause?: unknown): void {
    this.#teardown({ code: 'GKD_QMP_PROTOCOL', detail: `the QMP peer broke the protocol: ${detail}`, cause });
  }

  #teardown(reason: CloseReason, byClient = false): void {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    this.#closeReason = reason;
    this.#reader.dispose();
    this.#socket.destroy();
    this.#onGreeting?.(reason);
    this.#requests.rejectAll((req) => closeError(req, reason));
    this.#waiters.close((name) => new GkdError(reason.code, `Cannot wait for event "${name}": ${reason.detail}`, { cause: reason.cause }));
    this.#emitSafely('close', byClient ? undefined : new GkdError(reason.code, `Cannot keep the QMP connection: ${reason.detail}`, { cause: reason.cause }));
  }

  /**
   * A throwing listener must not cut message delivery short (later messages
   * of the same chunk, pending replies): report it as an uncaught exception
   * on the next tick instead, as an EventEmitter would have, but afterwards.
   */
  #emitSafely(kind: 'event' | 'close', arg: unknown): void {
    try {
      this.#emitter.emit(kind, arg);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
    }
  }

  /** Protocol faults keep their code; a connection lost before the greeting is a connect failure. */
  #handshakeError(socketPath: string, reason: CloseReason): GkdError {
    const code = reason.code === 'GKD_QMP_PROTOCOL' ? reason.code : 'GKD_QMP_CONNECT';
    const when = code === 'GKD_QMP_CONNECT' ? ' before the greeting' : '';
    return new GkdError(code, `Cannot connect to QMP socket "${socketPath}": ${reason.detail}${when}`, {
      data: { socketPath, reason: reason.code },
      cause: reason.cause,
    });
  }
}
