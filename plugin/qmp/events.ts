/**
 * QMP events and waiting for them.
 *
 * QEMU sends events at any time: before a command's reply (7.2 sends
 * `RESUME` before the reply to `cont`), after it, or between other replies.
 * A waiter armed only after the reply has arrived can therefore miss the
 * event it waits for. {@link EventWaiters} keeps armed expectations so a
 * caller can arm before sending the command, and a short backlog of events
 * received since the last reply for callers that arm afterwards.
 */

import { GkdError } from '../errors';
import type { QmpMessage } from './framing';

/** One asynchronous QMP event. */
export interface QmpEvent {
  /** Event name, e.g. `DEVICE_DELETED`. */
  event: string;
  /** The event's `data` member; `{}` when QEMU sent none (e.g. `STOP`). */
  data: Record<string, unknown>;
  /** QEMU's host wall-clock stamp, if present. */
  timestamp?: { seconds: number; microseconds: number };
}

/** Predicate over an event's `data`. */
export type QmpEventMatch = (data: Record<string, unknown>) => boolean;

/**
 * A wait armed for one event. Await it directly (it is a thenable) or use
 * `promise`. Rejects with `GKD_QMP_TIMEOUT` on timeout, `GKD_QMP_CLOSED`
 * when the connection goes, and an `AbortError` after `cancel()`.
 * An expectation nobody awaits never causes an unhandled rejection.
 */
export interface EventExpectation extends PromiseLike<QmpEvent> {
  readonly promise: Promise<QmpEvent>;
  /** Stop waiting; frees the timer. No effect once settled. */
  cancel(): void;
}

/** True if a message is an event. */
export function isEvent(message: QmpMessage): boolean {
  return typeof message.event === 'string';
}

/** Normalise an event message. */
export function toEvent(message: QmpMessage): QmpEvent {
  const data = message.data;
  const ev: QmpEvent = {
    event: message.event as string,
    data: data !== null && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : {},
  };
  const ts = message.timestamp as { seconds?: unknown; microseconds?: unknown } | undefined;
  if (ts && typeof ts.seconds === 'number' && typeof ts.microseconds === 'number') {
    ev.timestamp = { seconds: ts.seconds, microseconds: ts.microseconds };
  }
  return ev;
}

interface Waiter {
  name: string;
  match: QmpEventMatch | undefined;
  resolve(ev: QmpEvent): void;
  reject(err: Error): void;
}

/** How many events since the last reply are kept for late waiters. */
const BACKLOG_LIMIT = 256;

/** Armed expectations plus the since-last-reply backlog of one connection. */
export class EventWaiters {
  readonly #waiters = new Set<Waiter>();

  /** Waits not yet settled. */
  get size(): number {
    return this.#waiters.size;
  }
  #backlog: QmpEvent[] = [];
  #closed: ((name: string) => GkdError) | undefined;

  /** Arm a wait now. `timeoutMs` of `Infinity` waits until the connection closes. */
  expect(name: string, match: QmpEventMatch | undefined, timeoutMs: number, fromBacklog = false): EventExpectation {
    if (typeof name !== 'string' || name === '') throw new TypeError('event name must be a non-empty string');
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be > 0, got ${timeoutMs}`);
    let timer: NodeJS.Timeout | undefined;
    let waiter: Waiter | undefined;
    const promise = new Promise<QmpEvent>((resolve, reject) => {
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        if (waiter !== undefined) this.#waiters.delete(waiter);
      };
      waiter = {
        name,
        match,
        resolve: (ev) => (done(), resolve(ev)),
        reject: (err) => (done(), reject(err)),
      };
    });
    promise.catch(() => undefined); // the caller may never await, e.g. after its command failed
    const w = waiter as Waiter;
    const early = fromBacklog ? this.#backlog.find((ev) => matches(w, ev)) : undefined;
    if (early !== undefined) w.resolve(early);
    else if (this.#closed !== undefined) w.reject(this.#closed(name));
    else {
      this.#waiters.add(w);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          w.reject(new GkdError('GKD_QMP_TIMEOUT', `Cannot wait for event "${name}": none matched within ${timeoutMs} ms`, {
            data: { event: name, timeoutMs },
          }));
        }, timeoutMs);
      }
    }
    return {
      promise,
      then: (onOk, onErr) => promise.then(onOk, onErr),
      cancel: () => {
        const err = new Error(`Wait for event "${name}" was cancelled`);
        err.name = 'AbortError';
        w.reject(err);
      },
    };
  }

  /** Offer an event to every armed wait and to the backlog. */
  dispatch(ev: QmpEvent): void {
    this.#backlog.push(ev);
    if (this.#backlog.length > BACKLOG_LIMIT) this.#backlog.shift();
    for (const w of [...this.#waiters]) {
      let hit: boolean;
      try {
        hit = matches(w, ev);
      } catch (err) {
        w.reject(err as Error); // a throwing predicate fails its own wait, nothing else
        continue;
      }
      if (hit) w.resolve(ev);
    }
  }

  /** A command reply arrived: events before it are no longer "recent". */
  markReply(): void {
    this.#backlog = [];
  }

  /** Reject every wait, now and later, with the error `make` builds. */
  close(make: (name: string) => GkdError): void {
    this.#closed = make;
    this.#backlog = [];
    for (const w of [...this.#waiters]) w.reject(make(w.name));
  }
}

function matches(w: Waiter, ev: QmpEvent): boolean {
  return ev.event === w.name && (w.match === undefined || w.match(ev.data) === true);
}
