/**
 * The operations on an instance besides hot-add and hot-remove, through the
 * real daemon on real (paused) QEMU:
 * - disk.resize, cdrom.change and migration.start first finish what a
 *   killed daemon left half done: a second daemon on the same runtime dir,
 *   killed between blockdev-add and device_add (fault point
 *   `disk-add:backend`), leaves an open journal entry and a block node in
 *   QEMU; the next operation of the first daemon must leave neither;
 * - plain instance.verify takes no lock when nothing is in flight: it
 *   answers while a migration holds the instance exclusively (and its
 *   journal entry is open) and while another process holds the lock;
 * - disk.resize, cdrom.change and instance.verify with repair wait in the
 *   instance's queue: past its bound they are answered GKD_OVERLOADED, and
 *   when their caller leaves before their turn they never run
 *   (GKD_CANCELLED in the daemon's log, nothing changed).
 * The QEMU has an empty IDE CD-ROM drive, recorded in its runtime file's
 * kvm_cmd as Ganeti records the drives it starts.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { findLeaks } from '../../../plugin/migration';
import { deviceId } from '../../../plugin/planner';
import { RpcCallError, RpcClient } from '../../../plugin/rpc';
import { Journal, type RuntimeStore } from '../../../plugin/runtime';
import type { InstanceSpec } from '../../../plugin/types';
import { startDaemonInstance, useRigCleanup } from '../../helpers/daemon-guest';
import { makeImage } from '../../helpers/plan-vm';
import { useQemuCleanup, type TestQemu } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';
import { spawnDaemon, tempDir, untilDaemon, type DaemonProcess } from './daemon-process';

const NAME = 'queue1.example.com';
const MIB = 1024 * 1024;
/** What the daemon's queue holds per instance (HOTPLUG_DEFAULTS.maxQueued). */
const MAX_QUEUED = 32;
/** The drive Ganeti's kvm_cmd names for cdrom_image_path with cdrom_disk_type ide (empty here). */
const CDROM_DRIVE = 'if=ide,index=0,media=cdrom';

interface Rig {
  vm: TestQemu;
  dir: string;
  store: RuntimeStore;
  spec: InstanceSpec;
  d: DaemonProcess;
  c: RpcClient;
}

/** The daemon's confinement: the test's images live in its temp dir. */
function roots(dir: string): Record<string, string> {
  return { GKD_STORAGE_ROOTS: `${dir}:/dev/` };
}

const rigs: Rig[] = [];

async function rig(): Promise<Rig> {
  const spec = makeSpec({ name: NAME, disks: 2, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } });
  const { vm, dir, store } = await startDaemonInstance(spec, { paused: true, extraArgv: () => ['-drive', CDROM_DRIVE] });
  const d = await spawnDaemon({ dir, env: roots(dir) });
  const c = await RpcClient.connect(d.socket);
  const r = { vm, dir, store, spec, d, c };
  rigs.push(r);
  return r;
}

/** The code of a GKD error answer ('ok' for a result). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof RpcCallError) return String((e.data as { code?: string } | undefined)?.code ?? e.code);
    throw e;
  }
}

/**
 * A second daemon on the same runtime and run dirs, killed by its fault point between blockdev-add
 * and device_add of a new disk: returns the block node it left behind (journal entry still open).
 */
async function killedMidAdd(r: Rig, uuid: string): Promise<string> {
  const b = await spawnDaemon({
    dir: tempDir('gkd-queue-killed-'),
    args: ['--runtime-dir', join(r.dir, 'conf'), '--run-dir', join(r.dir, 'run')],
    env: { ...roots(r.dir), GKD_FAULT_POINT: 'disk-add:backend' },
  });
  const cb = await RpcClient.connect(b.socket);
  await assert.rejects(cb.call('disk.add', { name: NAME, disk: { uuid, mode: 'rw', path: makeImage(join(r.dir, `${uuid}.raw`)) } }), /Connection to the daemon closed/);
  await cb.close().catch(() => undefined);
  await b.stop();
  assert.equal(b.child.signalCode, 'SIGKILL', `the second daemon did not reach disk-add:backend: ${b.log().slice(-2000)}`);
  const id = deviceId('disk', uuid, 'disk');
  assert.deepEqual((await findLeaks(r.vm.qmp)).map((l) => l.name), [id], 'the killed add left its block node');
  assert.deepEqual((await new Journal(r.store.dir).read(NAME)).map((e) => [e.op, e.id]), [['add', id]], 'and its journal entry');
  return id;
}

/** Nothing of the killed add is left: its entry closed, its block node deleted. */
async function assertReconciled(r: Rig): Promise<void> {
  assert.deepEqual(await new Journal(r.store.dir).read(NAME), [], 'journal entry still open');
  assert.deepEqual(await findLeaks(r.vm.qmp), [], 'block node still in QEMU');
}

