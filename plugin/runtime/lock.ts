/**
 * Per-instance locking that holds across processes (the daemon, a CLI run,
 * a hook): an atomic `mkdir` of `<dir>/.<name>.lock` (dir-lock.ts),
 * refreshed while held, considered stale (and taken over) when its holder
 * stopped refreshing it for `stale` ms, e.g. after a SIGKILL. Ganeti itself
 * does not take this lock; it writes runtime files by atomic rename, so
 * readers are safe either way.
 *
 * A long operation (a migration) marks its hold with `exclusive`: a sibling
 * file `<dir>/.<name>.busy` names the operation and its process, and other
 * callers fail at once with `GKD_INSTANCE_BUSY` instead of waiting for it.
 * The marker lives beside the lock directory, not in it, because the lock
 * is released with `rmdir` (also by earlier releases, which used
 * proper-lockfile), and that fails on a non-empty directory.
 *
 * A holder also writes `<dir>/.<name>.lock.pid` (its pid and the lock
 * directory's inode). A waiter that finds that process gone takes the lock
 * over at once instead of waiting out the staleness: a daemon killed in the
 * middle of an operation must not block the next one (and its repair) for
 * 10 s. The inode ties the pid to this very lock directory, so a pid file
 * left by an earlier holder never condemns a newer, live one.
 */
import { existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GkdError } from '../errors';
import { processExists } from '../process-exists';
import { removeIfUnchanged, tryDirLock, type DirLock } from './dir-lock';
import { assertInstanceName } from './instance-name';

/** Defaults of {@link withInstanceLock}. */
export const LOCK_DEFAULTS = {
  /** How long to wait for a held lock, in ms; 0 fails at once. */
  wait: 10_000,
  /** A lock not refreshed for this long is taken over (at least MIN_STALE_MS, 2000). */
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
   * Called when the lock turned out lost (not refreshed in time) after `fn`
   * finished: `fn`'s effects are applied and its result is still returned,
   * so the caller can log this. @default ignore
   */
  onLost?: (err: Error) => void;
  /**
   * Names a long operation (e.g. `"migration"`) holding the lock: while it
   * runs, other callers fail at once with `GKD_INSTANCE_BUSY` naming it
   * rather than waiting `wait` ms.
   */
  exclusive?: string;
  /** Called once when the lock is found held by another process, before waiting for it. */
  onContended?: () => void;
}

/**
 * How a read-modify-write of an instance holds it: by default its lock
 * (`RuntimeStore.withLock`); the daemon passes its per-instance queue
 * (HotplugEngine.exclusive), which holds the same lock, bounds the queue
 * and finishes a dead process's half-done work first.
 */
export type InstanceHold = <T>(fn: () => Promise<T>) => Promise<T>;

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
  // A holder that died left its marker: an ordinary hold now.
  return processExists(marker.pid) ? marker.operation : undefined;
}

