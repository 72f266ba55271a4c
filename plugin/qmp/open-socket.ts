/**
 * Open a Unix stream socket with a deadline, failing as `GKD_QMP_CONNECT`.
 */

import { createConnection, type Socket } from 'node:net';
import { GkdError } from '../errors';

/**
 * Connect to `socketPath`. `data.reason` of the error is the errno code
 * (`ENOENT` before QEMU created the socket, `ECONNREFUSED` for a stale one)
 * or `timeout`, so a launcher can tell "not yet" from "never".
 */
export function openSocket(socketPath: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath });
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

