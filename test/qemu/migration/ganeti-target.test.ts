/**
 * Ganeti 3.0 as the migration target of an instance this project planned
 * and started: a Ganeti target builds its QEMU from our runtime file with
 * its own code (kvm_cmd as stored, its NIC options, and the block options
 * `_GenerateKVMBlockDevicesOptions` makes, test/helpers/ganeti.ts), and
 * that QEMU must accept our source's migration stream.
 */
import { strict as assert } from 'node:assert';
import { dirname, join } from 'node:path';
import { HotplugEngine } from '../../../plugin/hotplug';
import { startMigration } from '../../../plugin/migration';
import type { RuntimeV2_16 } from '../../../plugin/types';
import { ganetiRebuild } from '../../helpers/ganeti';
import { migrationLab, startSource, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { startQemu, useQemuCleanup } from '../../helpers/qemu';
import { makeImage } from '../../helpers/plan-vm';
import { macN, makeSpec, uuidN } from '../../helpers/specs';

/**
 * The argv a Ganeti 3.0 target runs for `runtime` (its _ExecuteKVMRuntime
 * with `incoming`): kvm_cmd, each NIC as `-netdev` + Ganeti's `-device`
 * (user networking here instead of its tap fds), `-net none` without
 * NICs, its QMP socket, Ganeti's block options, `-incoming`.
 */
function ganetiTargetArgv(runtime: RuntimeV2_16, qmp: string, incoming: string): string[] {
  const g = ganetiRebuild(runtime);
  // Ganeti's node-local paths in kvm_cmd (the serial socket) point at the test's dir instead.
  const argv = runtime[0].map(String).map((a) => a.replace(/^unix:\/var\/run\/ganeti\/kvm-hypervisor\/ctrl\/(.*)\.serial,/, `unix:${join(dirname(qmp), '$1')}.serial,`));
  assert.ok(!argv.some((a) => a.includes('/var/run/ganeti')), argv.join(' '));
  argv.push('-accel', 'tcg');
  if (g.nics.length === 0) argv.push('-net', 'none');
  for (const n of g.nics) argv.push('-netdev', `type=user,id=${String(n.hvinfo.id)}`, '-device', String(n.device));
  argv.push('-qmp', `unix:${qmp},server=on,wait=off`, ...g.block_options, '-incoming', incoming);
  return argv;
}

describe('a Ganeti 3.0 target for an instance we started', function () {
  this.timeout(90_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let src: TestNode;
  beforeEach(() => {
    lab = migrationLab();
    src = lab.node('src');
  });
  afterEach(async () => lab.cleanup());

  it('with disks and NICs hot-added through the engine (disk.add, nic.add): Ganeti rebuilds them too', async () => {
    for (const hvparams of [{ kvm_pci_reservations: 6 }, { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }]) {
      const name = 'inst1.example.com';
      const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams }), { paused: false });
      const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
      for (const n of [1, 2]) {
        await engine.addDisk(name, { uuid: uuidN(0x5000 + n), path: makeImage(join(src.dir, `hot${n}.img`)) });
        await engine.addNic(name, { uuid: uuidN(0x6000 + n), mac: macN(0x60 + n), backend: { type: 'user' } });
      }
      const runtime = (await src.store.read(name)).upgraded;
      assert.equal(runtime[3].length, 3);
      const qmp = join(lab.root, 'ganeti-target.qmp');
      const incoming = `unix:${join(lab.root, 'mig.sock')}`;
      const target = await startQemu(ganetiTargetArgv(runtime, qmp, incoming), { qmpSocket: qmp });
      src.pool.adopt(qmp, target.qmp);
      const result = await startMigration(src.ctx, { name, uri: incoming, targetQmp: qmp }).catch((e: Error) => {
        throw new Error(`${e.message}; the target said: ${target.stderr()}`);
      });
      assert.equal(result.status, 'completed', JSON.stringify(hvparams));
      assert.equal((await target.qmp.execute<{ status: string }>('query-status')).status, 'running');
      await src.pool.closeAll();
      await target.stop();
      await s.vm.stop();
      await src.store.remove(name);
    }
  });

  const cases: Array<[string, Record<string, unknown>, number, number]> = [
    ['paravirtual', {}, 3, 2],
    ['scsi-hd on lsi', { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' }, 2, 1],
    ['scsi-hd on virtio-scsi-pci', { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 3, 2],
    ['scsi-hd on megasas', { disk_type: 'scsi-hd', scsi_controller_type: 'megasas' }, 2, 1],
    ['e1000 NICs, kvm_pci_reservations 4', { nic_type: 'e1000', kvm_pci_reservations: 4 }, 2, 2],
    ['serial_console false (no serial port on either side)', { serial_console: false }, 1, 1],
    ['q35: devices behind root ports', { machine_version: 'q35' }, 2, 1],
    ['q35: scsi-hd on virtio-scsi-pci behind a root port', { machine_version: 'q35', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 2, 1],
  ];
  for (const [what, hvparams, disks, nics] of cases) {
    it(`${what}: Ganeti's target QEMU accepts the stream and runs`, async () => {
      const s = await startSource(src, makeSpec({ disks, nics, hvparams }), { paused: false });
      const qmp = join(lab.root, 'ganeti-target.qmp');
      const incoming = `unix:${join(lab.root, 'mig.sock')}`;
      const target = await startQemu(ganetiTargetArgv(s.plan.runtime, qmp, incoming), { qmpSocket: qmp });
      src.pool.adopt(qmp, target.qmp);
      const result = await startMigration(src.ctx, { name: s.name, uri: incoming, targetQmp: qmp }).catch((e: Error) => {
        throw new Error(`${e.message}; the target said: ${target.stderr()}`);
      });
      assert.equal(result.status, 'completed');
      assert.equal((await target.qmp.execute<{ status: string }>('query-status')).status, 'running');
    });
  }
});