function removeMarker(dir: string, name: string): void {
  const marker = busyPath(dir, name);
  // Looked for first: a marker is rare (a dead exclusive holder's, or one's own), and a failed
  // unlink builds an exception on every lock taken.
  if (!existsSync(marker)) return;
  try {
    unlinkSync(marker);
  } catch {
    // gone meanwhile
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The holder file of instance `name`'s lock (see the file comment). */
export function holderPath(dir: string, name: string): string {
  return `${lockPath(dir, name)}.pid`;
}

/**
 * Removes the lock directory when the holder file names a dead process and
 * this very directory; true when it did (the caller retries at once).
 */
function takeOverFromDeadHolder(dir: string, name: string): boolean {
  const lock = lockPath(dir, name);
  // The directory as it is before the holder file is read: removed below only if it is still
  // this version (another waiter may have taken over and locked anew in between).
  let seen;
  try {
    seen = statSync(lock);
  } catch {
    return false; // released meanwhile: the caller's next try takes it
  }
  let holder: { pid?: unknown; ino?: unknown };
  try {
    holder = JSON.parse(readFileSync(holderPath(dir, name), 'utf8')) as typeof holder;
  } catch {
    return false; // none yet (the holder is between mkdir and writing it) or half-written
  }
  if (typeof holder.pid !== 'number' || holder.ino !== seen.ino || holder.pid === process.pid) return false;
  if (processExists(holder.pid)) return false;
  if (!removeIfUnchanged(lock, seen)) return false;
  try {
    unlinkSync(holderPath(dir, name));
  } catch {
    // another waiter removed it
  }
  return true;
}

/** The lock directory of instance `name` in runtime dir `dir`. */
export function lockPath(dir: string, name: string): string {
  return join(dir, `.${name}.lock`);
}

/**
 * Runs `fn` while holding instance `name`'s lock in `dir`, and releases the
 * lock however `fn` ends.
 *
 * @throws GkdError `GKD_INSTANCE_BUSY` at once when an `exclusive` holder has it,
 *   `GKD_RUNTIME_LOCKED` when the lock stays held for `wait` ms (a holder
 *   whose process is gone is taken over at once). A lock found lost after
 *   `fn` finished does not discard `fn`'s result (see `onLost`).
 */
export async function withInstanceLock<T>(
  dir: string,
  name: string,
  fn: () => Promise<T> | T,
  options: LockOptions = {},
): Promise<T> {
  assertInstanceName(name);
  const wait = options.wait ?? LOCK_DEFAULTS.wait;
  const lock = lockPath(dir, name);
  let held: DirLock | undefined;
  let contended = false;
  const deadline = Date.now() + wait;
  while (held === undefined) {
    try {
      held = tryDirLock(lock, options.stale ?? LOCK_DEFAULTS.stale);
    } catch (e) {
      throw new GkdError('GKD_RUNTIME_IO', `Cannot lock instance "${name}": ${(e as Error).message}`, { field: 'name', cause: e });
    }
    if (held !== undefined) break;
    if (takeOverFromDeadHolder(dir, name)) continue;
    if (!contended) {
      contended = true;
      options.onContended?.();
    }
    const busy = busyOperation(dir, name);
    if (busy !== undefined) {
      throw new GkdError('GKD_INSTANCE_BUSY', `Cannot lock instance "${name}": a ${busy} is running on it`, {
        field: 'name',
        data: { operation: busy },
      });
    }
    if (Date.now() >= deadline) {
      throw new GkdError('GKD_RUNTIME_LOCKED', `Cannot lock instance "${name}": another process has held the lock for over ${wait} ms`, {
        field: 'name',
      });
    }
    await sleep(Math.min(LOCK_DEFAULTS.poll, Math.max(1, deadline - Date.now())));
  }
  // A marker left by a holder that died is stale once the lock is ours.
  removeMarker(dir, name);
  try {
    writeFileSync(holderPath(dir, name), JSON.stringify({ pid: process.pid, ino: held.ino }), { mode: 0o644 });
  } catch {
    // Without it a dead holder's lock is taken over only once stale: slower, still correct.
  }
  let result: T;
  try {
    if (options.exclusive !== undefined) {
      writeFileSync(busyPath(dir, name), JSON.stringify({ operation: options.exclusive, pid: process.pid }), { mode: 0o644 });
    }
    result = await fn();
  } finally {
    if (options.exclusive !== undefined) removeMarker(dir, name);
    // The holder file goes first (a waiter reading it between the two finds a live pid and waits),
    // and only while the lock is still ours: a lost lock's holder file may be the new holder's.
    held.release(() => {
      try {
        unlinkSync(holderPath(dir, name));
      } catch {
        // already gone
      }
    });
  }
  // Lost after the work was done: the effects are applied (and recorded), so reporting a failure
  // would be false (a retried hot-add would then meet GKD_DEVICE_EXISTS). Say so to the caller's log.
  if (held.lost !== undefined) options.onLost?.(held.lost);
  return result;
}
