/**
 * A cross-process lock that is a directory: taken by an atomic `mkdir`,
 * kept fresh by touching the directory's mtime every `stale / 2` ms while
 * held, and taken over by anyone who finds it not refreshed for `stale` ms
 * (its holder was killed). The same protocol as `proper-lockfile` (which an
 * earlier release used on the same paths, so the two exclude each other
 * during an upgrade), done with synchronous calls and no retry machinery:
 * on a local runtime dir each call takes microseconds, and the lock is
 * taken and released on every hot-add.
 *
 * A holder notices it lost the lock (the directory was removed, or taken
 * over after a stall and recreated) when it refreshes and when it releases:
 * the directory is no longer the one it made (inode) or no longer has the
 * mtime it last set. A lost lock is never removed on release: it may be
 * someone else's now.
 */
import { mkdirSync, rmdirSync, statSync, utimesSync } from 'node:fs';

/** proper-lockfile's floor for `stale`, kept so both judge staleness alike. */
export const MIN_STALE_MS = 2_000;

/** A lock directory this process holds. */
export interface DirLock {
  /** The directory's inode (a holder file names it, see lock.ts). */
  readonly ino: number;
  /** Why the lock was found lost, once it was (at a refresh or at release). */
  readonly lost: Error | undefined;
  /**
   * Stops refreshing and, unless the lock was lost, runs `beforeRemove` (the
   * caller's own files beside the lock) and removes the directory; idempotent.
   */
  release(beforeRemove?: () => void): void;
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/**
 * Takes the lock at `path` if it is free or stale; `undefined` when another
 * holder has it. Throws what `mkdir` throws other than EEXIST.
 */
export function tryDirLock(path: string, staleMs: number): DirLock | undefined {
  const stale = Math.max(staleMs, MIN_STALE_MS);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      mkdirSync(path);
    } catch (e) {
      if (code(e) !== 'EEXIST') throw e;
      if (attempt === 1 || !removeIfStale(path, stale)) return undefined;
      continue;
    }
    return new HeldDirLock(path, stale);
  }
  return undefined;
}

/** Removes the lock directory when it was not refreshed for `stale` ms; true when it is gone (the caller retries once). */
function removeIfStale(path: string, stale: number): boolean {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    return code(e) === 'ENOENT'; // released meanwhile
  }
  if (st.mtimeMs >= Date.now() - stale) return false;
  try {
    // Checked again right before removing: another waiter may have taken it over and locked anew.
    if (statSync(path).ino !== st.ino) return false;
    rmdirSync(path);
  } catch (e) {
    return code(e) === 'ENOENT';
  }
  return true;
}

class HeldDirLock implements DirLock {
  readonly #path: string;
  readonly ino: number;
  #mtimeMs: number;
  #timer: NodeJS.Timeout | undefined;
  #lost: Error | undefined;
  #released = false;

  constructor(path: string, stale: number) {
    this.#path = path;
    const st = statSync(path);
    this.ino = st.ino;
    this.#mtimeMs = st.mtimeMs;
    this.#schedule(stale / 2);
  }

  get lost(): Error | undefined {
    return this.#lost;
  }

  #schedule(every: number): void {
    // Unreferenced: a held lock alone does not keep the process running.
    this.#timer = setTimeout(() => {
      if (this.#released || !this.#stillOurs('refresh')) return;
      try {
        const now = new Date();
        utimesSync(this.#path, now, now);
        this.#mtimeMs = statSync(this.#path).mtimeMs;
      } catch (e) {
        this.#lost ??= new Error(`Cannot refresh lock "${this.#path}": ${(e as Error).message}`);
        return;
      }
      this.#schedule(every);
    }, every);
    this.#timer.unref();
  }

  /** False (and `lost` set) when the directory is gone or is not the one this holder made and last touched. */
  #stillOurs(when: string): boolean {
    if (this.#lost !== undefined) return false;
    let st;
    try {
      st = statSync(this.#path);
    } catch (e) {
      this.#lost = new Error(`Lock "${this.#path}" was removed by another process (found at ${when}: ${code(e) ?? (e as Error).message})`);
      return false;
    }
    if (st.ino !== this.ino || st.mtimeMs !== this.#mtimeMs) {
      this.#lost = new Error(`Lock "${this.#path}" was taken over by another process (found at ${when})`);
      return false;
    }
    return true;
  }

  release(beforeRemove?: () => void): void {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    if (!this.#stillOurs('release')) return;
    beforeRemove?.();
    try {
      rmdirSync(this.#path);
    } catch {
      // gone meanwhile: nothing left to release
    }
  }
}