interface BlockInfo {
  device?: string;
  qdev?: string;
  inserted?: { file?: string; image?: { 'virtual-size'?: number } };
}

async function blocks(r: Rig): Promise<BlockInfo[]> {
  return r.vm.qmp.execute<BlockInfo[]>('query-block');
}

/** The size QEMU sees of the runtime file's disk `index`. */
async function diskSize(r: Rig, index: number): Promise<number | undefined> {
  const id = deviceId('disk', r.spec.disks[index].uuid, 'disk');
  return (await blocks(r)).find((b) => b.qdev === id || b.qdev === `/machine/peripheral/${id}`)?.inserted?.image?.['virtual-size'];
}

/** The image in the CD-ROM drive, undefined when it is empty. */
async function cdromFile(r: Rig): Promise<string | undefined> {
  return (await blocks(r)).find((b) => b.device === 'ide0-cd0')?.inserted?.file;
}

/** The path of disk `index`'s image as the runtime file names it. */
async function diskPath(r: Rig, index: number): Promise<string> {
  return (await r.store.read(NAME)).upgraded[3][index][1];
}

/** Holds instance NAME's lock from this process until the returned function is called. */
async function holdLock(r: Rig, exclusive?: string): Promise<{ release: () => Promise<void> }> {
  let letGo!: () => void;
  let held!: () => void;
  const taken = new Promise<void>((res) => (held = res));
  const hold = r.store.withLock(NAME, () => {
    held();
    return new Promise<void>((res) => (letGo = res));
  }, exclusive === undefined ? {} : { exclusive });
  await taken;
  return { release: async () => { letGo(); await hold; } };
}

/** The daemon's log lines of finished calls of `method` (pino JSON, `msg: "call"`). */
function callLines(d: DaemonProcess, method: string): Array<{ outcome: string; client: number }> {
  return d.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string; method?: string; outcome?: string; client: number })
    .filter((l) => l.msg === 'call' && l.method === method).map((l) => ({ outcome: String(l.outcome), client: l.client }));
}

