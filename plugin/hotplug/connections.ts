/**
 * One QMP connection per QMP socket, shared by every operation on that
 * instance. QEMU's `-qmp` server serves one client at a time, so a second
 * connect would stall behind the first; sharing also lets a pending unplug
 * keep listening for DEVICE_DELETED while other calls go on.
 *
 * For the same reason a connection must not be kept longer than needed:
 * the socket may be Ganeti's own (`ctrl/<name>.qmp`), and Ganeti's stop,
 * migrate and balloon calls stall while we hold it. With `idleCloseMs` set,
 * a connection with nothing in flight and no activity for that long is
 * closed, unless something waits on it (a pending unplug's event wait) or
 * it was adopted (the launcher's own connection to a QEMU this process
 * started).
 */
import { QmpClient, type QmpConnectOptions } from '../qmp';

/** Connect options plus the idle time after which a connection is given back. */
export interface QmpConnectionsOptions extends QmpConnectOptions {
  /** Close a connection idle this long (ms); undefined keeps connections until closeAll. */
  idleCloseMs?: number;
}

interface Entry {
  client: Promise<QmpClient>;
  /** Never idle-closed: adopted from the launcher. */
  adopted: boolean;
  timer?: NodeJS.Timeout;
}

/** The shared QMP connections, one per socket (see the file comment). */
export class QmpConnections {
  readonly #entries = new Map<string, Entry>();
  readonly #options: QmpConnectOptions;
  readonly #idleCloseMs: number | undefined;

  constructor(options: QmpConnectionsOptions = {}) {
    const { idleCloseMs, ...connect } = options;
    this.#options = connect;
    this.#idleCloseMs = idleCloseMs;
  }

  /** The live connection to `socketPath`, connecting when there is none (or the old one closed). */
  async get(socketPath: string): Promise<QmpClient> {
    const existing = this.#entries.get(socketPath);
    if (existing !== undefined) {
      const c = await existing.client.catch(() => undefined);
      if (c !== undefined && !c.closed) {
        this.#scheduleIdle(socketPath, existing);
        return c;
      }
      if (this.#entries.get(socketPath) === existing) this.#forget(socketPath, existing);
      return this.get(socketPath);
    }
    const entry: Entry = { client: QmpClient.connect(socketPath, this.#options), adopted: false };
    this.#entries.set(socketPath, entry);
    entry.client.then(
      (c) => {
        c.on('close', () => {
          if (this.#entries.get(socketPath) === entry) this.#forget(socketPath, entry);
        });
        this.#scheduleIdle(socketPath, entry);
      },
      () => {
        if (this.#entries.get(socketPath) === entry) this.#forget(socketPath, entry);
      },
    );
    return entry.client;
  }

  /** Hands over a connection opened elsewhere (e.g. by the launcher) so no second connect is needed. */
  adopt(socketPath: string, client: QmpClient): void {
    const entry: Entry = { client: Promise.resolve(client), adopted: true };
    this.#entries.set(socketPath, entry);
    client.on('close', () => {
      if (this.#entries.get(socketPath) === entry) this.#forget(socketPath, entry);
    });
  }

  /** Closes the connection to `socketPath`, if any. */
  async drop(socketPath: string): Promise<void> {
    const entry = this.#entries.get(socketPath);
    if (entry === undefined) return;
    this.#forget(socketPath, entry);
    const c = await entry.client.catch(() => undefined);
    await c?.close();
  }

  /** Closes every connection. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#entries.keys()].map((k) => this.drop(k)));
  }

  #forget(socketPath: string, entry: Entry): void {
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    if (this.#entries.get(socketPath) === entry) this.#entries.delete(socketPath);
  }

  /** Checks after `delay` ms (default the idle time) whether the connection has been quiet long enough. */
  #scheduleIdle(socketPath: string, entry: Entry, delay?: number): void {
    const idle = this.#idleCloseMs;
    if (idle === undefined || entry.adopted) return;
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      void entry.client.then(
        (c) => {
          if (this.#entries.get(socketPath) !== entry || c.closed) return;
          // An armed event wait (a pending unplug) or a command in flight keeps it open.
          if (c.busy) return this.#scheduleIdle(socketPath, entry);
          // Quiet for less than the idle time: look again when it will have been.
          const quietFor = Date.now() - c.lastActivity;
          if (quietFor < idle) return this.#scheduleIdle(socketPath, entry, idle - quietFor);
          this.#forget(socketPath, entry);
          void c.close();
        },
        () => undefined,
      );
    }, delay ?? idle);
    entry.timer.unref();
  }
}
