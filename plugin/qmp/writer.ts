/**
 * QMP writer: one message on the wire at a time.
 *
 * Each request is handed to the socket only after the previous write has
 * completed, so two callers can never interleave bytes of their requests
 * and a failed write is attributed to exactly one request.
 */

import type { Writable } from 'node:stream';
import { encodeQmpMessage, type QmpMessage } from './framing';

/** Serialises QMP requests onto a writable stream, strictly one after another. */
export class QmpWriter {
  readonly #stream: Writable;
  #tail: Promise<void> = Promise.resolve();

  constructor(stream: Writable) {
    this.#stream = stream;
  }

  /**
   * Queue one message. Resolves once the stream has accepted its bytes;
   * rejects with the stream's error if the write fails (e.g. the peer is gone).
   */
  write(message: QmpMessage): Promise<void> {
    const bytes = encodeQmpMessage(message);
    const next = this.#tail.then(() => this.#writeOne(bytes));
    // A failed write must not block the queue: the next one runs (and fails fast if the stream is dead).
    this.#tail = next.catch(() => undefined);
    return next;
  }

  #writeOne(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#stream.destroyed || this.#stream.writableEnded) {
        reject(new Error('stream is closed'));
        return;
      }
      this.#stream.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }
}
