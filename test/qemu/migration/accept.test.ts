/**
 * acceptMigration() on the target: it refuses what this node cannot run
 * exactly, before writing anything or starting QEMU, and accepts every
 * supported runtime format (upgrading in memory).
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import type { GkdError } from '../../../plugin/errors';
import { acceptMigration, type AcceptParams } from '../../../plugin/migration';
import { planInstance } from '../../../plugin/planner';
import { convertRuntime, detectFormat } from '../../../plugin/runtime';
import type { RuntimeV2_16 } from '../../../plugin/types';
import { migrationLab, userBackends, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { localize } from '../../helpers/plan-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec } from '../../helpers/specs';

const NAME = 'inst1.example.com';

describe('acceptMigration()', function () {
  this.timeout(30_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let dst: TestNode;
  let launches: number;
  let runtime: RuntimeV2_16;
  beforeEach(() => {
    lab = migrationLab();
    dst = lab.node('dst');
    launches = 0;
    const launch = dst.ctx.launcher!;
    dst.ctx.launcher = (argv, opts) => {
      launches++;
      return launch(argv, opts);
    };
    runtime = planInstance(localize(makeSpec({ disks: 2, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }), lab.root)).runtime;
  });
  afterEach(async () => lab.cleanup());

  function params(rt: unknown, extra: Partial<AcceptParams> = {}): AcceptParams {
    return { name: NAME, runtime: rt, incoming: `unix:${join(lab.root, 'mig.sock')}`, launch: true, ...extra };
  }

  /** Refused with `field` (and `device`), and nothing happened on this node. */
  async function assertRefused(p: AcceptParams, field: RegExp, message: RegExp, device?: string): Promise<void> {
    await assert.rejects(acceptMigration(dst.ctx, p), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_REFUSED', e.message);
      assert.match(e.field ?? '', field);
      assert.match(e.message, message);
      assert.ok(e.message.startsWith(`Cannot accept the migration of "${p.name}": `), e.message);
      if (device !== undefined) assert.equal(e.device, device);
      return true;
    });
    assert.equal(launches, 0, 'no QEMU was started');
    await assert.rejects(dst.store.read(p.name), { code: 'GKD_RUNTIME_NOT_FOUND' });
  }

  it('refuses a machine type the local QEMU lacks', async () => {
    const rt = structuredClone(runtime);
    rt[0][rt[0].indexOf('-machine') + 1] = 'pc-i440fx-99.0';
    await assertRefused(params(rt), /^runtime\[0\]\[\d+\]$/, /machine type "pc-i440fx-99\.0" is not available in the local QEMU/);
  });

  it('refuses a missing disk path, naming the disk', async () => {
    const rt = structuredClone(runtime);
    rt[3][1][1] = join(lab.root, 'gone.raw');
    const id = (rt[3][1][0].hvinfo as { id: string }).id;
    await assertRefused(params(rt), /^runtime\[3\]\[1\]\[1\]$/, /disk path ".*gone\.raw" does not exist on this node/, id);
  });

  it('refuses a device model the local QEMU lacks', async () => {
    const rt = structuredClone(runtime);
    const i = rt[0].findIndex((x) => typeof x === 'string' && x.startsWith('virtio-scsi-pci,'));
    rt[0][i] = String(rt[0][i]).replace('virtio-scsi-pci', 'no-such-hba');
    await assertRefused(params(rt), /^runtime\[0\]\[\d+\]$/, /device model "no-such-hba" is not available/, 'scsi');
  });

  for (const [title, garbage] of [['an object', { a: 1 }], ['a short array', [1, 2]], ['a string', 'kvm -m 128'], ['a 2.16 shape with a bad hvinfo', [[], [{ uuid: 'x', hvinfo: { driver: 'e1000' } }], {}, []]]] as const) {
    it(`refuses a garbage runtime (${title})`, async () => {
      await assertRefused(params(garbage), /^runtime/, /runtime|format|hvinfo/i);
    });
  }

  it('refuses an incoming URI QEMU would not take, and a runtime of another instance', async () => {
    await assertRefused(params(runtime, { incoming: 'exec:cat' }), /^incoming$/, /"exec:cat" is not "tcp:HOST:PORT", "unix:\/PATH" or "defer"/);
    await assertRefused(params(runtime, { name: 'other.example.com' }), /^runtime\[0\]$/, /kvm_cmd names instance "inst1\.example\.com"/);
  });

  it('accepts a 2.10 runtime, writes it upgraded and starts QEMU waiting for the stream', async () => {
    const spec = makeSpec({ disks: 2, nics: 1, hvparams: { disk_type: 'paravirtual' } });
    const rt216 = planInstance(localize(spec, lab.root)).runtime;
    // 2.10 names devices by slot (hotdisk-…-pci-12); the places stay the same.
    const rt210 = convertRuntime(structuredClone(rt216), '2.10', { allowIdChange: true }).value;
    assert.equal(detectFormat(rt210), '2.10');
    const r = await acceptMigration(dst.ctx, params(rt210, { build: { nicBackends: userBackends(rt216) } }));
    assert.equal(r.format, '2.10');
    assert.equal(r.status, 'inmigrate');
    assert.equal(launches, 1);
    assert.deepEqual(r.argv.slice(-2), ['-incoming', `unix:${join(lab.root, 'mig.sock')}`]);
    const stored = await dst.store.read(NAME);
    assert.equal(stored.format, '2.16');
    const place = (h: unknown): unknown => ({ driver: (h as { driver: string }).driver, addr: (h as { addr: string }).addr });
    assert.deepEqual(stored.upgraded[3].map(([d]) => place(d.hvinfo)), rt216[3].map(([d]) => place(d.hvinfo)));
    assert.equal((await dst.pool.use(r.qmp, (live) => live.execute<{ status: string }>('query-status'))).status, 'inmigrate');
  });

  it('refuses an instance that already runs on this node', async () => {
    const r = await acceptMigration(dst.ctx, params(runtime, { build: { nicBackends: userBackends(runtime) } }));
    const before = await dst.store.read(NAME);
    await assert.rejects(acceptMigration(dst.ctx, params(runtime)), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_REFUSED');
      assert.equal(e.field, 'name');
      assert.match(e.message, /a QEMU already serves its QMP socket/);
      return true;
    });
    assert.equal(launches, 1);
    assert.equal((await dst.store.read(NAME)).text, before.text);
    assert.equal(r.status, 'inmigrate');
  });

  it('refuses an unknown migration capability before starting QEMU, naming the hvparam', async () => {
    const rt = structuredClone(runtime);
    rt[2].migration_caps = 'xbzrle:no-such-cap';
    await assertRefused(params(rt), /^runtime\[2\]\.migration_caps$/, /"no-such-cap" is not a migration capability of QEMU 7\.2/);
  });

  it('refuses runtimes whose devices have no id (2.9, 2.10 without slots), naming them, before starting QEMU', async () => {
    const spec = makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual' } });
    const rt216 = planInstance(localize(spec, lab.root)).runtime;
    const rt210 = convertRuntime(structuredClone(rt216), '2.10', { allowIdChange: true }).value;
    delete rt210[1][0].pci;
    const why = 'has no device id: started by a release without device ids; restart the instance under this release before migrating';
    await assertRefused(params(rt210), /^runtime\[1\]\[0\]\.hvinfo$/, new RegExp(`: nic with uuid "${spec.nics[0].uuid}" \\(nics\\[0\\]\\) ${why}$`));
    // 2.9: the NIC has no slot and the disk is a -drive inside kvm_cmd.
    const rt29 = convertRuntime(structuredClone(rt210), '2.9', { force: true }).value;
    rt29[0].push('-drive', `file=${rt216[3][0][1]},format=raw,if=virtio`);
    await assertRefused(params(rt29), /^runtime\[1\]\[0\]\.hvinfo$/, /: nic with uuid ".*" \(nics\[0\]\) and disk "-drive file=.*,if=virtio" \(kvm_cmd\[\d+\]\) have no device id: started by a release without device ids/);
  });

  it('refuses to replace a runtime file the instance already has on this node, leaving it as it was', async () => {
    await dst.store.write(NAME, runtime);
    const before = await dst.store.read(NAME);
    await assert.rejects(acceptMigration(dst.ctx, params(runtime, { launch: false })), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_REFUSED');
      assert.equal(e.field, 'name');
      assert.match(e.message, /: name: a runtime file for it already exists on this node \(".*inst1\.example\.com\.runtime"\); if no QEMU runs the instance here, remove it \(instance\.cleanup\) and retry$/);
      return true;
    });
    await assert.rejects(acceptMigration(dst.ctx, params(runtime)), { code: 'GKD_MIGRATION_REFUSED', field: 'name' });
    assert.equal(launches, 0);
    assert.equal((await dst.store.read(NAME)).text, before.text);
    assert.deepEqual((await dst.store.read(NAME)).stamp, before.stamp);
  });

  it('returns the argv without starting QEMU when not asked to launch', async () => {
    const r = await acceptMigration(dst.ctx, params(runtime, { launch: false, incoming: 'tcp:127.0.0.1:8102' }));
    assert.equal(launches, 0);
    assert.equal(r.process, undefined);
    assert.deepEqual(r.argv.slice(-2), ['-incoming', 'tcp:127.0.0.1:8102']);
    assert.ok(!r.argv.includes('-S'), 'the target takes the run state from the source');
    assert.equal((await dst.store.read(NAME)).format, '2.16');
  });
});
