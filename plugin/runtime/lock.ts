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
 *
 * A holder also writes `<dir>/.<name>.lock.pid` (its pid and the lock
 * directory's inode). A waiter that finds that process gone takes the lock
 * over at once instead of waiting out the staleness: a daemon killed in the
 * middle of an operation must not block the next one (and its repair) for
 * 10 s. The inode ties the pid to this very lock directory, so a pid file
 * left by an earlier holder never condemns a newer, live one.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, rmdirSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { GkdError } from '../errors';
import { processExists } from '../process-exists';
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

type Callback<T> = (err: NodeJS.ErrnoException | null, value?: T) => void;

function callSync<T>(fn: () => T, cb: Callback<T>): void {
  let value: T | undefined;
  let err: NodeJS.ErrnoException | null = null;
  try {
    value = fn();
  } catch (e) {
    err = e as NodeJS.ErrnoException;
  }
  process.nextTick(() => cb(err, value));
}

/**
 * The file calls proper-lockfile makes, done synchronously: the lock is a
 * directory in a local runtime dir, and each call takes microseconds, while
 * an asynchronous one waits for a thread-pool round trip, most of the
 * lock's cost on a busy host (every hot-add takes and releases it).
 * Callbacks still run on a later tick, as proper-lockfile expects.
 */
const LOCK_FS = {
  realpath: (p: string, cb: Callback<string>) => callSync(() => realpathSync(p), cb),
  mkdir: (p: string, cb: Callback<void>) => callSync(() => void mkdirSync(p), cb),
  rmdir: (p: string, cb: Callback<void>) => callSync(() => rmdirSync(p), cb),
  stat: (p: string, cb: Callback<ReturnType<typeof statSync>>) => callSync(() => statSync(p), cb),
  utimes: (p: string, a: Date, m: Date, cb: Callback<void>) => callSync(() => utimesSync(p, a, m), cb),
  rmdirSync,
};

/** The holder file of instance `name`'s lock (see the file comment). */
export function holderPath(dir: string, name: string): string {
  return `${lockPath(dir, name)}.pid`;
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/**
 * Removes the lock directory when the holder file names a dead process and
 * this very directory; true when it did (the caller retries at once).
 */
function takeOverFromDeadHolder(dir: string, name: string): boolean {
  let holder: { pid?: unknown; ino?: unknown };
  try {
    holder = JSON.parse(readFileSync(holderPath(dir, name), 'utf8')) as typeof holder;
  } catch {
    return false; // none yet (the holder is between mkdir and writing it) or half-written
  }
  if (typeof holder.pid !== 'number' || typeof holder.ino !== 'number' || holder.pid === process.pid) return false;
  if (processExists(holder.pid)) return false;
  const lock = lockPath(dir, name);
  // Checked again right before removing: another waiter may have taken over and locked anew.
  if (inodeOf(lock) !== holder.ino) return false;
  try {
    rmdirSync(lock);
  } catch {
    return false;
  }
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
  const file = join(dir, name + RUNTIME_SUFFIX);
  let compromised: Error | undefined;
  let release: (() => Promise<void>) | undefined;
  let contended = false;
  const deadline = Date.now() + wait;
  // Retried here rather than by proper-lockfile, so every retry can look for an exclusive holder.
  while (release === undefined) {
    try {
      release = await lockfile.lock(file, {
        realpath: false, // the runtime file need not exist yet
        lockfilePath: lockPath(dir, name),
        stale: options.stale ?? LOCK_DEFAULTS.stale,
        retries: 0,
        fs: LOCK_FS,
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
      if (takeOverFromDeadHolder(dir, name)) continue;
      if (!contended) {
        contended = true;
        options.onContended?.();
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
  try {
    writeFileSync(holderPath(dir, name), JSON.stringify({ pid: process.pid, ino: inodeOf(lockPath(dir, name)) }), { mode: 0o644 });
  } catch {
    // Without it a dead holder's lock is taken over only once stale: slower, still correct.
  }
  const held = release;
  let result: T;
  try {
    if (options.exclusive !== undefined) {
      writeFileSync(busyPath(dir, name), JSON.stringify({ operation: options.exclusive, pid: process.pid }), { mode: 0o644 });
    }
    result = await fn();
  } finally {
    if (options.exclusive !== undefined) removeMarker(dir, name);
    if (compromised === undefined) {
      try {
        unlinkSync(holderPath(dir, name));
      } catch {
        // already gone
      }
    }
    await held().catch(() => undefined); // already released when compromised
  }
  // Lost after the work was done: the effects are applied (and recorded), so reporting a failure
  // would be false (a retried hot-add would then meet GKD_DEVICE_EXISTS). Say so to the caller's log.
  if (compromised !== undefined) options.onLost?.(compromised);
  return result;
}
