import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RpcClient, RpcCallError } from '../../../plugin/rpc';
import { spawnDaemon, tempDir, type DaemonProcess } from './daemon-process';

const NIC0 = '003fc157-66a8-4e6d-8b7e-ec4f69751396';
const NIC1 = '103fc157-66a8-4e6d-8b7e-ec4f69751397';

describe('daemon in launch mode (real QEMU, TCG): hotplug, verify and migration over RPC', function () {
  this.timeout(120_000);
  let src: DaemonProcess;
  let dst: DaemonProcess;
  let a: RpcClient;
  let b: RpcClient;
  let dir: string;
  const disk = (i: number): string => join(dir, `d${i}.img`);

  before(async function () {
    dir = tempDir('gkd-launch-');
    for (const i of [0, 1, 2]) {
      writeFileSync(disk(i), '');
      truncateSync(disk(i), 16 << 20);
    }
    // The test's disk images live in its temp dir: that is the storage root here.
    const env = { GKD_STORAGE_ROOTS: `${dir}:/dev/` };
    src = await spawnDaemon({ dir: join(dir, 'src'), args: ['--launch', '--accel', 'tcg'], env });
    // Two daemons on one machine stand for two nodes. A unix: migration socket must lie under the run dir of
    // both (the target binds it, the source connects to it), so the target node's directory is inside the
    // source's run dir.
    dst = await spawnDaemon({ dir: join(dir, 'src', 'run', 'dst'), args: ['--launch', '--accel', 'tcg'], env });
    a = await RpcClient.connect(src.socket);
    b = await RpcClient.connect(dst.socket);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    // Stopping each daemon stops the QEMUs it launched.
    await src?.stop();
    await dst?.stop();
  });

  it('starts, hot-adds, hot-removes, verifies and migrates an instance', async () => {
    const spec = {
      name: 'inst1', beparams: { maxmem: 64 },
      hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' },
      disks: [
        { uuid: '9e7c85f6-b6e5-4243-b27d-680b78c6d203', path: disk(0) },
        { uuid: '1e7c85f6-b6e5-4243-b27d-680b78c6d204', path: disk(1) },
      ],
      nics: [{ uuid: NIC0, mac: 'aa:00:00:bf:2f:16', backend: { type: 'user' } }],
    };
    const started = await a.call<{ launched: boolean; pid: number }>('instance.start', { instance: spec });
    assert.equal(started.launched, true);
    assert.deepEqual(await a.call('hotplug.supported', { name: 'inst1', kind: 'disk', action: 'add' }).then((r) => (r as { supported: boolean }).supported), true);
    const added = await a.call<{ hvinfo: Record<string, unknown> }>('disk.add', { name: 'inst1', disk: { uuid: '2e7c85f6-b6e5-4243-b27d-680b78c6d205', path: disk(2) } });
    assert.equal(added.hvinfo.bus, 'scsi.0');
    const nic = await a.call<{ hvinfo: Record<string, unknown> }>('nic.add', { name: 'inst1', nic: { uuid: NIC1, mac: 'aa:00:00:bf:2f:17', backend: { type: 'user' } } });
    assert.equal(nic.hvinfo.bus, 'pci.0');
    const removed = await a.call<{ status: string }>('disk.remove', { name: 'inst1', uuid: '1e7c85f6-b6e5-4243-b27d-680b78c6d204' });
    assert.equal(removed.status, 'removed');
    await assert.rejects(a.call('disk.remove', { name: 'inst1', uuid: '1e7c85f6-b6e5-4243-b27d-680b78c6d204' }), (e: RpcCallError) => e.code === 4004);
    assert.deepEqual(await a.call('instance.verify', { name: 'inst1' }), { clean: true, differences: [], repaired: false, leaks: [], pending: [] });

    const { runtime } = await a.call<{ runtime: unknown }>('runtime.get', { name: 'inst1' });
    const incoming = `unix:${join(dir, 'src', 'run', 'dst', 'run', 'mig.sock')}`;
    const accepted = await b.call<{ argv: string[]; launched: boolean }>('migration.accept', {
      name: 'inst1', runtime, incoming, nicBackends: { [NIC0]: { type: 'user' }, [NIC1]: { type: 'user' } },
    });
    assert.equal(accepted.launched, true);
    assert.ok(accepted.argv.includes('-incoming'));
    const progress: string[] = [];
    a.on('notification', (m: string, p: { status: string }) => {
      if (m === 'migration.progress') progress.push(p.status);
    });
    const done = await a.call<{ status: string }>('migration.start', { name: 'inst1', uri: incoming });
    assert.equal(done.status, 'completed');
    assert.ok(progress.length > 0, 'migration.progress notifications');
    assert.deepEqual(await b.call('instance.verify', { name: 'inst1' }), { clean: true, differences: [], repaired: false, leaks: [], pending: [] });
  });

  it('refuses a second concurrent instance.start of one instance and keeps the first one\'s runtime file', async () => {
    const spec = { name: 'twice1', beparams: { maxmem: 64 }, disks: [], nics: [] };
    const outcomes = await Promise.allSettled([a.call('instance.start', { instance: spec }), a.call('instance.start', { instance: spec })]);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    assert.equal(won.length, 1, JSON.stringify(outcomes));
    assert.equal(lost.length, 1);
    assert.equal((lost[0]?.reason as RpcCallError).code, 5004);
    assert.match((lost[0]?.reason as RpcCallError).message, /twice1/);
    assert.ok(existsSync(join(src.runtimeDir, 'twice1.runtime')), "the winner's runtime file is kept");
    const { runtime } = await a.call<{ runtime: unknown }>('runtime.get', { name: 'twice1' });
    // Nor may a migration be accepted onto an instance this daemon runs.
    await assert.rejects(
      a.call('migration.accept', { name: 'twice1', runtime, incoming: `unix:${join(dir, 'src', 'run', 'twice1-mig.sock')}` }),
      (e: RpcCallError) => e.code === 5004 && /migration of "twice1"/.test(e.message),
    );
    assert.deepEqual((await a.call<{ runtime: unknown }>('runtime.get', { name: 'twice1' })).runtime, runtime);
  });

  it('leaves no runtime file behind when QEMU fails to start', async () => {
    const spec = { name: 'broken1', beparams: { maxmem: 64 }, disks: [{ uuid: '5e7c85f6-b6e5-4243-b27d-680b78c6d203', path: join(dir, 'absent.img') }], nics: [] };
    await assert.rejects(a.call('instance.start', { instance: spec }), (e: RpcCallError) => e.code === 6003 && /absent\.img/.test(e.message));
    await assert.rejects(a.call('runtime.get', { name: 'broken1' }), (e: RpcCallError) => e.code === 2004);
  });

  it('a QEMU that outlived a killed daemon is adopted by the next one, which stops it on shutdown', async () => {
    const home = join(dir, 'orphan');
    const first = await spawnDaemon({ dir: home, args: ['--launch', '--accel', 'tcg'] });
    const c1 = await RpcClient.connect(first.socket);
    const spec = { name: 'inst7', beparams: { maxmem: 64 }, disks: [], nics: [{ uuid: NIC0, mac: 'aa:00:00:bf:2f:16', backend: { type: 'user' } }] };
    const { pid } = await c1.call<{ pid: number }>('instance.start', { instance: spec });
    await c1.close();
    await first.stop('SIGKILL');
    const alive = (): boolean => {
      try {
        process.kill(pid, 0);
        return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    assert.ok(alive(), 'QEMU outlives the killed daemon');
    const second = await spawnDaemon({ dir: home, args: ['--launch', '--accel', 'tcg'] });
    const c2 = await RpcClient.connect(second.socket);
    try {
      for (let i = 0; i < 100 && !/adopted a QEMU/.test(second.log()); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(second.log(), new RegExp(`"pid":${pid}.*adopted a QEMU|adopted a QEMU.*"pid":${pid}`));
      assert.equal((await c2.call<{ clean: boolean }>('instance.verify', { name: 'inst7' })).clean, true);
      await assert.rejects(c2.call('instance.start', { instance: spec, replace: true }), (e: RpcCallError) => e.code === 5004);
    } finally {
      await c2.close();
      await second.stop();
    }
    assert.equal(alive(), false, 'the adopted QEMU was stopped with the daemon');
  });

  it('refuses to start over an instance whose QEMU is running (pid file), keeping its runtime file', async () => {
    const plain = await spawnDaemon({ dir: join(dir, 'plain'), args: ['--accel', 'tcg'] });
    const c = await RpcClient.connect(plain.socket);
    const qemu = spawn('qemu-system-x86_64', ['-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S'], { stdio: 'ignore' });
    try {
      const spec = { name: 'inst9', beparams: { maxmem: 64 }, disks: [], nics: [] };
      await c.call('instance.start', { instance: spec });
      const before = await c.call('runtime.get', { name: 'inst9' });
      mkdirSync(join(dir, 'plain', 'run', 'pid'), { recursive: true });
      writeFileSync(join(dir, 'plain', 'run', 'pid', 'inst9'), `${qemu.pid}\n`);
      const other = { ...spec, nics: [{ uuid: NIC0, mac: 'aa:00:00:bf:2f:16' }] };
      await assert.rejects(c.call('instance.start', { instance: other }), (e: RpcCallError) => e.code === 5004 && e.message.includes(`pid ${qemu.pid}`));
      assert.deepEqual(await c.call('runtime.get', { name: 'inst9' }), before);
      assert.ok(existsSync(join(dir, 'plain', 'run', 'pid', 'inst9')));
    } finally {
      qemu.kill('SIGKILL');
      await c.close();
      await plain.stop();
    }
  });
});
