/**
 * Live migration of paused VMs between two nodes on one machine: the source
 * runs from the planner's argv, devices are hot-plugged through the hotplug
 * engine, the target is started by acceptMigration on a unix socket, and
 * startMigration judges success on the target.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { HotplugEngine } from '../../../plugin/hotplug';
import { readLiveLayout } from '../../../plugin/inspect';
import { acceptMigration, startMigration, verifyInstance, type MigrationProgress } from '../../../plugin/migration';
import { makeImage } from '../../helpers/plan-vm';
import { useMigrationLab, startSource, userBackends, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { useQemuCleanup } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';

const FAST = { migration_bandwidth: 10_000, migration_downtime: 100 };

describe('startMigration() of a paused VM', function () {
  this.timeout(60_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let src: TestNode;
  let dst: TestNode;
  useMigrationLab((l) => {
    lab = l;
    src = l.node('src');
    dst = l.node('dst');
  });

  async function migrateAndCheck(name: string): Promise<void> {
    const srcSock = src.qmpSocket(name);
    const before = await src.pool.use(srcSock, readLiveLayout);
    const sent = await src.store.read(name);
    const accepted = await acceptMigration(dst.ctx, {
      name,
      runtime: sent.value,
      incoming: `unix:${join(lab.root, 'mig.sock')}`,
      launch: true,
      build: { nicBackends: userBackends(sent.upgraded) },
    });
    assert.equal(accepted.status, 'inmigrate');
    assert.ok(accepted.argv.includes('-incoming'));
    const progress: MigrationProgress[] = [];
    const result = await startMigration(src.ctx, { name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp: accepted.qmp }, (p) => progress.push(p));
    assert.equal(result.status, 'completed');
    assert.equal(result.target.confirmed, true, result.target.detail);
    assert.equal(result.target.status, 'prelaunch');
    assert.ok(progress.length > 0 && progress[progress.length - 1].status === 'completed', JSON.stringify(progress));
    assert.equal((await src.pool.use(srcSock, (q) => q.execute<{ status: string }>('query-status'))).status, 'postmigrate');

    assert.deepEqual(await dst.pool.use(accepted.qmp, readLiveLayout), before, 'target layout equals the source layout');
    const v = await verifyInstance(dst.ctx, name);
    assert.deepEqual(v.differences, []);
    assert.equal(v.clean, true);
  }

  it('moves a SCSI instance with hot-added and hot-removed devices to a target that loads it', async () => {
    const spec = makeSpec({ disks: 3, nics: 2, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', ...FAST } });
    const s = await startSource(src, spec);
    const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
    const added = await engine.addDisk(s.name, { uuid: uuidN(0x3001), mode: 'rw', path: makeImage(join(src.dir, 'hot-disk.raw')) });
    assert.equal(added.hvinfo.driver, 'scsi-hd');
    await engine.addNic(s.name, { uuid: uuidN(0x4001, '66a8-4e6d-8b7e-ec4f69751396'), mac: macN(0x41), backend: { type: 'user' } });
    // SCSI removal completes without a guest (QEMU unplugs SCSI devices synchronously).
    await engine.removeDisk(s.name, spec.disks[1].uuid);
    const rt = (await src.store.read(s.name)).upgraded;
    assert.equal(rt[3].length, 3);
    assert.equal(rt[1].length, 3);
    await migrateAndCheck(s.name);
  });

  it('moves a paravirtual instance with a hot-added virtio disk and NIC', async () => {
    const spec = makeSpec({ disks: 2, nics: 2, hvparams: { disk_type: 'paravirtual', ...FAST } });
    const s = await startSource(src, spec);
    const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
    await engine.addDisk(s.name, { uuid: uuidN(0x3002), mode: 'rw', path: makeImage(join(src.dir, 'hot-disk.raw')) });
    await engine.addNic(s.name, { uuid: uuidN(0x4002, '66a8-4e6d-8b7e-ec4f69751396'), mac: macN(0x42), backend: { type: 'user' } });
    await migrateAndCheck(s.name);
  });

  it('moves a q35 instance whose devices sit behind root ports, with a hot-added NIC on a spare port', async () => {
    const spec = makeSpec({ disks: 2, nics: 1, hvparams: { machine_version: 'q35', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', kvm_pcie_spare_ports: 2, ...FAST } });
    const s = await startSource(src, spec);
    const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
    const nic = await engine.addNic(s.name, { uuid: uuidN(0x4003, '66a8-4e6d-8b7e-ec4f69751396'), mac: macN(0x43), backend: { type: 'user' } });
    assert.match(nic.hvinfo.bus, /^rp\d+$/);
    await migrateAndCheck(s.name);
  });
});
