/**
 * Migrations that must fail, judged on the target: a target whose layout
 * differs from the source dies while loading ("Unknown savevm section or
 * instance …"), and with a running source QEMU 7.2 still reports
 * `completed` on the source. startMigration must report the failure and
 * leave the source as it was (resumed when it was running). Also: the
 * instance lock keeps hotplug and migration apart.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import type { GkdError } from '../../../plugin/errors';
import { HotplugEngine } from '../../../plugin/hotplug';
import { acceptMigration, startMigration, type MigrationProgress } from '../../../plugin/migration';
import type { QmpClient } from '../../../plugin/qmp';
import { migrationLab, startSource, userBackends, type MigrationLab, type SourceVm, type TestNode } from '../../helpers/migration-pair';
import { makeImage } from '../../helpers/plan-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';

const FAST = { migration_bandwidth: 10_000, migration_downtime: 100 };

async function status(qmp: QmpClient): Promise<string> {
  return (await qmp.execute<{ status: string }>('query-status')).status;
}

describe('startMigration() failures', function () {
  this.timeout(60_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let src: TestNode;
  let dst: TestNode;
  beforeEach(() => {
    lab = migrationLab();
    src = lab.node('src');
    dst = lab.node('dst');
  });
  afterEach(async () => lab.cleanup());

  /** A target started by acceptMigration from the source's runtime minus its last disk. */
  async function targetWithoutLastDisk(s: SourceVm): Promise<string> {
    const sent = (await src.store.read(s.name)).upgraded;
    const short = structuredClone(sent);
    short[3].pop();
    const r = await acceptMigration(dst.ctx, { name: s.name, runtime: short, incoming: `unix:${join(lab.root, 'mig.sock')}`, launch: true, build: { nicBackends: userBackends(sent) } });
    return r.qmp;
  }

  for (const running of [false, true]) {
    it(`reports a target that lacks a device as failed, the source ${running ? 'running again' : 'still paused'}`, async () => {
      // A running source needs no guest here: SeaBIOS finds nothing to boot and idles, which is enough for QEMU to migrate as "running".
      const s = await startSource(src, makeSpec({ disks: 2, nics: 1, hvparams: { disk_type: 'paravirtual', ...FAST } }), { paused: !running });
      assert.equal(await status(s.vm.qmp), running ? 'running' : 'prelaunch');
      const targetQmp = await targetWithoutLastDisk(s);
      const target = dst.launched[0];
      await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp }), (e: GkdError) => {
        assert.equal(e.code, 'GKD_MIGRATION_FAILED', e.message);
        const data = e.data as { source: { status: string; migration: string }; target: { checked: boolean; status: string } };
        assert.equal(data.target.checked, true);
        assert.equal(data.target.status, 'exited');
        assert.equal(data.source.status, running ? 'running' : data.source.status);
        assert.match(e.message, /^Cannot migrate instance "inst1\.example\.com" to "unix:.*mig\.sock": source said "(completed|failed)".*; the target QEMU exited/);
        assert.match(e.message, running ? /the source is running again$/ : /the source stays "(prelaunch|postmigrate)"$/);
        return true;
      });
      // The target really is gone, for the reason QEMU gives.
      const exit = await target.exited;
      assert.equal(exit.code, 1);
      assert.match(target.stderr(), /Unknown savevm section or instance '0000:00:0d\.0\/virtio-blk'/);
      const after = await status(s.vm.qmp);
      assert.ok(running ? after === 'running' : ['prelaunch', 'postmigrate'].includes(after), after);
    });
  }

  it('reports an unreachable target without touching the source', async () => {
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: FAST }), { paused: false });
    await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'nobody.sock')}` }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_FAILED');
      assert.match(e.message, /nobody\.sock/);
      return true;
    });
    assert.equal(await status(s.vm.qmp), 'running');
  });

  it('makes a hotplug during a migration fail at once with GKD_INSTANCE_BUSY, and a migration during a hotplug too', async () => {
    // 1 MiB/s: the paused VM's 0.8 MB of state take most of a second to send.
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', migration_bandwidth: 1 } }));
    const sent = await src.store.read(s.name);
    const acc = await acceptMigration(dst.ctx, { name: s.name, runtime: sent.value, incoming: `unix:${join(lab.root, 'mig.sock')}`, launch: true, build: { nicBackends: userBackends(sent.upgraded) } });
    const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
    let active!: () => void;
    const isActive = new Promise<void>((r) => (active = r));
    const migration = startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp: acc.qmp }, (p: MigrationProgress) => {
      if (p.status === 'active') active();
    });
    await isActive;
    const t0 = Date.now();
    await assert.rejects(engine.addDisk(s.name, { uuid: uuidN(0x3003), mode: 'rw', path: makeImage(join(src.dir, 'late.raw')) }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_INSTANCE_BUSY');
      assert.match(e.message, /a migration is running/);
      return true;
    });
    assert.ok(Date.now() - t0 < 1_000, 'the hotplug did not wait for the migration');
    const done = await migration;
    assert.equal(done.target.confirmed, true);

    // The other way round: a hotplug holds the instance (the engine takes the same lock).
    await src.store.withLock(s.name, async () => {
      await assert.rejects(startMigration(src.ctx, { name: s.name, uri: 'unix:/nonexistent' }), { code: 'GKD_INSTANCE_BUSY' });
    });
  });
});
