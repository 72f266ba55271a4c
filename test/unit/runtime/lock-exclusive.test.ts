import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyPath, withInstanceLock } from '../../../plugin/runtime';

describe('withInstanceLock() exclusive holds', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gkd-lock-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('fails other callers at once with GKD_INSTANCE_BUSY naming the operation', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const holder = withInstanceLock(dir, 'inst1', () => gate, { exclusive: 'migration' });
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await assert.rejects(withInstanceLock(dir, 'inst1', () => 1, { wait: 120_000 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'GKD_INSTANCE_BUSY');
      assert.match(e.message, /a migration is running/);
      return true;
    });
    // Refused at once: waiting would take the whole 120 s lock wait.
    assert.ok(Date.now() - t0 < 30_000, 'did not wait for the lock');
    release();
    await holder;
    assert.equal(existsSync(busyPath(dir, 'inst1')), false, 'marker removed on release');
    assert.equal(await withInstanceLock(dir, 'inst1', () => 2), 2);
  });

  it('makes ordinary holds wait, then time out with GKD_RUNTIME_LOCKED', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const holder = withInstanceLock(dir, 'inst1', () => gate);
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(withInstanceLock(dir, 'inst1', () => 1, { wait: 200 }), { code: 'GKD_RUNTIME_LOCKED' });
    const waiter = withInstanceLock(dir, 'inst1', () => 3, { wait: 5_000 });
    release();
    await holder;
    assert.equal(await waiter, 3);
  });

  it('ignores a marker left by a process that is gone', async () => {
    writeFileSync(busyPath(dir, 'inst1'), JSON.stringify({ operation: 'migration', pid: 2 ** 22 + 12345 }));
    assert.equal(await withInstanceLock(dir, 'inst1', () => 4, { wait: 0 }), 4);
    assert.equal(existsSync(busyPath(dir, 'inst1')), false);
  });
});