describe('operations on an instance: reconcile first, one queue, verify without the lock (real daemon, real QEMU)', function () {
  this.timeout(120_000);
  useQemuCleanup();
  useRigCleanup(rigs);

  it('disk.resize finishes a killed daemon\'s half-done hot-add first, then resizes', async () => {
    const r = await rig();
    await killedMidAdd(r, uuidN(0xd1));
    truncateSync(await diskPath(r, 0), 2 * MIB);
    const res = await r.c.call<{ before: number; after: number; resized: boolean }>('disk.resize', { name: NAME, index: 0 });
    assert.deepEqual([res.before, res.after, res.resized], [MIB, 2 * MIB, true]);
    await assertReconciled(r);
    assert.equal(await diskSize(r, 0), 2 * MIB);
  });

  it('cdrom.change finishes a killed daemon\'s half-done hot-add first, then changes the medium', async () => {
    const r = await rig();
    await killedMidAdd(r, uuidN(0xd2));
    const iso = makeImage(join(r.dir, 'a.iso'), 64 * 1024);
    const res = await r.c.call<{ before: string | null; after: string | null }>('cdrom.change', { name: NAME, slot: 1, path: iso });
    assert.deepEqual([res.before, res.after], [null, iso]);
    await assertReconciled(r);
    assert.equal(await cdromFile(r), iso);
    assert.ok((await r.store.read(NAME)).upgraded[0].some((a) => String(a).includes(`file=${iso}`)), 'the drive recorded in kvm_cmd');
  });

  it('migration.start finishes a killed daemon\'s half-done hot-add before anything else', async () => {
    const r = await rig();
    await killedMidAdd(r, uuidN(0xd3));
    // Nothing listens there (a path under the daemon's run dir, where a migration socket may be): the migration
    // itself fails, after the reconcile ran under its hold.
    assert.equal(await codeOf(r.c.call('migration.start', { name: NAME, uri: `unix:${join(r.dir, 'run', 'nowhere.sock')}` })), 'GKD_MIGRATION_FAILED');
    await assertReconciled(r);
  });

  it('plain instance.verify answers during a migration\'s exclusive hold and another process\'s lock, and reconciles a dead process\'s leftovers', async () => {
    const r = await rig();
    // A migration in another live process: its exclusive hold, and its journal entry open.
    const migration = await holdLock(r, 'migration');
    const journal = new Journal(r.store.dir);
    const entry = await journal.open(NAME, { op: 'migration', step: 'migrate', socket: join(r.dir, 'run', 'ctrl', `${NAME}.qmp`), uri: 'tcp:192.0.2.1:8102' });
    try {
      const v = await r.c.call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name: NAME });
      assert.deepEqual(v.differences, []);
      assert.equal(v.clean, true);
      // Repair rewrites the file: it still may not run during the migration.
      assert.equal(await codeOf(r.c.call('instance.verify', { name: NAME, repair: true })), 'GKD_INSTANCE_BUSY');
    } finally {
      await journal.close(NAME, entry.seq);
      await migration.release();
    }
    // An ordinary hold of another process (a CLI write, a hook): released only after verify answered.
    const other = await holdLock(r);
    let answered = false;
    try {
      const v = await r.c.call<{ clean: boolean }>('instance.verify', { name: NAME });
      answered = true;
      assert.equal(v.clean, true);
    } finally {
      await other.release();
    }
    assert.ok(answered);
    // What a dead process left half done is still finished before the comparison.
    await killedMidAdd(r, uuidN(0xd4));
    const v = await r.c.call<{ clean: boolean; leaks: unknown[] }>('instance.verify', { name: NAME });
    assert.deepEqual([v.clean, v.leaks], [true, []]);
    await assertReconciled(r);
  });

  it('queues disk.resize, cdrom.change and instance.verify {repair} in the instance\'s queue: GKD_OVERLOADED past its bound', async () => {
    const r = await rig();
    const hold = await holdLock(r);
    const calls = ['disk.resize', 'cdrom.change', 'instance.verify'] as const;
    const params = (m: typeof calls[number]): Record<string, unknown> => (m === 'disk.resize' ? { name: NAME, index: 1 } : m === 'cdrom.change' ? { name: NAME, slot: 1, path: null } : { name: NAME, repair: true });
    let queued: Array<Promise<string>> = [];
    try {
      // The queue filled with the three kinds, then one more of each.
      queued = Array.from({ length: MAX_QUEUED }, (_, i) => codeOf(r.c.call(calls[i % 3], params(calls[i % 3]))));
      // Answered after every call sent before it has reached its handler (and so the queue).
      await r.c.call('runtime.get', { name: NAME });
      for (const m of calls) {
        const e = await r.c.call(m, params(m)).then(() => undefined, (x: unknown) => x);
        assert.ok(e instanceof RpcCallError, `${m} past the bound was not refused`);
        assert.equal((e.data as { code?: string }).code, 'GKD_OVERLOADED', `${m}: ${e.message}`);
        assert.match(e.message, new RegExp(`${MAX_QUEUED} are already waiting`));
      }
    } finally {
      await hold.release();
    }
    // The queued ones all ran once the hold ended (the empty drive ejects without a change).
    assert.deepEqual([...new Set(await Promise.all(queued))], ['ok']);
  });

  it('does not run disk.resize, cdrom.change or instance.verify {repair} whose caller left before its turn', async () => {
    const r = await rig();
    // Each would change something: a grown image, a medium to insert, a device QEMU lost behind the file's back.
    truncateSync(await diskPath(r, 0), 2 * MIB);
    const iso = makeImage(join(r.dir, 'b.iso'), 64 * 1024);
    await r.vm.qmp.execute('device_del', { id: deviceId('disk', r.spec.disks[1].uuid, 'disk') });
    await r.vm.qmp.execute('blockdev-del', { 'node-name': deviceId('disk', r.spec.disks[1].uuid, 'disk') }).catch(() => undefined);
    const file = readFileSync(r.store.path(NAME));
    const hold = await holdLock(r);
    const leaving = await RpcClient.connect(r.d.socket);
    try {
      for (const [m, p] of [['disk.resize', { name: NAME, index: 0 }], ['cdrom.change', { name: NAME, slot: 1, path: iso }], ['instance.verify', { name: NAME, repair: true }]] as const) {
        void leaving.call(m, p).catch(() => undefined);
      }
      await leaving.call('runtime.get', { name: NAME });
    } finally {
      await leaving.close();
      await hold.release();
    }
    // Each call's outcome is logged when its handler ends, client or not.
    const methods = ['disk.resize', 'cdrom.change', 'instance.verify'];
    await untilDaemon(r.d, 'no outcome logged', () => methods.every((m) => callLines(r.d, m).length > 0));
    for (const m of methods) assert.deepEqual(callLines(r.d, m).map((l) => l.outcome), ['GKD_CANCELLED'], m);
    assert.equal(await diskSize(r, 0), MIB, 'resized anyway');
    assert.equal(await cdromFile(r), undefined, 'medium changed anyway');
    assert.deepEqual(readFileSync(r.store.path(NAME)), file, 'runtime file rewritten anyway');
    assert.ok(existsSync(r.store.path(NAME)));
  });
});
