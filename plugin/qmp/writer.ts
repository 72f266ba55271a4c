/**
 * QMP writer: requests reach the socket whole and in the order given.
 *
 * Requests issued in the same turn of the event loop (a pipelined pair such
 * as `device_add` and the `qom-get` that verifies it) go out in one write:
 * each write that finds QEMU's monitor thread asleep wakes it, which on a
 * virtual machine costs the writer more than the write itself. The first
 * write waits for the current tick to end (process.nextTick), not for a
 * turn of the event loop. While a write is under way the next requests
 * queue and go out together when it completes; a failed write rejects every
 * request it carried (none of them is known to have reached QEMU).
 */

import type { Writable } from 'node:stream';
import { encodeQmpMessage, type QmpMessage } from './framing';

interface Queued {
  bytes: Buffer;
  resolve(): void;
  reject(err: Error): void;
}

/** Serialises QMP requests onto a writable stream, in order, batching those issued together. */
export class QmpWriter {
  readonly #stream: Writable;
  #queue: Queued[] = [];
  /** A flush is scheduled or a write is under way. */
  #busy = false;
  /** A write is under way: its completion flushes what queued meanwhile. */
  #writing = false;

  constructor(stream: Writable) {
    this.#stream = stream;
  }

  /**
   * Queue one message. Resolves once the stream has accepted its bytes;
   * rejects with the stream's error if the write fails (e.g. the peer is gone).
   */
  write(message: QmpMessage): Promise<void> {
    const bytes = encodeQmpMessage(message);
    return new Promise((resolve, reject) => {
      this.#queue.push({ bytes, resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        process.nextTick(() => this.#flush());
      }
    });
  }

  /**
   * Writes what is queued now, without waiting for the tick to end (the
   * scheduled flush then finds the queue empty, or what was queued since).
   * For a request that must not wait behind the caller's synchronous work,
   * such as `qmp_capabilities` on a new connection.
   */
  flushNow(): void {
    // An empty queue is left alone: #flush would mark the writer idle while a flush is scheduled.
    if (this.#queue.length > 0) this.#flush();
  }

  #flush(): void {
    if (this.#writing) return;
    const batch = this.#queue;
    if (batch.length === 0) {
      this.#busy = false;
      return;
    }
    this.#queue = [];
    if (this.#stream.destroyed || this.#stream.writableEnded) {
      const err = new Error('stream is closed');
      for (const item of batch) item.reject(err);
      this.#busy = false; // the batch was the whole queue
      return;
    }
    const bytes = batch.length === 1 ? (batch[0] as Queued).bytes : Buffer.concat(batch.map((q) => q.bytes));
    this.#writing = true;
    this.#stream.write(bytes, (err) => {
      this.#writing = false;
      for (const item of batch) {
        if (err) item.reject(err);
        else item.resolve();
      }
      this.#flush();
    });
  }
}
