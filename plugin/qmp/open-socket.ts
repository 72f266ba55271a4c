/**
 * Open a Unix stream socket with a deadline, failing as `GKD_QMP_CONNECT`.
 */

import { createConnection, type Socket } from 'node:net';
import { GkdError } from '../errors';

/**
 * Where every QMP socket of this process reads into. Safe to share: a read
 * is handed over and decoded synchronously in the socket's callback, and the
 * decoder copies the unfinished line it keeps (framing.ts, `borrowed`).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * Connect to `socketPath`. `data.reason` of the error is the errno code
 * (`ENOENT` before QEMU created the socket, `ECONNREFUSED` for a stale one)
 * or `timeout`, so a launcher can tell "not yet" from "never".
 *
 * With `onRead`, the socket's bytes go to it straight from each read, as a
 * view of a buffer reused by the next read, instead of through the stream's
 * `data` events (no stream buffering, no per-read allocation: a hot-add's
 * connection reads five or six small answers). 'error', 'end' and 'close'
 * are emitted as usual.
 */
export function openSocket(socketPath: string, timeoutMs: number, onRead?: (chunk: Buffer) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(onRead === undefined ? { path: socketPath } : {
      path: socketPath,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array): boolean => {
          onRead(Buffer.from(buf.buffer, buf.byteOffset, n));
          return true; // keep reading
        },
      },
    });
    const fail = (reason: string, cause?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new GkdError('GKD_QMP_CONNECT', `Cannot connect to QMP socket "${socketPath}": ${cause?.message ?? reason}`, {
        data: { socketPath, reason },
        cause,
      }));
    };
    const timer = setTimeout(() => fail('timeout'), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'error', err));
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined); // the reader records transport errors from here on
      resolve(socket);
    });
  });
}

