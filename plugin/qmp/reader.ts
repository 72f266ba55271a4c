/**
 * QMP reader: socket chunks → framing decoder → whole messages.
 *
 * Sits between the transport and the client (framing → reader/writer →
 * client). It owns no protocol knowledge beyond "a message is a JSON object";
 * the client decides what a message means.
 */

import type { Readable } from 'node:stream';
import type { GkdError } from '../errors';
import { QmpFrameDecoder, type QmpFrameDecoderOptions, type QmpMessage } from './framing';

/** Why the stream stopped, as seen by the reader. */
export interface QmpReaderEnd {
  /** Bytes of an unfinished message still buffered: the peer died mid-message. */
  truncatedBytes: number;
  /** Transport error (ECONNRESET, EPIPE…), if the stream failed rather than ended. */
  cause?: Error;
}

/** Callbacks the reader drives; each is called synchronously from the stream's events. */
export interface QmpReaderHandlers {
  message(message: QmpMessage): void;
  /** A protocol fault; the reader stops reading afterwards. */
  fault(error: GkdError): void;
  /** The stream ended or failed; called once, and never after `fault`. */
  end(info: QmpReaderEnd): void;
}

/**
 * Feeds a byte stream through a {@link QmpFrameDecoder}: its `data` events,
 * or, with `fed`, whatever the owner hands to {@link QmpReader.feed} (a socket
 * reading into a reused buffer, see open-socket.ts).
 */
export class QmpReader {
  readonly #stream: Readable;
  readonly #handlers: QmpReaderHandlers;
  readonly #decoder: QmpFrameDecoder;
  #done = false;
  #cause: Error | undefined;
  /** Fed by the owner from a reused buffer: chunks are only valid during the call. */
  readonly #borrowed: boolean;

  constructor(stream: Readable, handlers: QmpReaderHandlers, options: QmpFrameDecoderOptions & { fed?: boolean } = {}) {
    this.#stream = stream;
    this.#handlers = handlers;
    this.#decoder = new QmpFrameDecoder(options);
    this.#borrowed = options.fed === true;
    if (!this.#borrowed) stream.on('data', this.#onData);
    stream.on('error', this.#onError);
    stream.on('close', this.#onClose);
  }

  /** Stop delivering anything; used by the client once it has torn down. */
  dispose(): void {
    this.#done = true;
    this.#stream.off('data', this.#onData);
  }

  /** One chunk read by the owner (with `fed`); valid only during this call. */
  feed(chunk: Buffer): void {
    this.#onData(chunk);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#done) return;
    let messages: QmpMessage[];
    try {
      messages = this.#decoder.push(chunk, this.#borrowed);
    } catch (err) {
      const fault = err as GkdError;
      // Deliver what was complete before the fault, in order, then report it.
      for (const m of (fault.data?.messages as QmpMessage[] | undefined) ?? []) {
        if (this.#done) return;
        this.#handlers.message(m);
      }
      if (this.#done) return;
      this.#done = true;
      this.#handlers.fault(fault);
      return;
    }
    for (const m of messages) {
      if (this.#done) return; // a handler may have torn the connection down
      this.#handlers.message(m);
    }
  };

  readonly #onError = (err: Error): void => {
    this.#cause ??= err;
  };

  readonly #onClose = (): void => {
    if (this.#done) return;
    this.#done = true;
    const info: QmpReaderEnd = { truncatedBytes: this.#decoder.bufferedBytes };
    if (this.#cause !== undefined) info.cause = this.#cause;
    this.#handlers.end(info);
  };
}
