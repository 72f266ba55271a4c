/**
 * Leaked backends on real QEMU: a block node or netdev named like ours and
 * attached to nothing (what a process killed between blockdev-add and
 * device_add leaves) is reported by instance.verify and deleted by its
 * repair; Ganeti's own drives (drive_add: a named BlockBackend over an
 * auto-named node) are never called leaks.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { findLeaks, verifyInstance, type MigrationContext } from '../../../plugin/migration';
import { startHotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';

describe('leaked block nodes and netdevs', function () {
  this.timeout(60_000);
  useQemuCleanup();

  it('verify reports ours attached to nothing, repair deletes them, Ganeti drives stay, and the disk can be added again', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    const ctx: MigrationContext = { store: h.store, connections: h.connections, qmpSocket: () => join(h.vm.dir, 'engine.qmp') };
    try {
      const img = h.image('leak.raw');
      await h.vm.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'disk-000000aa-b6e5-4243', file: { driver: 'file', filename: img } });
      await h.vm.qmp.execute('netdev_add', { type: 'user', id: 'nic-000000ab-b6e5-4243' });
      // Ganeti 3.0's hot-add: drive_add creates a BlockBackend named after the drive, over a #blockNNN node.
      await h.vm.qmp.execute('human-monitor-command', { 'command-line': `drive_add 0 if=none,file=${h.image('ganeti.raw')},format=raw,id=disk-000000ac-b6e5-4243` });
      await h.vm.qmp.execute('netdev_add', { type: 'user', id: 'hotnic-ganeti' });

      const v = await verifyInstance(ctx, h.name);
      assert.equal(v.clean, false);
      assert.deepEqual(v.differences, []);
      assert.deepEqual(v.leaks.map((l) => `${l.kind} ${l.name}`).sort(), ['block-node disk-000000aa-b6e5-4243', 'netdev nic-000000ab-b6e5-4243']);

      const r = await verifyInstance(ctx, h.name, { repair: true });
      assert.equal(r.clean, true);
      assert.deepEqual(r.removed?.sort(), ['blockdev-del disk-000000aa-b6e5-4243', 'netdev_del nic-000000ab-b6e5-4243']);
      assert.deepEqual(await findLeaks(h.vm.qmp), []);
      const blocks = await h.vm.qmp.execute<Array<{ device: string }>>('query-block');
      assert.ok(blocks.some((b) => b.device === 'disk-000000ac-b6e5-4243'), 'the Ganeti drive was left alone');
      const net = await h.vm.qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
      assert.match(net, /^hotnic-ganeti: /m, 'a netdev not named like ours was left alone');

      // The node name is free again: the same disk adds cleanly (no "Duplicate nodes with node-name").
      const d = await h.engine.addDisk(h.name, { uuid: uuidN(0xaa), path: img });
      assert.equal(d.hvinfo.id, 'disk-000000aa-b6e5-4243');
      assert.equal((await verifyInstance(ctx, h.name)).clean, true);
    } finally {
      await h.close();
    }
  });
});
