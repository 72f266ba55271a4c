/**
 * QMP connections, opened for one short command sequence and closed right
 * after it.
 *
 * QEMU's `-qmp` server serves one client at a time: a second client is
 * accepted by the kernel but gets no greeting until the first one leaves.
 * On a Ganeti node the socket is Ganeti's own (`ctrl/<name>.qmp`), and
 * Ganeti's QMP client gives up after 5 s. So the plugin never keeps an
 * instance's monitor while it waits for anything but QEMU's answers: a
 * sequence runs inside {@link QmpConnections.use}, and the connection is
 * closed as soon as the last sequence using it ends. Waiting for a guest
 * (an unplug) is done by polling with fresh short connections, never by
 * holding one open for an event.
 *
 * Sequences that overlap in this process share the one connection (a
 * second connect from here would only queue behind the first); the
 * connection closes when the last of them ends. A connection adopted from
 * the launcher (a QEMU this daemon started itself, whose socket is not
 * Ganeti's) stays open until {@link QmpConnections.closeAll}, and so does
 * every connection with `keepOpen` (config `qmpKeepOpen`, for monitors
 * dedicated to the daemon).
 */
import { GkdError, isGkdError } from '../errors';
import { QmpClient, type QmpConnectOptions } from '../qmp';

/** Connect options of every connection, and whether connections outlive their sequences. */
export type QmpConnectionsOptions = QmpConnectOptions & {
  /**
   * Keep every connection open after its last sequence (until it drops or
   * {@link QmpConnections.closeAll}): only for monitors no one else uses. @default false
   */
  keepOpen?: boolean;
};

interface Entry {
  client: Promise<QmpClient>;
  /** Settles once the socket is connected and `qmp_capabilities` written, or the connect failed. */
  opened: Promise<void>;
  /** Never closed on release: adopted from the launcher. */
  adopted: boolean;
}

/** Short-lived QMP connections, one per socket at a time (see the file comment). */
export class QmpConnections {
  readonly #entries = new Map<string, Entry>();
  /** How many sequences use each socket right now. */
  readonly #users = new Map<string, number>();
  /** Resolvers waiting for a socket's users to reach zero (closeAll). */
  readonly #idle = new Map<string, Array<() => void>>();
  readonly #options: QmpConnectOptions;
  readonly #keepOpen: boolean;

  constructor(options: QmpConnectionsOptions = {}) {
    const { keepOpen, ...connect } = options;
    this.#options = connect;
    this.#keepOpen = keepOpen === true;
  }

  /**
   * Runs `fn` over a connection to `socketPath` and closes the connection
   * when `fn` (and every other sequence sharing it) has ended. Inside `fn`,
   * `use` on the same socket returns the same connection, or a fresh one
   * when it dropped, still closed at the end of the outer sequence.
   *
   * @throws GkdError `GKD_QMP_BUSY` when another client (Ganeti) holds the
   *   monitor past the connect budget, `GKD_QMP_CONNECT`, or what `fn` throws
   */
  async use<T>(socketPath: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
    this.#users.set(socketPath, (this.#users.get(socketPath) ?? 0) + 1);
    try {
      const client = await this.#client(socketPath);
      return await fn(client);
    } finally {
      await this.#leave(socketPath);
    }
  }

  /**
   * Starts connecting to `socketPath` now, for a sequence that will {@link use}
   * it in a moment: the connect then overlaps the caller's other work (taking
   * the instance lock, reading files). Counts as a user until `release()`, so
   * release it as soon as the `use` has begun, or when the sequence will not
   * come soon (the lock is contended): a held connection keeps Ganeti off
   * the monitor. A failed connect is reported by the `use`, which tries again.
   */
  hold(socketPath: string): { opened: Promise<void>; release(): Promise<void> } {
    this.#users.set(socketPath, (this.#users.get(socketPath) ?? 0) + 1);
    this.#client(socketPath).catch(() => undefined);
    let released = false;
    return {
      opened: this.#entries.get(socketPath)?.opened ?? Promise.resolve(),
      release: async () => {
        if (released) return;
        released = true;
        await this.#leave(socketPath);
      },
    };
  }

  /** One user of `socketPath` is done; the last one closes the connection. */
  async #leave(socketPath: string): Promise<void> {
    const left = (this.#users.get(socketPath) ?? 1) - 1;
    if (left > 0) this.#users.set(socketPath, left);
    else {
      this.#users.delete(socketPath);
      await this.#closeUnused(socketPath);
      // A socket the daemon stops using leaves no key behind: the map holds only sockets in use.
      const waiters = this.#idle.get(socketPath) ?? [];
      this.#idle.delete(socketPath);
      for (const wake of waiters) wake();
    }
  }

