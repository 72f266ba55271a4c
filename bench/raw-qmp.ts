/**
 * A bare QMP connection for the benches' baselines: a unix socket read line
 * by line, with no JSON parsing, no request ids, no timers. What any client
 * must do at the least, to compare the plugin's client and engine with.
 */
import { createConnection, type Socket } from 'node:net';

export class RawQmpSocket {
  readonly #socket: Socket;
  #buf = '';
  #wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buf += d;
      this.#wake?.();
    });
  }

  /** Connected; nothing read or written yet (QEMU's greeting is the first line). */
  static async open(path: string): Promise<RawQmpSocket> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ path }, () => resolve(s));
      s.once('error', reject);
    });
    return new RawQmpSocket(socket);
  }

  write(text: string): void {
    this.#socket.write(text);
  }

  /** The next line. */
  async line(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf('\n');
      if (i !== -1) {
        const l = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        return l;
      }
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  /** The next `n` lines that are not events. */
  async replies(n: number): Promise<string[]> {
    const out: string[] = [];
    while (out.length < n) {
      const l = await this.line();
      if (!l.includes('"event"')) out.push(l);
    }
    return out;
  }

  close(): void {
    this.#socket.destroy();
  }
}
