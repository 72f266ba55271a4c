/**
 * Per-instance locking that holds across processes (the daemon, a CLI run,
 * a hook), built on `proper-lockfile`: an atomic `mkdir` of
 * `<dir>/.<name>.lock`, refreshed while held, considered stale (and taken
 * over) when its holder stopped refreshing it for `stale` ms, e.g. after a
 * SIGKILL. Ganeti itself does not take this lock; it writes runtime files by
 * atomic rename, so readers are safe either way.
 *
 * A long operation (a migration) marks its hold with `exclusive`: a sibling
 * file `<dir>/.<name>.busy` names the operation and its process, and other
 * callers fail at once with `GKD_INSTANCE_BUSY` instead of waiting for it.
 * The marker lives beside the lock directory, not in it, because
 * proper-lockfile releases with `rmdir`, which fails on a non-empty directory.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { GkdError } from '../errors';
import { RUNTIME_SUFFIX, assertInstanceName } from './instance-name';

/** Defaults of {@link withInstanceLock}. */
export const LOCK_DEFAULTS = {
  /** How long to wait for a held lock, in ms; 0 fails at once. */
  wait: 10_000,
  /** A lock not refreshed for this long is taken over (proper-lockfile's minimum is 2000). */
  stale: 10_000,
  /** Poll interval while waiting, in ms. */
  poll: 50,
} as const;

/** Options of {@link withInstanceLock}. */
export interface LockOptions {
  /** @default LOCK_DEFAULTS.wait */
  wait?: number;
  /** @default LOCK_DEFAULTS.stale */
  stale?: number;
  /**
   * Names a long operation (e.g. `"migration"`) holding the lock: while it
   * runs, other callers fail at once with `GKD_INSTANCE_BUSY` naming it
   * rather than waiting `wait` ms.
   */
  exclusive?: string;
}

/** The marker file of an exclusive hold of instance `name` in runtime dir `dir`. */
export function busyPath(dir: string, name: string): string {
  return join(dir, `.${name}.busy`);
}

/** The operation named by a live exclusive holder's marker, if any. */
function busyOperation(dir: string, name: string): string | undefined {
  let marker: { operation?: unknown; pid?: unknown };
  try {
    marker = JSON.parse(readFileSync(busyPath(dir, name), 'utf8')) as typeof marker;
  } catch {
    return undefined; // none, or half-written: treat as an ordinary hold
  }
  if (typeof marker.operation !== 'string' || typeof marker.pid !== 'number') return undefined;
  try {
    process.kill(marker.pid, 0);
  } catch (e) {
    // ESRCH: the holder died and left its marker; EPERM means it is alive.
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
  }
  return marker.operation;
}

function removeMarker(dir: string, name: string): void {
  try {
    unlinkSync(busyPath(dir, name));
  } catch {
    // none
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The lock directory of instance `name` in runtime dir `dir`. */
export function lockPath(dir: string, name: string): string {
  return join(dir, `.${name}.lock`);
}

/**
 * Runs `fn` while holding instance `name`'s lock in `dir`, and releases the
 * lock however `fn` ends.
 *
 * @throws GkdError `GKD_INSTANCE_BUSY` at once when an `exclusive` holder has it,
 *   `GKD_RUNTIME_LOCKED` when the lock stays held for `wait` ms,
 *   or when it was lost (not refreshed in time) while `fn` ran; in that case
 *   `fn`'s own result is discarded.
 */
export async function withInstanceLock<T>(
  dir: string,
  name: string,
  fn: () => Promise<T> | T,
  options: LockOptions = {},
): Promise<T> {
  assertInstanceName(name);
  const wait = options.wait ?? LOCK_DEFAULTS.wait;
  const file = join(dir, name + RUNTIME_SUFFIX);
  let compromised: Error | undefined;
  let release: (() => Promise<void>) | undefined;
  const deadline = Date.now() + wait;
  // Retried here rather than by proper-lockfile, so every retry can look for an exclusive holder.
  while (release === undefined) {
    try {
      release = await lockfile.lock(file, {
        realpath: false, // the runtime file need not exist yet
        lockfilePath: lockPath(dir, name),
        stale: options.stale ?? LOCK_DEFAULTS.stale,
        retries: 0,
        // The default handler throws from a timer and kills the process; report it instead.
        onCompromised: (err) => {
          compromised = err;
        },
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ELOCKED') {
        throw new GkdError('GKD_RUNTIME_IO', `Cannot lock instance "${name}": ${(e as Error).message}`, { field: 'name', cause: e });
      }
      const busy = busyOperation(dir, name);
      if (busy !== undefined) {
        throw new GkdError('GKD_INSTANCE_BUSY', `Cannot lock instance "${name}": a ${busy} is running on it`, {
          field: 'name',
          cause: e,
          data: { operation: busy },
        });
      }
      if (Date.now() >= deadline) {
        throw new GkdError('GKD_RUNTIME_LOCKED', `Cannot lock instance "${name}": another process has held the lock for over ${wait} ms`, {
          field: 'name',
          cause: e,
        });
      }
      await sleep(Math.min(LOCK_DEFAULTS.poll, Math.max(1, deadline - Date.now())));
    }
  }
  // A marker left by a holder that died is stale once the lock is ours.
  removeMarker(dir, name);
  const held = release;
  let result: T;
  try {
    if (options.exclusive !== undefined) {
      writeFileSync(busyPath(dir, name), JSON.stringify({ operation: options.exclusive, pid: process.pid }), { mode: 0o644 });
    }
    result = await fn();
  } finally {
    if (options.exclusive !== undefined) removeMarker(dir, name);
    await held().catch(() => undefined); // already released when compromised
  }
  if (compromised !== undefined) {
    throw new GkdError('GKD_RUNTIME_LOCKED', `Cannot trust the result for instance "${name}": its lock was lost while held: ${compromised.message}`, {
      field: 'name',
      cause: compromised,
    });
  }
  return result;
}