  /** How many sequences use `socketPath` now (0: no connection is held for them). */
  users(socketPath: string): number {
    return this.#users.get(socketPath) ?? 0;
  }

  /** True while this process holds a connection to `socketPath` (for tests and diagnostics). */
  isOpen(socketPath: string): boolean {
    return this.#entries.has(socketPath);
  }

  /**
   * How many sockets this pool keeps any state for (a connection, a count of
   * users, a drain waiting). Zero once nothing runs and only launcher-adopted
   * connections are open, however many instances were used: for tests and diagnostics.
   */
  get tracked(): number {
    return new Set([...this.#entries.keys(), ...this.#users.keys(), ...this.#idle.keys()]).size;
  }

  /** Hands over a connection opened elsewhere (the launcher's, to a QEMU this daemon started). */
  adopt(socketPath: string, client: QmpClient): void {
    const entry: Entry = { client: Promise.resolve(client), opened: Promise.resolve(), adopted: true };
    this.#entries.set(socketPath, entry);
    client.on('close', () => {
      if (this.#entries.get(socketPath) === entry) this.#entries.delete(socketPath);
    });
  }

  /**
   * Waits up to `waitMs` for the sequences under way to end, so a shutdown
   * does not cut a hot-add or a migration in half. Resolves true when none is left.
   */
  async drain(waitMs: number): Promise<boolean> {
    const deadline = Date.now() + waitMs;
    await Promise.all([...this.#users.keys()].map((s) => new Promise<void>((resolve) => {
      const list = this.#idle.get(s) ?? [];
      const wake = (): void => {
        clearTimeout(t);
        resolve();
      };
      // Past the deadline the waiter is taken out again, so a drain that gave up leaves nothing behind.
      const t = setTimeout(() => {
        const i = list.indexOf(wake);
        if (i !== -1) list.splice(i, 1);
        if (list.length === 0 && this.#idle.get(s) === list) this.#idle.delete(s);
        resolve();
      }, Math.max(0, deadline - Date.now()));
      list.push(wake);
      this.#idle.set(s, list);
    })));
    return this.#users.size === 0;
  }

  /** Closes every connection, adopted ones included (after {@link drain} on shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#entries.keys()].map(async (s) => {
      const entry = this.#entries.get(s);
      this.#entries.delete(s);
      const c = await entry?.client.catch(() => undefined);
      await c?.close();
    }));
  }

  /** The live connection to `socketPath`, connecting when there is none or it dropped. */
  async #client(socketPath: string): Promise<QmpClient> {
    const existing = this.#entries.get(socketPath);
    if (existing !== undefined) {
      const c = await existing.client.catch(() => undefined);
      if (c !== undefined && !c.closed) return c;
      if (this.#entries.get(socketPath) === existing) this.#entries.delete(socketPath);
      return this.#client(socketPath);
    }
    let onSocketOpen = (): void => undefined;
    const opened = new Promise<void>((resolve) => {
      onSocketOpen = resolve;
    });
    const client = connectNamingBusy(socketPath, { ...this.#options, onSocketOpen });
    client.then(onSocketOpen, onSocketOpen);
    const entry: Entry = { client, opened, adopted: false };
    this.#entries.set(socketPath, entry);
    entry.client.then(
      (c) => c.on('close', () => {
        if (this.#entries.get(socketPath) === entry) this.#entries.delete(socketPath);
      }),
      () => {
        if (this.#entries.get(socketPath) === entry) this.#entries.delete(socketPath);
      },
    );
    return entry.client;
  }

  async #closeUnused(socketPath: string): Promise<void> {
    const entry = this.#entries.get(socketPath);
    if (entry === undefined || entry.adopted || this.#keepOpen) return;
    this.#entries.delete(socketPath);
    const c = await entry.client.catch(() => undefined);
    await c?.close();
  }
}

/**
 * Connects; a monitor that accepted but never greeted within the budget is
 * held by another client (Ganeti): that is `GKD_QMP_BUSY`, naming the socket.
 */
async function connectNamingBusy(socketPath: string, options: QmpConnectOptions): Promise<QmpClient> {
  try {
    return await QmpClient.connect(socketPath, options);
  } catch (e) {
    if (isGkdError(e) && e.code === 'GKD_QMP_CONNECT' && (e.data as { reason?: string } | undefined)?.reason === 'no-greeting') {
      throw new GkdError('GKD_QMP_BUSY', `Cannot use QMP socket "${socketPath}": another client holds the monitor (QEMU serves one at a time); ${e.message.replace(/^Cannot connect to QMP socket "[^"]*": /, '')}; retry when it is done`, {
        data: { socketPath, reason: 'busy' },
        cause: e,
      });
    }
    throw e;
  }
}
