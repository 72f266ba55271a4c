/**
 * QMP writer: one message on the wire at a time.
 *
 * Each request is handed to the socket only after the previous write has
 * completed, so two callers can never interleave bytes of their requests
 * and a failed write is attributed to exactly one request. When nothing is
 * queued the write starts synchronously (no extra turn of the event loop on
 * the common, sequential path).
 */

import type { Writable } from 'node:stream';
import { encodeQmpMessage, type QmpMessage } from './framing';

interface Queued {
  bytes: Buffer;
  resolve(): void;
  reject(err: Error): void;
}

/** Serialises QMP requests onto a writable stream, strictly one after another. */
export class QmpWriter {
  readonly #stream: Writable;
  readonly #queue: Queued[] = [];
  #busy = false;

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
      if (!this.#busy) this.#next();
    });
  }

  #next(): void {
    const item = this.#queue.shift();
    if (item === undefined) {
      this.#busy = false;
      return;
    }
    this.#busy = true;
    if (this.#stream.destroyed || this.#stream.writableEnded) {
      item.reject(new Error('stream is closed'));
      this.#next(); // a failed write must not block the queue: the rest fail fast too
      return;
    }
    this.#stream.write(item.bytes, (err) => {
      if (err) item.reject(err);
      else item.resolve();
      this.#next();
    });
  }
}
