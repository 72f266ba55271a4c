/**
 * QMP wire framing: bytes in, JSON objects out.
 *
 * QEMU writes every QMP message (greeting, reply, event) as one JSON object
 * followed by CRLF, and never puts a raw newline inside a message (QEMU 7.2
 * `monitor/qmp.c` serialises compactly). The socket delivers those bytes in
 * arbitrary chunks: one message may span several reads, several messages may
 * share one read, and a multi-byte UTF-8 character may be cut in two. The
 * decoder below is a small state machine over bytes; it splits on LF only
 * (0x0A never occurs inside a multi-byte UTF-8 sequence), so text is decoded
 * only once a whole line is present.
 *
 * Pure: no I/O, no clock. The reader feeds it socket chunks.
 */

import { isUtf8 } from 'node:buffer';
import { GkdError } from '../errors';

/** One decoded QMP message: always a JSON object. */
export type QmpMessage = Record<string, unknown>;

/** Decoder limits. */
export interface QmpFrameDecoderOptions {
  /**
   * Largest accepted message in bytes, line terminator excluded. QEMU's
   * biggest answers (`query-qmp-schema`, about 200 KiB on 7.2) are far below.
   * @default 16 MiB
   */
  maxMessageBytes?: number;
}

/** Default limits for {@link QmpFrameDecoder}. */
export const FRAMING_DEFAULTS = {
  maxMessageBytes: 16 * 1024 * 1024,
} as const;

/**
 * Decoder states.
 * - `line-start`: nothing buffered; the next byte starts a message.
 * - `in-line`: part of a message is buffered, waiting for its LF.
 * - `failed`: a protocol fault was reported; every later push fails too,
 *   because the byte stream can no longer be trusted to be in step.
 */
export type QmpFrameState = 'line-start' | 'in-line' | 'failed';

const LF = 0x0a;
const CR = 0x0d;

/**
 * Incremental decoder for the QMP byte stream.
 *
 * `push(chunk)` returns every message completed by the chunk. On a protocol
 * fault (a line that is not a JSON object, invalid UTF-8, a message over
 * `maxMessageBytes`) it throws a `GkdError('GKD_QMP_PROTOCOL')`; messages
 * that were complete before the fault are in the error's `data.messages` so a
 * caller can still deliver them in order.
 */
export class QmpFrameDecoder {
  readonly #maxBytes: number;
  #state: QmpFrameState = 'line-start';
  #pieces: Buffer[] = [];
  #pending = 0;
  #fault: GkdError | undefined;

  constructor(options: QmpFrameDecoderOptions = {}) {
    const max = options.maxMessageBytes ?? FRAMING_DEFAULTS.maxMessageBytes;
    if (!Number.isInteger(max) || max < 2) throw new RangeError(`maxMessageBytes must be an integer >= 2, got ${max}`);
    this.#maxBytes = max;
  }

  /** Current state, for diagnostics and tests. */
  get state(): QmpFrameState {
    return this.#state;
  }

  /** Bytes of an incomplete message held back, waiting for the rest. */
  get bufferedBytes(): number {
    return this.#pending;
  }

  /**
   * Feed one chunk; returns the messages it completed, in order. A `borrowed`
   * chunk is overwritten after this call (a reused read buffer): what the
   * decoder keeps of it, an unfinished line, is copied.
   * @throws GkdError `GKD_QMP_PROTOCOL` on a fault (and on every call after one)
   */
  push(chunk: Uint8Array, borrowed = false): QmpMessage[] {
    if (this.#state === 'failed') throw this.#refault();
    const out: QmpMessage[] = [];
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    while (start < buf.length) {
      const lf = buf.indexOf(LF, start);
      if (lf === -1) {
        const rest = buf.subarray(start);
        this.#hold(borrowed ? Buffer.from(rest) : rest, out);
        break;
      }
      this.#hold(buf.subarray(start, lf), out);
      this.#endLine(out);
      start = lf + 1;
    }
    return out;
  }

  /**
   * Signal end of stream. Throws if a message was cut off mid-way, which is
   * what a reader sees when QEMU dies while writing a reply.
   * @throws GkdError `GKD_QMP_PROTOCOL` when bytes of an unfinished message remain
   */
  end(): void {
    if (this.#state === 'failed') throw this.#refault();
    if (this.#state === 'in-line' && this.#pending > 0) {
      this.#fail(`it ended inside a message after ${this.#pending} bytes`, []);
    }
  }

  #hold(part: Buffer, out: QmpMessage[]): void {
    if (part.length === 0) return;
    // Check before buffering so an endless line cannot grow memory without bound.
    if (this.#pending + part.length > this.#maxBytes + 1) {
      this.#fail(`a message exceeds ${this.#maxBytes} bytes`, out);
    }
    this.#pieces.push(part);
    this.#pending += part.length;
    this.#state = 'in-line';
  }

  #endLine(out: QmpMessage[]): void {
    let line = this.#pieces.length === 1 ? this.#pieces[0] : Buffer.concat(this.#pieces, this.#pending);
    this.#pieces = [];
    this.#pending = 0;
    this.#state = 'line-start';
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    if (line.length > this.#maxBytes) {
      this.#fail(`a message exceeds ${this.#maxBytes} bytes`, out);
    }
    // Checked, then decoded: a fatal TextDecoder per connection costs more to create than this
    // check costs for every line a hot-add reads.
    if (!isUtf8(line)) this.#fail('a message is not valid UTF-8', out);
    const text = line.toString('utf8');
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.#fail(`a line is not JSON: ${preview(text)}`, out);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.#fail(`a line is not a JSON object: ${preview(text)}`, out);
    }
    out.push(value as QmpMessage);
  }

  /** The original fault again, without the messages it already handed over. */
  #refault(): GkdError {
    const first = this.#fault as GkdError;
    return new GkdError('GKD_QMP_PROTOCOL', first.message, { data: { reason: first.data?.reason, messages: [] }, cause: first });
  }

  /** `reason` is the state after the colon; `data.reason` keeps it for callers that add their own action. */
  #fail(reason: string, completed: QmpMessage[]): never {
    this.#state = 'failed';
    this.#pieces = [];
    this.#pending = 0;
    this.#fault = new GkdError('GKD_QMP_PROTOCOL', `Cannot decode the QMP stream: ${reason}`, { data: { reason, messages: completed } });
    throw this.#fault;
  }
}

/**
 * Serialise one outgoing QMP message. QEMU's JSON lexer takes any whitespace
 * between objects; a single LF keeps each request on its own line.
 */
export function encodeQmpMessage(message: QmpMessage): Buffer {
  return Buffer.from(`${JSON.stringify(message)}\n`, 'utf8');
}

/** The start of an offending line, quoted and escaped for an error message. */
function preview(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}
