/**
 * A QEMU that an earlier run of the daemon started in launch mode and that
 * outlived it (the daemon was killed; its children are not killed with it).
 * The restarted daemon adopts it: the instance stays running, a second
 * instance.start is refused, and the daemon's shutdown stops it as it stops
 * the QEMUs it launched itself. It is not our child, so its exit is seen by
 * polling its pid, and it is stopped with `quit` over a short QMP
 * connection, then SIGKILL.
 */
import { readFileSync } from 'node:fs';
import { processExists } from '../process-exists';
import type { QmpClient } from '../qmp';
import type { QemuExit, QemuProcess } from './qemu-launcher';

/** What the daemon keeps of a QEMU it runs: launched now, or adopted. */
export type RunningQemu = Pick<QemuProcess, 'pid' | 'exited' | 'stop'>;

/** Runs a short QMP sequence on the instance's socket (QmpConnections.use fits). */
export type QmpSession = <T>(socket: string, fn: (qmp: QmpClient) => Promise<T>) => Promise<T>;

/** True while `pid` runs; a zombie (exited, not reaped by a parent that is not us) counts as gone. */
function alive(pid: number): boolean {
  if (!processExists(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Adopts the QEMU with `pid` whose QMP socket is `qmpSocket`. */
export function adoptQemu(pid: number, qmpSocket: string, session: QmpSession, options: { stopTimeoutMs?: number; pollMs?: number } = {}): RunningQemu {
  const pollMs = options.pollMs ?? 500;
  const exited: Promise<QemuExit> = (async () => {
    while (alive(pid)) await sleep(pollMs);
    return { code: null, signal: null };
  })();
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await session(qmpSocket, (q) => q.execute('quit')).catch(() => undefined);
      const deadline = Date.now() + (options.stopTimeoutMs ?? 3_000);
      while (alive(pid) && Date.now() < deadline) await sleep(50);
      if (alive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      while (alive(pid)) await sleep(20);
    })();
    return stopping;
  };
  return { pid, exited, stop };
}
