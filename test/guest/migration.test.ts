/**
 * Live migration of a booted guest: the source boots from the planner's
 * argv (SCSI disks on virtio-scsi-pci and a NIC), gets a SCSI disk and a
 * NIC hot-added and a disk hot-removed through the hotplug engine, and moves
 * to a target started by acceptMigration on the same machine. The guest
 * keeps running on the target, keeps its uptime and still sees its disks
 * and the data written before the move. Before that, a target lacking the
 * hot-added disk dies while loading, and the source guest is resumed.
 *
 * The target has its own serial sockets (node-local, not in the runtime).
 * Its ttyS0 is a socket whose output this test appends to a copy of the
 * source's console log, so the guest console helper finds the boot marker
 * and command output in one file.
 */
import { strict as assert } from 'node:assert';
import { appendFileSync, copyFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { GkdError } from '../../plugin/errors';
import { HotplugEngine } from '../../plugin/hotplug';
import { readLiveLayout } from '../../plugin/inspect';
import { acceptMigration, startMigration, verifyInstance } from '../../plugin/migration';
import { GuestConsole, guestHvparams, guestKit, guestSerialChardevs, serialArg } from '../helpers/guest';
import { migrationLab, startSource, userBackends, type MigrationLab } from '../helpers/migration-pair';
import { makeImage } from '../helpers/plan-vm';
import { useQemuCleanup } from '../helpers/qemu';
import { macN, makeSpec, uuidN } from '../helpers/specs';

describe('migration of a booted guest', function () {
  this.timeout(90_000);
  useQemuCleanup();
  let lab: MigrationLab;
  const consoles: GuestConsole[] = [];
  let tap: Socket | undefined;
  beforeEach(() => {
    lab = migrationLab();
  });
  afterEach(async () => {
    for (const c of consoles.splice(0)) c.close();
    tap?.destroy();
    await lab.cleanup();
  });

  it('keeps the guest running on the target with its hot-plugged disks and NIC', async () => {
    const kit = guestKit();
    const src = lab.node('src');
    const dst = lab.node('dst');
    const spec = makeSpec({
      disks: 2,
      nics: 1,
      hvparams: {
        disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', reboot_behavior: 'exit',
        migration_bandwidth: 10_000, migration_downtime: 100, ...guestHvparams(kit),
      },
    });
    spec.beparams = { maxmem: 256, vcpus: 1 };
    const srcSerial = { serialLog: join(src.dir, 'ttyS0.log'), cmdSocket: join(src.dir, 'ttyS1.sock') };
    const s = await startSource(src, spec, { paused: false, serials: guestSerialChardevs(srcSerial).map(serialArg) });
    const con = new GuestConsole(srcSerial);
    consoles.push(con);
    await con.waitReady(45_000);
    await con.waitFor((st) => st.scsi.length === 2 && st.scsi.every((d) => d.block !== ''), 10_000, 'two SCSI disks');

    const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
    const hot = { uuid: uuidN(0x3010), mode: 'rw' as const, path: makeImage(join(src.dir, 'hot.raw'), 4 << 20) };
    const added = await engine.addDisk(s.name, hot);
    const target = (added.hvinfo as { 'scsi-id': number })['scsi-id'];
    await engine.addNic(s.name, { uuid: uuidN(0x4010, '66a8-4e6d-8b7e-ec4f69751396'), mac: macN(0x50), backend: { type: 'user' } });
    await engine.removeDisk(s.name, spec.disks[1].uuid);
    const hctl = `0:0:${target}:0`;
    const st = await con.waitFor(
      (x) => x.scsi.length === 2 && x.scsi.some((d) => d.hctl === hctl && d.block !== '') && x.net.length === 2,
      15_000,
      'the hot-added disk and NIC, without the removed disk',
    );
    const hotDev = st.scsi.find((d) => d.hctl === hctl)!.block;
    await con.check(`printf 'before-migration' > /dev/${hotDev} && sync`);
    const uptimeBefore = Number((await con.check('cut -d" " -f1 /proc/uptime')).trim());
    const layout = await src.pool.use(src.qmpSocket(s.name), readLiveLayout);

    // First a target that lacks the hot-added disk: it dies loading the state (the source, with
    // return-path, says "failed"), the source must be resumed and the guest answer there.
    const bad = lab.node('bad');
    const sentBad = (await src.store.read(s.name)).upgraded;
    const short = structuredClone(sentBad);
    short[3] = short[3].filter(([d]) => d.uuid !== hot.uuid);
    const badAcc = await acceptMigration(bad.ctx, {
      name: s.name,
      runtime: short,
      incoming: `unix:${join(lab.root, 'bad.sock')}`,
      launch: true,
      build: { serials: ['null', 'null'], nicBackends: userBackends(sentBad) },
    });
    await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'bad.sock')}`, targetQmp: badAcc.qmp }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_FAILED');
      assert.match(e.message, /; the target('s incoming migration failed| QEMU exited).*; the source is running again$/);
      assert.equal((e.data as { ambiguous: boolean }).ambiguous, false);
      return true;
    });
    assert.match(bad.launched[0].stderr(), /Unknown savevm section or instance/);
    assert.equal((await con.check('echo still-alive')).trim(), 'still-alive');

    // The target: its own serial sockets; ttyS0's output is appended to a copy of the source log.
    const tgtSerial = { serialLog: join(dst.dir, 'ttyS0.log'), cmdSocket: join(dst.dir, 'ttyS1.sock') };
    const ttyS0 = join(dst.dir, 'ttyS0.sock');
    const sent = await src.store.read(s.name);
    const acc = await acceptMigration(dst.ctx, {
      name: s.name,
      runtime: sent.value,
      incoming: `unix:${join(lab.root, 'mig.sock')}`,
      launch: true,
      build: { serials: [serialArg({ kind: 'unix-server', path: ttyS0 }), serialArg({ kind: 'unix-server', path: tgtSerial.cmdSocket })], nicBackends: userBackends(sent.upgraded) },
    });
    copyFileSync(srcSerial.serialLog, tgtSerial.serialLog);
    tap = connect(ttyS0);
    tap.on('data', (b: Buffer) => appendFileSync(tgtSerial.serialLog, b));
    await new Promise<void>((resolve, reject) => tap!.once('connect', resolve).once('error', reject));

    const result = await startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp: acc.qmp });
    assert.equal(result.target.confirmed, true, result.target.detail);
    assert.equal(result.target.status, 'running');
    con.close();

    const tcon = new GuestConsole(tgtSerial);
    consoles.push(tcon);
    const uptimeAfter = Number((await tcon.check('cut -d" " -f1 /proc/uptime')).trim());
    assert.ok(uptimeAfter >= uptimeBefore, `uptime continues (${uptimeBefore} -> ${uptimeAfter})`);
    const after = await tcon.state();
    assert.deepEqual(after.scsi.map((d) => d.hctl).sort(), st.scsi.map((d) => d.hctl).sort());
    assert.equal(after.net.length, 2);
    // Read past the page cache, from the image the target opened.
    await tcon.check('echo 3 > /proc/sys/vm/drop_caches');
    assert.equal((await tcon.check(`head -c 16 /dev/${hotDev}`)).trimEnd(), 'before-migration');

    assert.deepEqual(await dst.pool.use(acc.qmp, readLiveLayout), layout);
    assert.deepEqual((await verifyInstance(dst.ctx, s.name)).differences, []);
  });
});
