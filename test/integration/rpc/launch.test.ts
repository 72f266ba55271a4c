import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RpcClient, RpcCallError } from '../../../plugin/rpc';
import { spawnDaemon, tempDir, type DaemonProcess } from './daemon-process';

const HAVE_QEMU = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
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
    if (!HAVE_QEMU) this.skip();
    dir = tempDir('gkd-launch-');
    for (const i of [0, 1, 2]) {
      writeFileSync(disk(i), '');
      truncateSync(disk(i), 16 << 20);
    }
    src = await spawnDaemon({ dir: join(dir, 'src'), args: ['--launch', '--accel', 'tcg'] });
    dst = await spawnDaemon({ dir: join(dir, 'dst'), args: ['--launch', '--accel', 'tcg'] });
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
    assert.deepEqual(await a.call('instance.verify', { name: 'inst1' }), { clean: true, differences: [], repaired: false });

    const { runtime } = await a.call<{ runtime: unknown }>('runtime.get', { name: 'inst1' });
    const incoming = `unix:${join(dir, 'mig.sock')}`;
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
    assert.deepEqual(await b.call('instance.verify', { name: 'inst1' }), { clean: true, differences: [], repaired: false });
  });
});
