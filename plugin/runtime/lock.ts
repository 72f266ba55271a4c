/**
 * Per-instance locking that holds across processes (the daemon, a CLI run,
 * a hook), built on `proper-lockfile`: an atomic `mkdir` of
 * `<dir>/.<name>.lock`, refreshed while held, considered stale (and taken
 * over) when its holder stopped refreshing it for `stale` ms, e.g. after a
 * SIGKILL. Ganeti itself does not take this lock; it writes runtime files by
 * atomic rename, so readers are safe either way.
 */
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
}

/** The lock directory of instance `name` in runtime dir `dir`. */
export function lockPath(dir: string, name: string): string {
  return join(dir, `.${name}.lock`);
}

/**
 * Runs `fn` while holding instance `name`'s lock in `dir`, and releases the
 * lock however `fn` ends.
 *
 * @throws GkdError `GKD_RUNTIME_LOCKED` when the lock stays held for `wait` ms,
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
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(file, {
      realpath: false, // the runtime file need not exist yet
      lockfilePath: lockPath(dir, name),
      stale: options.stale ?? LOCK_DEFAULTS.stale,
      retries: { retries: Math.ceil(wait / LOCK_DEFAULTS.poll), factor: 1, minTimeout: LOCK_DEFAULTS.poll, maxTimeout: LOCK_DEFAULTS.poll },
      // The default handler throws from a timer and kills the process; report it instead.
      onCompromised: (err) => {
        compromised = err;
      },
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOCKED') {
      throw new GkdError('GKD_RUNTIME_LOCKED', `Cannot lock instance "${name}": another process has held the lock for over ${wait} ms`, {
        field: 'name',
        cause: e,
      });
    }
    throw new GkdError('GKD_RUNTIME_IO', `Cannot lock instance "${name}": ${(e as Error).message}`, { field: 'name', cause: e });
  }
  let result: T;
  try {
    result = await fn();
  } finally {
    await release().catch(() => undefined); // already released when compromised
  }
  if (compromised !== undefined) {
    throw new GkdError('GKD_RUNTIME_LOCKED', `Cannot trust the result for instance "${name}": its lock was lost while held: ${compromised.message}`, {
      field: 'name',
      cause: compromised,
    });
  }
  return result;
}
