/**
 * Drift between the runtime file and the live QEMU, made with raw QMP on a
 * second monitor (behind the plugin's back): verifyInstance reports it,
 * startMigration refuses naming the device, and repair rewrites the file
 * only when every drifted device can be described.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GkdError } from '../../../plugin/errors';
import { startMigration, verifyInstance } from '../../../plugin/migration';
import { readLiveLayout } from '../../../plugin/inspect';
import { buildArgv, deviceId, planInstance } from '../../../plugin/planner';
import { convertRuntime } from '../../../plugin/runtime';
import type { RuntimeV2_9 } from '../../../plugin/types';
import type { QmpClient } from '../../../plugin/qmp';
import { migrationLab, startSource, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { localize, makeImage } from '../../helpers/plan-vm';
import { startQemu, useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';

const SCSI = { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' };

async function rawScsiDisk(qmp: QmpClient, id: string, file: string, target: number): Promise<void> {
  await qmp.execute('blockdev-add', { driver: 'raw', 'node-name': id, file: { driver: 'file', filename: file } });
  await qmp.execute('device_add', { driver: 'scsi-hd', id, drive: id, bus: 'scsi.0', channel: 0, 'scsi-id': target, lun: 0 });
}

async function rawDelete(qmp: QmpClient, id: string): Promise<void> {
  const gone = qmp.expectEvent('DEVICE_DELETED', (d) => d.device === id, 5_000);
  await qmp.execute('device_del', { id });
  await gone;
}

describe('verifyInstance() and drift', function () {
  this.timeout(60_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let src: TestNode;
  beforeEach(() => {
    lab = migrationLab();
    src = lab.node('src');
  });
  afterEach(async () => lab.cleanup());

  it('is clean right after start, and with the device set of a plain plan', async () => {
    const s = await startSource(src, makeSpec({ disks: 2, nics: 2, hvparams: SCSI }));
    assert.deepEqual(await verifyInstance(src.ctx, s.name), { clean: true, differences: [], repaired: false, leaks: [] });
  });

  for (const balloon of [['-balloon', 'virtio'], ['-balloon', 'virtio,id=balloon,bus=pci.0,addr=0x3'], ['-device', 'virtio-balloon,id=balloon']]) {
    it(`is clean for a Ganeti-era kvm_cmd with "${balloon.join(' ')}" (QEMU names the model virtio-balloon-pci)`, async () => {
      // As Ganeti stores them: its node-local options too, which the built command drops.
      const ganeti = ['-pidfile', '/var/run/ganeti/kvm-hypervisor/pid/inst1.example.com', '-daemonize', ...balloon, '-localtime'];
      const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: SCSI }), { edit: (rt) => rt[0].push(...ganeti) });
      assert.ok(s.argv.some((a, i) => s.argv[i - 1] === '-device' && a.startsWith('virtio-balloon')) && !s.argv.includes('-balloon'), s.argv.join(' '));
      assert.deepEqual(await verifyInstance(src.ctx, s.name), { clean: true, differences: [], repaired: false, leaks: [] });
    });
  }

  it('reports the -drive disk of a Ganeti 2.9 runtime as unplaced, and startMigration refuses it before touching QEMU', async () => {
    // A 2.9 file: its disk is a -drive option inside kvm_cmd, which QEMU turns into a virtio-blk-pci without an id.
    const rt = planInstance(localize(makeSpec({ disks: 1, nics: 0, hvparams: { disk_type: 'paravirtual' } }), src.dir)).runtime;
    const rt29: RuntimeV2_9 = [[...rt[0], '-drive', `file=${rt[3][0][1]},format=raw,if=virtio`], [], rt[2]];
    const name = 'inst1.example.com';
    await src.store.write(name, rt29, { format: '2.9' });
    const vm = await startQemu(buildArgv(convertRuntime(rt29, '2.16').value, { accel: 'tcg', runDir: src.runDir, qmp: src.qmpSocket(name) }));
    assert.equal((await readLiveLayout(vm.qmp, { anonymous: true })).map((d) => d.driver).join(), 'virtio-blk-pci');
    const v = await verifyInstance(src.ctx, name);
    assert.equal(v.clean, false);
    assert.deepEqual(v.differences.map((d) => [d.device, d.kind, d.recordedIn]), [['/machine/peripheral-anon/device[0]', 'unplaced', 'kvm_cmd']]);
    assert.match(v.differences[0].detail, /^disk "-drive file=.*,if=virtio" \(kvm_cmd\[\d+\]\), in QEMU "\/machine\/peripheral-anon\/device\[0\]", has no device id: started by a release without device ids; restart the instance under this release before migrating$/);
    await assert.rejects(startMigration(src.ctx, { name, uri: `unix:${join(lab.root, 'nowhere.sock')}` }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_REFUSED');
      assert.match(e.message, /^Cannot migrate instance "inst1\.example\.com": disk "-drive file=.*" \(kvm_cmd\[\d+\]\) has no device id: started by a release without device ids; restart the instance under this release before migrating$/);
      return true;
    });
    assert.equal((await vm.qmp.execute<{ status?: string }>('query-migrate')).status, undefined);
  });

  it('reports a device added behind the plugin\'s back, and startMigration refuses naming it', async () => {
    const s = await startSource(src, makeSpec({ disks: 2, nics: 1, hvparams: SCSI }));
    await rawScsiDisk(s.vm.qmp, 'rogue', makeImage(join(src.dir, 'rogue.raw')), 7);
    await s.vm.qmp.execute('device_add', { driver: 'virtio-rng-pci' });
    const v = await verifyInstance(src.ctx, s.name);
    assert.equal(v.clean, false);
    assert.deepEqual(v.differences.map((d) => [d.device, d.kind]), [
      ['rogue', 'missing-in-runtime'],
      ['/machine/peripheral-anon/device[0]', 'missing-in-runtime'],
    ]);
    assert.deepEqual(v.differences[0].qemu, { driver: 'scsi-hd', bus: 'scsi.0', channel: 0, 'scsi-id': 7, lun: 0 });

    await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'nowhere.sock')}` }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_DRIFT');
      assert.equal(e.device, 'rogue');
      assert.match(e.message, /^Cannot migrate instance "inst1\.example\.com": the runtime file and QEMU disagree on "rogue" \(missing-in-runtime\)/);
      return true;
    });
    // Refused before anything was sent: the source never started a migration.
    assert.equal((await s.vm.qmp.execute<{ status?: string }>('query-migrate')).status, undefined);
  });

  it('reports a recorded device removed behind the plugin\'s back, and startMigration refuses naming it', async () => {
    const spec = makeSpec({ disks: 2, nics: 1, hvparams: SCSI });
    const s = await startSource(src, spec);
    const id = deviceId('disk', spec.disks[0].uuid, 'disk');
    await rawDelete(s.vm.qmp, id);
    const v = await verifyInstance(src.ctx, s.name);
    assert.deepEqual(v.differences.map((d) => [d.device, d.kind, d.recordedIn]), [[id, 'missing-in-qemu', 'disk']]);
    await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'nowhere.sock')}` }), { code: 'GKD_DRIFT', device: id });
  });

  it('repairs a removed device and records an added one whose spec is known, refusing one it cannot describe', async () => {
    const spec = makeSpec({ disks: 2, nics: 1, hvparams: SCSI });
    const s = await startSource(src, spec);
    await rawDelete(s.vm.qmp, deviceId('disk', spec.disks[1].uuid, 'disk'));
    const known = { uuid: uuidN(0x5001), mode: 'rw' as const, path: makeImage(join(src.dir, 'known.raw')) };
    const knownId = deviceId('disk', known.uuid, 'disk');
    await rawScsiDisk(s.vm.qmp, knownId, known.path, 9);
    await rawScsiDisk(s.vm.qmp, 'rogue', makeImage(join(src.dir, 'rogue.raw')), 10);

    const before = readFileSync(src.store.path(s.name), 'utf8');
    await assert.rejects(verifyInstance(src.ctx, s.name, { repair: { known: { disks: [known] } } }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_DRIFT');
      assert.equal(e.device, 'rogue');
      assert.match(e.message, /"rogue": its Ganeti UUID is unknown/);
      return true;
    });
    assert.equal(readFileSync(src.store.path(s.name), 'utf8'), before, 'a refused repair leaves the file as it was');

    await rawDelete(s.vm.qmp, 'rogue');
    const r = await verifyInstance(src.ctx, s.name, { repair: { known: { disks: [known] } } });
    assert.equal(r.repaired, true);
    assert.equal(r.clean, true);
    assert.deepEqual(r.differences.map((d) => d.kind).sort(), ['missing-in-qemu', 'missing-in-runtime']);
    const disks = (await src.store.read(s.name)).upgraded[3];
    assert.deepEqual(disks.map(([d]) => d.uuid), [spec.disks[0].uuid, known.uuid]);
    assert.deepEqual(disks[1][0].hvinfo, { driver: 'scsi-hd', id: knownId, bus: 'scsi.0', channel: 0, 'scsi-id': 9, lun: 0 });
    assert.equal(disks[1][1], known.path);
    assert.deepEqual(await verifyInstance(src.ctx, s.name), { clean: true, differences: [], repaired: false, leaks: [] });
  });
});
