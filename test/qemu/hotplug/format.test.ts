/**
 * Writes keep the runtime file's own format: a hot-add into a 2.10 file
 * (what a node still on Ganeti 2.10-2.15 reads) leaves a 2.10 file, with the
 * device under the PCI-era id that release derives from its slot; what 2.10
 * cannot record is refused before QEMU is touched.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { convertRuntime } from '../../../plugin/runtime';
import type { RuntimeV2_10 } from '../../../plugin/types';
import { startHotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';
import { rejectsWithCode } from '../../helpers/gkd-assert';

describe('hotplug keeps the runtime format', function () {
  this.timeout(60_000);
  useQemuCleanup();

  it('a hot-add and hot-remove on a 2.10 file leave a 2.10 file, the new disk under its PCI-era id', async () => {
    // One NIC, so the file is 2.10 by its shape (a file without devices reads as 2.10 and 2.16 alike).
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 1 }), { paused: true });
    try {
      await h.store.write(h.name, convertRuntime(h.plan.runtime, '2.10', { allowIdChange: true }).value as RuntimeV2_10, { format: '2.10' });
      const d = await h.engine.addDisk(h.name, { uuid: uuidN(0xf1), path: h.image('f1.raw') });
      assert.deepEqual(d.hvinfo, { driver: 'virtio-blk-pci', id: 'hotdisk-000000f1-pci-13', bus: 'pci.0', addr: '0xd' });
      const read = await h.store.read(h.name);
      assert.equal(read.format, '2.10');
      assert.equal((read.value as RuntimeV2_10)[3][0][0].pci, 13);
      const pci = await h.vm.qmp.execute<Array<{ devices: Array<{ slot: number; qdev_id: string }> }>>('query-pci');
      assert.equal(pci[0].devices.find((x) => x.qdev_id === 'hotdisk-000000f1-pci-13')?.slot, 13);
      // A paused VM never acknowledges a virtio unplug; answering pending leaves the file 2.10 too.
      await rejectsWithCode(h.engine.removeDisk(h.name, uuidN(0xf1), { unplugTimeoutMs: 300 }), 'GKD_HOTPLUG_PENDING');
      assert.equal((await h.store.read(h.name)).format, '2.10');
    } finally {
      h.engine.stop();
      await h.close();
    }
  });

  it('a file without devices (2.10 and 2.16 alike) is rewritten in the node\'s format', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    try {
      assert.equal((await h.store.read(h.name)).format, '2.10', 'detection calls it 2.10');
      const d = await h.engine.addDisk(h.name, { uuid: uuidN(0xf3), path: h.image('f3.raw') });
      assert.equal(d.hvinfo.id, 'disk-000000f3-b6e5-4243');
      assert.equal((await h.store.read(h.name)).format, '2.16', 'the store default (the daemon passes its ganetiFormat)');
    } finally {
      await h.close();
    }
  });

  it('refuses what 2.10 cannot record (a SCSI disk) before QEMU is touched', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 1 }));
    try {
      // A 2.10 file whose hvparams say SCSI: 2.10 records only PCI slots.
      const rt = structuredClone(h.plan.runtime);
      rt[2] = { ...rt[2], disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' };
      await h.store.write(h.name, convertRuntime(rt, '2.10', { allowIdChange: true }).value as RuntimeV2_10, { format: '2.10' });
      const before = readFileSync(h.store.path(h.name));
      const nodes = async (): Promise<unknown> => (await h.vm.qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']).sort();
      const nodesBefore = await nodes();
      const e = await rejectsWithCode(h.engine.addDisk(h.name, { uuid: uuidN(0xf2), path: h.image('f2.raw') }), 'GKD_RUNTIME_LOSSY');
      assert.match(e.message, /runtime file is in format 2\.10 .* cannot record it/);
      assert.deepEqual(readFileSync(h.store.path(h.name)), before);
      assert.deepEqual(await nodes(), nodesBefore, 'QEMU untouched');
    } finally {
      await h.close();
    }
  });
});
