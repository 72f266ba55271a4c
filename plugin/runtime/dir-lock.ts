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
 * mtime it last set. Both are needed: a filesystem may give a new directory
 * the inode just freed, while a takeover comes `stale` ms after the holder's
 * last refresh, so the new directory's mtime differs. A lost lock is never
 * removed on release: it may be someone else's now. A refresh that fails
 * for another reason (an I/O error) is retried every second, as
 * proper-lockfile did, and the lock counts as lost once it went `stale` ms
 * without one.
 */
import { existsSync, mkdirSync, rmdirSync, statSync, utimesSync } from 'node:fs';

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
  const stale = Math.max(Number.isFinite(staleMs) ? staleMs : 0, MIN_STALE_MS);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      mkdirSync(path);
    } catch (e) {
      if (code(e) !== 'EEXIST') throw e;
      if (attempt === 1 || !removeIfStale(path, stale)) return undefined;
      continue;
    }
    return HeldDirLock.made(path, stale);
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
  return removeIfUnchanged(path, st) || !existsSync(path);
}

/**
 * Removes the lock directory at `path` if it is still the one `seen` described
 * (a stale lock, or one whose holder died); true when this call removed it.
 * Another waiter may have taken it over and locked anew since `seen`: its
 * directory may even have the freed inode, but it is fresh, so its mtime
 * differs, and it is left alone.
 */
export function removeIfUnchanged(path: string, seen: { ino: number; mtimeMs: number }): boolean {
  try {
    const now = statSync(path);
    if (now.ino !== seen.ino || now.mtimeMs !== seen.mtimeMs) return false;
    rmdirSync(path);
    return true;
  } catch {
    return false; // gone meanwhile, or cannot be removed
  }
}

/** Retry interval of a refresh that failed for another reason than the lock being gone. */
const REFRESH_RETRY_MS = 1_000;

class HeldDirLock implements DirLock {
  readonly #path: string;
  readonly #stale: number;
  readonly ino: number;
  #mtimeMs: number;
  #refreshedAt = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #lost: Error | undefined;
  #released = false;

  private constructor(path: string, stale: number, ino: number, mtimeMs: number) {
    this.#path = path;
    this.#stale = stale;
    this.ino = ino;
    this.#mtimeMs = mtimeMs;
    this.#schedule(stale / 2);
  }

  /** The lock for the directory this process just made; removed again when it cannot be read back. */
  static made(path: string, stale: number): HeldDirLock {
    let st;
    try {
      st = statSync(path);
    } catch (e) {
      try {
        rmdirSync(path);
      } catch {
        // not there to remove
      }
      throw e;
    }
    return new HeldDirLock(path, stale, st.ino, st.mtimeMs);
  }

  get lost(): Error | undefined {
    return this.#lost;
  }

  #schedule(delay: number): void {
    // Unreferenced: a held lock alone does not keep the process running.
    this.#timer = setTimeout(() => this.#refresh(), delay);
    this.#timer.unref();
  }

  #refresh(): void {
    if (this.#released) return;
    const state = this.#check('refresh');
    if (state === 'lost') return;
    let failure: unknown;
    if (state === 'ours') {
      try {
        const now = new Date();
        utimesSync(this.#path, now, now);
        this.#mtimeMs = statSync(this.#path).mtimeMs;
        this.#refreshedAt = Date.now();
        this.#schedule(this.#stale / 2);
        return;
      } catch (e) {
        if (code(e) === 'ENOENT') {
          this.#lost = new Error(`Lock "${this.#path}" was removed by another process (found at refresh)`);
          return;
        }
        failure = e;
      }
    }
    if (Date.now() - this.#refreshedAt >= this.#stale) {
      this.#lost = new Error(`Cannot refresh lock "${this.#path}" for ${this.#stale} ms, so others may take it over${failure === undefined ? '' : `: ${(failure as Error).message}`}`);
      return;
    }
    this.#schedule(Math.min(REFRESH_RETRY_MS, this.#stale / 2));
  }

  /**
   * `ours` when the directory is the one this holder made and last touched; `lost` (and
   * `lost` set) when it is gone or another's; `unknown` when it cannot be read (an I/O error).
   */
  #check(when: string): 'ours' | 'lost' | 'unknown' {
    if (this.#lost !== undefined) return 'lost';
    let st;
    try {
      st = statSync(this.#path);
    } catch (e) {
      if (code(e) !== 'ENOENT') return 'unknown';
      this.#lost = new Error(`Lock "${this.#path}" was removed by another process (found at ${when})`);
      return 'lost';
    }
    if (st.ino !== this.ino || st.mtimeMs !== this.#mtimeMs) {
      this.#lost = new Error(`Lock "${this.#path}" was taken over by another process (found at ${when})`);
      return 'lost';
    }
    return 'ours';
  }

  release(beforeRemove?: () => void): void {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    // Removed only when known to be ours; one that cannot be read is left to go stale.
    if (this.#check('release') !== 'ours') return;
    beforeRemove?.();
    try {
      rmdirSync(this.#path);
    } catch {
      // gone meanwhile: nothing left to release
    }
  }
}
