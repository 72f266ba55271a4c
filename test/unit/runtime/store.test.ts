import { strict as assert } from 'node:assert';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GkdError } from '../../../plugin/errors';
import { RuntimeStore, convertRuntime, lockPath, serializeRuntime } from '../../../plugin/runtime';
import type { ErrorCode } from '../../../plugin/errors';
import { hashDir } from '../../helpers/dir-hash';
import { makeTempDir, putRuntime, removeDir } from '../../helpers/runtime-dir';
import { sample210, sample216, scsi216, tiny29 } from '../../helpers/runtime-samples';

async function rejects(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<GkdError> {
  let err: GkdError | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GkdError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    err = e;
    return true;
  });
  return err!;
}

describe('RuntimeStore', () => {
  let dir: string;
  let store: RuntimeStore;
  beforeEach(() => {
    dir = makeTempDir();
    store = new RuntimeStore(dir);
  });
  afterEach(() => removeDir(dir));

  it('write() stores one line of JSON plus newline at <dir>/<name>.runtime; read() returns format, value, text, upgraded', async () => {
    await store.write('inst1.example.com', sample216());
    const text = readFileSync(join(dir, 'inst1.example.com.runtime'), 'utf8');
    assert.equal(text, serializeRuntime(sample216()));
    const r = await store.read('inst1.example.com');
    assert.equal(r.format, '2.16');
    assert.equal(r.text, text);
    assert.deepStrictEqual(r.value, sample216());
    assert.equal(r.upgraded, r.value);
    assert.deepStrictEqual(readdirSync(dir), ['inst1.example.com.runtime'], 'temp file left behind');
  });

  it('read() of an older file upgrades a separate copy', async () => {
    putRuntime(dir, 'old', JSON.stringify(sample210(), null, 2), true);
    const r = await store.read('old');
    assert.equal(r.format, '2.10');
    assert.deepStrictEqual(r.value, sample210());
    assert.deepStrictEqual(r.upgraded, convertRuntime(sample210(), '2.16').value);
    (r.upgraded[1][0] as Record<string, unknown>).mac = 'changed';
    assert.equal((r.value[1][0] as Record<string, unknown>).mac, 'aa:00:00:bf:2f:16');
  });

  it('write() of a 2.9 NIC without uuid on read reports the generated uuid', async () => {
    const f = tiny29();
    delete f[1][0].uuid;
    putRuntime(dir, 'ancient', f);
    const r = await store.read('ancient');
    assert.equal(r.changes.length, 1);
    assert.match(String(r.upgraded[1][0].uuid), /^[0-9a-f-]{36}$/);
  });

  it('write() keeps an existing file\'s owner and mode; a new file gets 0644', async function () {
    await store.write('a', sample216());
    assert.equal(statSync(join(dir, 'a.runtime')).mode & 0o7777, 0o644);
    chmodSync(join(dir, 'a.runtime'), 0o600);
    const root = process.getuid?.() === 0;
    if (root) chownSync(join(dir, 'a.runtime'), 1234, 2345);
    await store.write('a', scsi216());
    const st = statSync(join(dir, 'a.runtime'));
    assert.equal(st.mode & 0o7777, 0o600);
    if (root) assert.deepEqual([st.uid, st.gid], [1234, 2345]);
    else this.skip();
  });

  it('on tmpfs (where fsync is skipped, having nothing to do) a write gives the same bytes, owner and mode as on disk, and leaves no temp file', async function () {
    if (!existsSync('/dev/shm')) this.skip();
    const shm = mkdtempSync(join('/dev/shm', 'gkd-store-'));
    try {
      const mem = new RuntimeStore(shm);
      for (const [d, st] of [[dir, store], [shm, mem]] as const) {
        await st.write('a', sample216());
        chmodSync(join(d, 'a.runtime'), 0o640);
        const before = await st.read('a');
        await st.writeKeepingFormat('a', scsi216(), before);
      }
      assert.equal(readFileSync(join(shm, 'a.runtime'), 'utf8'), readFileSync(join(dir, 'a.runtime'), 'utf8'));
      assert.equal(statSync(join(shm, 'a.runtime')).mode & 0o7777, 0o640);
      assert.deepEqual(readdirSync(shm), ['a.runtime']);
      assert.deepEqual(readdirSync(dir), ['a.runtime']);
    } finally {
      removeDir(shm);
    }
  });

  it('write() refuses an invalid value and an unsafe name without touching the dir', async () => {
    putRuntime(dir, 'a', sample216());
    const before = hashDir(dir);
    const bad = scsi216();
    delete (bad[3][0][0].hvinfo as Record<string, unknown>).bus;
    await rejects(store.write('a', bad), 'GKD_RUNTIME_INVALID', /disks\[0\]\.hvinfo: must have required property "bus"/);
    await rejects(store.write('a', sample210() as never), 'GKD_RUNTIME_INVALID', /nics\[0\]: must have required property "hvinfo"/);
    for (const name of ['../escape', '.hidden', 'a/b', '', '-rf', 'a..b', 'x'.repeat(201), 'tab\tname']) {
      await rejects(store.write(name, sample216()), 'GKD_RUNTIME_NAME_INVALID', /^Cannot use instance name /);
      await rejects(store.read(name), 'GKD_RUNTIME_NAME_INVALID', /^Cannot use instance name /);
    }
    assert.equal(hashDir(dir), before);
  });

  it('read() and write() refuse a symlink pointing elsewhere, leaving link and target alone', async () => {
    const outside = makeTempDir();
    try {
      const target = join(outside, 'victim');
      writeFileSync(target, 'precious\n');
      symlinkSync(target, join(dir, 'evil.runtime'));
      const before = hashDir(dir) + hashDir(outside);
      await rejects(store.read('evil'), 'GKD_RUNTIME_IO', /it is a symlink to ".*victim", runtime files must be regular files/);
      await rejects(store.write('evil', sample216()), 'GKD_RUNTIME_IO', /^Cannot replace ".*evil\.runtime": it is a symlink/);
      assert.equal(hashDir(dir) + hashDir(outside), before);
    } finally {
      removeDir(outside);
    }
  });

  it('read() refuses a 50 MB file before reading it, and a FIFO without blocking', async () => {
    const big = join(dir, 'big.runtime');
    writeFileSync(big, '');
    truncateSync(big, 50 * 1000 * 1000);
    const before = hashDir(dir);
    await rejects(store.read('big'), 'GKD_RUNTIME_IO', /is 50000000 bytes, over the 16 MiB limit/);
    execFileSync('mkfifo', [join(dir, 'fifo.runtime')]);
    await rejects(store.read('fifo'), 'GKD_RUNTIME_IO', /it is not a regular file/);
    unlinkSync(join(dir, 'fifo.runtime'));
    assert.equal(hashDir(dir), before);
  });

  it('read() reports truncated JSON, a wrong member count and wrong types clearly', async () => {
    const text = serializeRuntime(sample216());
    putRuntime(dir, 'trunc', text.slice(0, text.length / 2), true);
    putRuntime(dir, 'five', [[], [], {}, [], []]);
    putRuntime(dir, 'types', [[], [{ uuid: 3, hvinfo: {} }], {}, []]);
    await rejects(store.read('trunc'), 'GKD_RUNTIME_INVALID', /^Cannot parse runtime file: /);
    await rejects(store.read('five'), 'GKD_RUNTIME_UNKNOWN_FORMAT', /has 5 members/);
    await rejects(store.read('types'), 'GKD_RUNTIME_INVALID', /nics\[0\]\.uuid: must be string/);
    await rejects(store.read('absent'), 'GKD_RUNTIME_NOT_FOUND', /no such file/);
  });

  it('write({expect}) refuses when the file was replaced or removed since read(), creating nothing', async () => {
    putRuntime(dir, 'a', sample216());
    const r = await store.read('a');
    putRuntime(dir, 'a', scsi216()); // another writer, by atomic rename in Ganeti's case
    const before = hashDir(dir);
    await rejects(store.write('a', r.upgraded, { expect: r.stamp }), 'GKD_RUNTIME_IO', /another process changed it after it was read/);
    assert.equal(hashDir(dir), before);
    const r2 = await store.read('a');
    unlinkSync(join(dir, 'a.runtime'));
    await rejects(store.write('a', r2.upgraded, { expect: r2.stamp }), 'GKD_RUNTIME_NOT_FOUND', /it disappeared after it was read/);
    assert.deepEqual(readdirSync(dir), []);
    await store.write('a', r2.upgraded, { expect: null });
    await rejects(store.write('a', r2.upgraded, { expect: null }), 'GKD_RUNTIME_IO', /a file appeared there meanwhile/);
  });

  it('remove() deletes the file once; list() shows instance names only', async () => {
    putRuntime(dir, 'b.example.com', sample216());
    putRuntime(dir, 'a', sample216());
    writeFileSync(join(dir, '.a.runtime.123.abc.tmp'), 'x');
    writeFileSync(join(dir, 'notes.txt'), 'x');
    mkdirSync(lockPath(dir, 'a'));
    symlinkSync('/nonexistent', join(dir, 'link.runtime'));
    assert.deepEqual(await store.list(), ['a', 'b.example.com', 'link']);
    assert.equal(await store.remove('a'), true);
    assert.equal(await store.remove('a'), false);
    assert.equal(existsSync(join(dir, 'a.runtime')), false);
  });

  it('withLock() serializes holders of the same instance and fails fast with wait 0', async () => {
    const order: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const first = store.withLock('a', async () => {
      order.push('first in');
      await held;
      order.push('first out');
    });
    await new Promise((r) => setTimeout(r, 50));
    await rejects(store.withLock('a', () => 1, { wait: 0 }), 'GKD_RUNTIME_LOCKED', /^Cannot lock instance "a": another process has held the lock for over 0 ms/);
    assert.equal(await store.withLock('b', () => 'other instance', { wait: 0 }), 'other instance');
    const second = store.withLock('a', () => order.push('second'), { wait: 5000 });
    setTimeout(release, 100);
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first in', 'first out', 'second']);
    await assert.rejects(store.withLock('a', () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await store.withLock('a', () => 'free again', { wait: 0 }), 'free again');
    assert.equal(existsSync(lockPath(dir, 'a')), false);
  });

  it('withLock() holds across processes', async () => {
    const lockModule = join(__dirname, '..', '..', '..', 'plugin', 'runtime', 'lock.js');
    // The child marks, in a file, the moment it lets go (just before its release).
    const letGo = join(dir, 'child-lets-go');
    const script = `require(${JSON.stringify(lockModule)}).withInstanceLock(${JSON.stringify(dir)}, 'x', () => { process.stdout.write('held\\n'); return new Promise((r) => setTimeout(() => { require('fs').writeFileSync(${JSON.stringify(letGo)}, ''); r(); }, 600)); })`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await rejects(store.withLock('x', () => 1, { wait: 0 }), 'GKD_RUNTIME_LOCKED', /another process has held the lock/);
    assert.equal(await store.withLock('x', () => (existsSync(letGo) ? 'mine, after the child let go' : 'mine, while the child held it'), { wait: 5000 }), 'mine, after the child let go');
    await exited;
  });
});
