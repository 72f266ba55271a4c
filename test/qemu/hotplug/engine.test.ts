/**
 * The hotplug engine on real, paused QEMU: hot-add and hot-remove SCSI
 * disks on every controller type (SCSI removal completes without a guest),
 * hot-add virtio-blk disks and NICs, with query-pci/query-block/QOM agreeing
 * with the runtime file after every step; failures leave both untouched.
 */
import { strict as assert } from 'node:assert';
import { findLeaks } from '../../../plugin/migration/leaks';
import { existsSync, readFileSync } from 'node:fs';
import { lockPath } from '../../../plugin/runtime/lock';
import { GkdError } from '../../../plugin/errors';
import type { ScsiHvInfo } from '../../../plugin/types';
import { assertRuntimeMatchesQemu, startHotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';
import { rejectsWithCode } from '../../helpers/gkd-assert';

describe('HotplugEngine on real QEMU (paused)', function () {
  this.timeout(60_000);
  useQemuCleanup();

  for (const ctrl of ['lsi', 'megasas', 'virtio-scsi-pci', 'mptsas1068', 'pvscsi', 'dc390']) {
    it(`hot-adds and hot-removes SCSI disks on ${ctrl}`, async () => {
      const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: ctrl } }));
      const a = await h.engine.addDisk(h.name, { uuid: uuidN(0xa1), path: h.image('a.raw') });
      assert.equal((a.hvinfo as ScsiHvInfo)['scsi-id'], 1);
      await assertRuntimeMatchesQemu(h);
      const b = await h.engine.addDisk(h.name, { uuid: uuidN(0xa2), path: h.image('b.raw') });
      assert.equal((b.hvinfo as ScsiHvInfo)['scsi-id'], 2);
      await assertRuntimeMatchesQemu(h);
      const r = await h.engine.removeDisk(h.name, uuidN(0xa1));
      assert.equal(r.status, 'removed');
      assert.deepEqual(r.warnings, []);
      await assertRuntimeMatchesQemu(h);
      assert.equal((await h.runtime())[3].length, 2);
      // The freed target is reused.
      const c = await h.engine.addDisk(h.name, { uuid: uuidN(0xa3), path: h.image('c.raw') });
      assert.equal((c.hvinfo as ScsiHvInfo)['scsi-id'], 1);
      await assertRuntimeMatchesQemu(h);
      await h.close();
    });
  }

  it('answers a hot-add once the runtime file records it, then closes the journal entry and releases the lock', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    const conf = h.store.dir;
    const a = await h.engine.addDisk(h.name, { uuid: uuidN(0xa9), path: h.image('a.raw') });
    // The answer came first: the file already records the device, the bookkeeping is still to come
    // (looked at synchronously, before anything lets the event loop turn).
    const lockHeld = existsSync(lockPath(conf, h.name));
    const entryOpen = readFileSync(h.engine.journal.path(h.name), 'utf8');
    const recorded = readFileSync(h.store.path(h.name), 'utf8');
    assert.ok(lockHeld, 'the lock is still held when the caller is answered');
    assert.match(entryOpen, new RegExp(`"op":"add".*"${a.hvinfo.id}"`), 'the journal entry is still open when the caller is answered');
    assert.ok(recorded.includes(uuidN(0xa9)) && recorded.includes(`"${a.hvinfo.id}"`), 'the runtime file records the device when the caller is answered');
    // The next operation on the instance starts after the bookkeeping: nothing for it to reconcile.
    assert.deepEqual(await h.engine.reconcile(h.name), []);
    assert.equal(existsSync(lockPath(conf, h.name)), false);
    assert.deepEqual(await h.engine.journal.read(h.name), []);
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });

  it('hot-adds virtio-blk disks and NICs on the next free slots, skipping a device added by hand', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1 }));
    // 0xc and 0xd are the planned disk and NIC; put a stranger at 0xe behind the engine's back.
    await h.vm.qmp.execute('device_add', { driver: 'virtio-rng-pci', id: 'stranger', bus: 'pci.0', addr: '0xe' });
    const d = await h.engine.addDisk(h.name, { uuid: uuidN(0xb1), path: h.image('v.raw') });
    assert.deepEqual(d.hvinfo, { driver: 'virtio-blk-pci', id: 'disk-000000b1-b6e5-4243', bus: 'pci.0', addr: '0xf' });
    const n = await h.engine.addNic(h.name, { uuid: uuidN(0xc1), mac: macN(0xc1), backend: { type: 'user' } });
    assert.deepEqual(n.hvinfo, { driver: 'virtio-net-pci', id: 'nic-000000c1-b6e5-4243', bus: 'pci.0', addr: '0x10' });
    await assertRuntimeMatchesQemu(h);
    const pci = await h.vm.qmp.execute<Array<{ devices: Array<{ slot: number; qdev_id: string }> }>>('query-pci');
    assert.equal(pci[0].devices.find((x) => x.qdev_id === 'nic-000000c1-b6e5-4243')?.slot, 0x10);
    await h.close();
  });

  it('skips a SCSI target taken by a device without an id (kvm_extra style)', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }), {
      extraArgv: () => ['-blockdev', 'driver=null-co,node-name=anon0', '-device', 'scsi-hd,drive=anon0,bus=scsi.0,scsi-id=1'],
    });
    const d = await h.engine.addDisk(h.name, { uuid: uuidN(0xb7), path: h.image('t.raw') });
    assert.equal((d.hvinfo as ScsiHvInfo)['scsi-id'], 2);
    await h.close();
  });

  it('refuses to hot-plug on a QEMU waiting for an incoming migration, changing nothing', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }), {
      extraArgv: () => ['-incoming', 'defer'],
    });
    const before = readFileSync(h.store.path(h.name));
    const e = await rejectsWithCode(h.engine.addDisk(h.name, { uuid: uuidN(0xb9), path: h.image('m.raw') }), 'GKD_INSTANCE_BUSY');
    assert.match(e.message, /migration state "inmigrate"/);
    await rejectsWithCode(h.engine.removeDisk(h.name, h.plan.devices[0].uuid), 'GKD_INSTANCE_BUSY');
    await rejectsWithCode(h.engine.addNic(h.name, { uuid: uuidN(0xba), mac: macN(0xba), backend: { type: 'user' } }), 'GKD_INSTANCE_BUSY');
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    await assertRuntimeMatchesQemu(h);
    // The backend sent behind the run-state question was taken back.
    assert.deepEqual(await findLeaks(h.vm.qmp), []);
    await h.close();
  });

  it('reports a PCI removal the paused guest cannot acknowledge as pending and keeps it recorded', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 2, nics: 0 }), { engine: { unplugTimeoutMs: 300 } });
    const before = readFileSync(h.store.path(h.name));
    const e = await rejectsWithCode(h.engine.removeDisk(h.name, h.plan.devices[1].uuid), 'GKD_HOTPLUG_PENDING');
    assert.equal(e.device, h.plan.devices[1].id);
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    assert.deepEqual(h.engine.pending().map((p) => p.id), [h.plan.devices[1].id]);
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });

  it('refuses a duplicate UUID and a type that cannot be hot-plugged, changing nothing', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams: { nic_type: 'ne2k_isa' } }));
    const before = readFileSync(h.store.path(h.name));
    await rejectsWithCode(h.engine.addDisk(h.name, { uuid: h.plan.devices[0].uuid, path: h.image('x.raw') }), 'GKD_DEVICE_EXISTS');
    await rejectsWithCode(h.engine.addNic(h.name, { uuid: uuidN(0xd1), mac: macN(3), backend: { type: 'user' } }), 'GKD_HOTPLUG_UNSUPPORTED');
    await rejectsWithCode(h.engine.removeDisk(h.name, uuidN(0xeeee)), 'GKD_DEVICE_NOT_FOUND');
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });

  it('rolls back nothing when blockdev-add fails on a missing file, and says so', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    const before = readFileSync(h.store.path(h.name));
    const e = await rejectsWithCode(h.engine.addDisk(h.name, { uuid: uuidN(0xe1), path: '/nonexistent/x.raw' }), 'GKD_HOTPLUG_FAILED');
    assert.match(e.message, /blockdev-add failed: .*No such file or directory.*nothing to undo/);
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });

  it('rolls back blockdev-add when device_add fails (scsi-block on a plain file)', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 0, hvparams: { disk_type: 'scsi-block', scsi_controller_type: 'virtio-scsi-pci' } }));
    const before = readFileSync(h.store.path(h.name));
    const e = await rejectsWithCode(h.engine.addDisk(h.name, { uuid: uuidN(0xe2), path: h.image('f.raw') }), 'GKD_HOTPLUG_FAILED');
    assert.match(e.message, /device_add failed: .*undone: blockdev-del disk-000000e2-b6e5-4243$/);
    const nodes = await h.vm.qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes');
    assert.ok(!nodes.some((n) => n['node-name'] === 'disk-000000e2-b6e5-4243'), 'the block node was left behind');
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    await h.close();
  });

  it('gives 32 parallel disk adds distinct targets or clean capacity errors, and records exactly what QEMU has', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    const results = await Promise.allSettled(
      Array.from({ length: 32 }, (_, i) => h.engine.addDisk(h.name, { uuid: uuidN(0x100 + i), path: h.image(`p${i}.raw`) })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<{ hvinfo: ScsiHvInfo }>).value.hvinfo['scsi-id']);
    const errs = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as GkdError);
    assert.equal(ok.length, 16, 'an instance takes 16 disks');
    assert.equal(new Set(ok).size, 16, 'targets are distinct');
    for (const e of errs) assert.equal(e.code, 'GKD_CAPACITY', e.message);
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });
});
