/**
 * Commands in flight on one QMP connection: id allocation, the id → promise
 * map, and a timeout per command.
 *
 * QEMU echoes a request's `id` in its reply (any JSON value; this client uses
 * positive integers), which is what lets replies be matched exactly even
 * when events or other replies come in between.
 */

import { GkdError } from '../errors';

/** What the table knows about one request, for building its error. */
export interface RequestInfo {
  readonly id: number;
  readonly command: string;
  /** `arguments.id` of the request, when it names a device (`device_add`, `device_del`). */
  readonly device: string | undefined;
}

interface Entry extends RequestInfo {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** Pending requests keyed by id, in the order they were opened. */
export class RequestTable {
  readonly #entries = new Map<number, Entry>();

  /** Commands sent and not yet answered. */
  get size(): number {
    return this.#entries.size;
  }
  #nextId = 1;

  /** Open a request; it rejects with `GKD_QMP_TIMEOUT` unless settled within `timeoutMs`. */
  open<T>(command: string, device: string | undefined, timeoutMs: number): { id: number; promise: Promise<T> } {
    const id = this.#nextId++;
    const promise = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#entries.delete(id);
        reject(new GkdError('GKD_QMP_TIMEOUT', `Cannot run QMP command "${command}": no reply within ${timeoutMs} ms`, {
          ...deviceOpt(device),
          data: { command, timeoutMs },
        }));
      }, timeoutMs);
      this.#entries.set(id, { id, command, device, resolve: resolve as (v: unknown) => void, reject, timer });
    });
    return { id, promise };
  }

  /** Id of the oldest request still waiting, if any. */
  oldest(): number | undefined {
    const first = this.#entries.keys().next();
    return first.done === true ? undefined : first.value;
  }

  /** True if `id` is waiting for its reply. */
  has(id: unknown): id is number {
    return typeof id === 'number' && this.#entries.has(id);
  }

  /** True if this table handed out `id` (it may have timed out since). */
  issued(id: unknown): boolean {
    return typeof id === 'number' && Number.isInteger(id) && id > 0 && id < this.#nextId;
  }

  /** Resolve request `id` with a value. No effect if it already settled. */
  resolve(id: number, value: unknown): void {
    this.#take(id)?.resolve(value);
  }

  /** Reject request `id` with the error `make` builds. No effect if it already settled. */
  reject(id: number, make: (req: RequestInfo) => GkdError): void {
    const e = this.#take(id);
    if (e !== undefined) e.reject(make(e));
  }

  /** Reject every waiting request, oldest first. */
  rejectAll(make: (req: RequestInfo) => GkdError): void {
    for (const id of [...this.#entries.keys()]) this.reject(id, make);
  }

  #take(id: number): Entry | undefined {
    const e = this.#entries.get(id);
    if (e === undefined) return undefined;
    this.#entries.delete(id);
    clearTimeout(e.timer);
    return e;
  }
}

/** `{ device }` for GkdError options when a device id is known. */
export function deviceOpt(device: string | undefined): { device?: string } {
  return device === undefined ? {} : { device };
}
