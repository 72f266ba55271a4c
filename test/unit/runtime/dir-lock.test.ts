/**
 * The lock directory itself: taken by mkdir, refreshed while held, taken
 * over when stale, and never removed by a holder that lost it.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MIN_STALE_MS, tryDirLock } from '../../../plugin/runtime/dir-lock';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('tryDirLock()', () => {
  let dir: string;
  let lock: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gkd-dirlock-'));
    lock = join(dir, '.i1.lock');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('takes a free lock, refuses a held one, and frees it on release', () => {
    const a = tryDirLock(lock, 10_000);
    assert.ok(a !== undefined);
    assert.equal(a.ino, statSync(lock).ino);
    assert.equal(tryDirLock(lock, 10_000), undefined, 'held: a second taker is refused');
    let ran = 0;
    a.release(() => ran++);
    assert.equal(ran, 1, 'the caller\'s cleanup runs while the lock is still ours');
    assert.equal(existsSync(lock), false);
    a.release(() => ran++);
    assert.equal(ran, 1, 'release is idempotent');
    const b = tryDirLock(lock, 10_000);
    assert.ok(b !== undefined, 'free again');
    b.release();
  });

  it('takes over a lock not refreshed for `stale` ms (its holder was killed), not a fresh one', () => {
    mkdirSync(lock);
    assert.equal(tryDirLock(lock, MIN_STALE_MS), undefined, 'fresh: held');
    const old = new Date(Date.now() - MIN_STALE_MS - 1_000);
    utimesSync(lock, old, old);
    const oldIno = statSync(lock).ino;
    const l = tryDirLock(lock, MIN_STALE_MS);
    assert.ok(l !== undefined, 'stale: taken over');
    assert.equal(l.ino, statSync(lock).ino);
    assert.ok(statSync(lock).mtimeMs > old.getTime() + 1_000, `a new directory (was inode ${oldIno})`);
    l.release();
  });

  it('keeps a held lock fresh so no one takes it over, however long it is held', async function () {
    this.timeout(10_000);
    const l = tryDirLock(lock, MIN_STALE_MS);
    assert.ok(l !== undefined);
    const first = statSync(lock).mtimeMs;
    await sleep(MIN_STALE_MS + 600);
    assert.ok(statSync(lock).mtimeMs > first, 'the mtime moved on');
    assert.equal(tryDirLock(lock, MIN_STALE_MS), undefined, 'not stale while its holder lives');
    assert.equal(l.lost, undefined);
    l.release();
    assert.equal(existsSync(lock), false);
  });

  it('finds a lock taken over behind its back lost at release, and leaves the new holder\'s directory alone', async () => {
    const a = tryDirLock(lock, 10_000);
    assert.ok(a !== undefined);
    // Another process judged it stale, removed it and locked anew, later (a takeover comes `stale`
    // ms after the last refresh): the new directory's mtime differs even where its inode does not.
    rmdirSync(lock);
    await sleep(30);
    const b = tryDirLock(lock, 10_000);
    assert.ok(b !== undefined);
    let ran = 0;
    a.release(() => ran++);
    assert.ok(a.lost instanceof Error, 'lost');
    assert.match(a.lost.message, /taken over|removed/);
    assert.equal(ran, 0, 'the old holder\'s cleanup does not run');
    assert.equal(existsSync(lock), true, 'the new holder keeps its lock');
    assert.equal(b.lost, undefined);
    b.release();
    assert.equal(existsSync(lock), false);
  });

  it('finds a removed lock lost at its next refresh, before release, and does not touch the directory made since', async function () {
    this.timeout(10_000);
    const a = tryDirLock(lock, MIN_STALE_MS);
    assert.ok(a !== undefined);
    rmdirSync(lock);
    await sleep(MIN_STALE_MS / 2 + 300);
    assert.ok(a.lost instanceof Error, 'the refresh found it gone');
    assert.match(a.lost.message, /removed.*refresh/);
    const b = tryDirLock(lock, MIN_STALE_MS);
    assert.ok(b !== undefined, 'free for the next holder');
    const bStat = statSync(lock);
    a.release();
    assert.equal(statSync(lock).mtimeMs, bStat.mtimeMs, 'the lost holder neither touches nor removes it');
    b.release();
  });

  it('says why mkdir failed for anything but an existing lock', () => {
    assert.throws(() => tryDirLock(join(dir, 'missing', '.i1.lock'), 10_000), { code: 'ENOENT' });
  });
});
