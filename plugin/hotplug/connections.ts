/**
 * One QMP connection per QMP socket, shared by every operation on that
 * instance. QEMU's `-qmp` server serves one client at a time, so a second
 * connect would stall behind the first; sharing also lets a pending unplug
 * keep listening for DEVICE_DELETED while other calls go on.
 */
import { QmpClient, type QmpConnectOptions } from '../qmp';

export class QmpConnections {
  readonly #clients = new Map<string, Promise<QmpClient>>();
  readonly #options: QmpConnectOptions;

  constructor(options: QmpConnectOptions = {}) {
    this.#options = options;
  }

  /** The live connection to `socketPath`, connecting when there is none (or the old one closed). */
  async get(socketPath: string): Promise<QmpClient> {
    const existing = this.#clients.get(socketPath);
    if (existing !== undefined) {
      const c = await existing.catch(() => undefined);
      if (c !== undefined && !c.closed) return c;
      if (this.#clients.get(socketPath) === existing) this.#clients.delete(socketPath);
      return this.get(socketPath);
    }
    const p = QmpClient.connect(socketPath, this.#options);
    this.#clients.set(socketPath, p);
    p.then(
      (c) => c.on('close', () => {
        if (this.#clients.get(socketPath) === p) this.#clients.delete(socketPath);
      }),
      () => {
        if (this.#clients.get(socketPath) === p) this.#clients.delete(socketPath);
      },
    );
    return p;
  }

  /** Hands over a connection opened elsewhere (e.g. by the launcher) so no second connect is needed. */
  adopt(socketPath: string, client: QmpClient): void {
    const p = Promise.resolve(client);
    this.#clients.set(socketPath, p);
    client.on('close', () => {
      if (this.#clients.get(socketPath) === p) this.#clients.delete(socketPath);
    });
  }

  /** Closes the connection to `socketPath`, if any. */
  async drop(socketPath: string): Promise<void> {
    const p = this.#clients.get(socketPath);
    this.#clients.delete(socketPath);
    const c = await p?.catch(() => undefined);
    await c?.close();
  }

  /** Closes every connection. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#clients.keys()].map((k) => this.drop(k)));
  }
}
