/**
 * Taking over the lock of a holder that died, and keeping the result of
 * work whose lock was lost after it was done.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { holderPath } from '../../../plugin/runtime/lock';
import { lockPath, withInstanceLock } from '../../../plugin/runtime';

/** A pid that is not running (a child that already exited). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('withInstanceLock() takeover', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gkd-lock-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('takes over at once from a holder whose process is gone (no 10 s staleness)', async () => {
    mkdirSync(lockPath(dir, 'i1'));
    writeFileSync(holderPath(dir, 'i1'), JSON.stringify({ pid: deadPid(), ino: statSync(lockPath(dir, 'i1')).ino }));
    const r = await withInstanceLock(dir, 'i1', () => 'done', { wait: 1_000 });
    assert.equal(r, 'done');
    assert.equal(existsSync(lockPath(dir, 'i1')), false);
    assert.equal(existsSync(holderPath(dir, 'i1')), false, 'the holder file goes with the lock');
  });

  it('does not take over from a live holder, nor when the holder file names another lock directory', async () => {
    mkdirSync(lockPath(dir, 'live'));
    writeFileSync(holderPath(dir, 'live'), JSON.stringify({ pid: process.ppid, ino: statSync(lockPath(dir, 'live')).ino }));
    await assert.rejects(withInstanceLock(dir, 'live', () => 'x', { wait: 200 }), { code: 'GKD_RUNTIME_LOCKED' });
    // A holder file left by an earlier, dead holder of an older lock directory.
    mkdirSync(lockPath(dir, 'old'));
    writeFileSync(holderPath(dir, 'old'), JSON.stringify({ pid: deadPid(), ino: statSync(lockPath(dir, 'old')).ino + 1 }));
    await assert.rejects(withInstanceLock(dir, 'old', () => 'x', { wait: 200 }), { code: 'GKD_RUNTIME_LOCKED' });
  });

  it('returns the result of work whose lock was found lost afterwards, and tells onLost', async () => {
    let lost: Error | undefined;
    const r = await withInstanceLock(dir, 'i2', async () => {
      // Someone removes the lock behind our back; the holder notices on its next refresh.
      rmSync(lockPath(dir, 'i2'), { recursive: true, force: true });
      await new Promise((res) => setTimeout(res, 2_600));
      return 'applied';
    }, { stale: 2_000, onLost: (e) => (lost = e) });
    assert.equal(r, 'applied');
    assert.ok(lost instanceof Error);
  });
});
