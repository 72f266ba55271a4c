/**
 * A journal entry belongs to the QEMU it was written for. On a Ganeti node
 * an instance whose QEMU died can be started again by Ganeti (from its
 * runtime file, no stop hook in between), leaving the dead QEMU's entry
 * behind: a reconcile must not apply it to the new QEMU (here: unplug a
 * disk the new QEMU has). QEMU makes its QMP socket anew at each start, so
 * the entry's socket inode tells the two apart. Real QEMU both times.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { buildArgv } from '../../../plugin/planner';
import { launchQemu, type QemuProcess } from '../../../plugin/process';
import { assertRuntimeMatchesQemu, startHotplugVm, type HotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec } from '../../helpers/specs';

const SPEC = makeSpec({ disks: 2, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } });

/** The journal's entry for removing the instance's second disk, as disk.remove writes it before device_del. */
async function openRemoval(h: HotplugVm): Promise<string> {
  const [entry] = (await h.runtime())[3][1];
  const id = String(entry.hvinfo?.id);
  await h.engine.journal.open(h.name, {
    op: 'remove', step: 'device_del', kind: 'disk', uuid: entry.uuid, id, socket: join(h.vm.dir, 'engine.qmp'), hvinfo: entry.hvinfo as unknown as Record<string, unknown>,
  });
  return id;
}

async function peripherals(q: { execute<T>(c: string, a?: Record<string, unknown>): Promise<T> }): Promise<string[]> {
  return (await q.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' })).map((p) => p.name);
}

describe('a journal entry is not applied to a QEMU started after the one it was written for (real QEMU)', function () {
  this.timeout(60_000);
  useQemuCleanup();

  it('control: on the QEMU it was written for, the interrupted removal is finished', async () => {
    const h = await startHotplugVm(SPEC);
    try {
      const id = await openRemoval(h);
      const out = await h.engine.reconcile(h.name);
      assert.equal(out.length, 1);
      assert.notEqual(out[0].outcome, 'closed', JSON.stringify(out));
      assert.ok(!(await peripherals(h.vm.qmp)).includes(id), 'the disk was unplugged');
      assert.equal((await h.runtime())[3].length, 1);
    } finally {
      await h.close();
    }
  });

  it('after the QEMU died and another was started at the same socket, the entry is dropped and the new QEMU keeps the disk', async () => {
    const h = await startHotplugVm(SPEC);
    let again: QemuProcess | undefined;
    try {
      const id = await openRemoval(h);
      // The QEMU dies; the instance is started again from its runtime file, as Ganeti would.
      h.vm.kill('SIGKILL');
      await h.vm.exited;
      await h.connections.closeAll();
      const dir = h.vm.dir;
      again = await launchQemu(buildArgv(h.plan.runtime, { accel: 'tcg', runDir: dir, qmp: join(dir, 'engine.qmp'), paused: true, nicBackends: h.plan.backends }), { qmpSocket: join(dir, 'again.qmp') });
      assert.ok((await peripherals(again.qmp)).includes(id), 'the new QEMU has the disk');

      const out = await h.engine.reconcile(h.name);
      assert.equal(out.length, 1);
      assert.equal(out[0].outcome, 'closed', JSON.stringify(out));
      assert.match(out[0].detail, /QEMU that is gone/);
      assert.ok((await peripherals(again.qmp)).includes(id), 'the new QEMU still has the disk');
      assert.equal((await h.runtime())[3].length, 2, 'the runtime file still records it');
      assert.deepEqual(await h.engine.journal.read(h.name), [], 'the entry is closed');
      await assertRuntimeMatchesQemu({ ...h, vm: { ...h.vm, qmp: again.qmp } });
    } finally {
      await again?.stop();
      await h.close();
    }
  });
});
