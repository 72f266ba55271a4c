/**
 * The hotplug engine against a booted Linux guest (the kit from
 * test/guest/prepare.sh), started from the planner's argv: hot-added disks
 * and NICs appear inside the guest, PCI hot-remove completes with
 * DEVICE_DELETED (removed, not pending) and the runtime file follows, a
 * removal reported pending under a tiny timeout is finished by the engine
 * when the event arrives, and a device from the PCI era (runtime 2.10, id
 * `hotdisk-<uuid group 1>-pci-<slot>`) is removed by that old id.
 *
 * Two boots, one after the other (each suite boots once in `before` and its
 * tests run in order on that guest): disk_type is per instance, so scsi-hd
 * on virtio-scsi and virtio-blk need one each.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RemovedEvent } from '../../plugin/hotplug';
import type { InstanceSpec, PciHvInfo, RuntimeV2_10, ScsiHvInfo } from '../../plugin/types';
import { GuestConsole, guestHvparams, guestKit, guestSerialChardevs, serialArg } from '../helpers/guest';
import { DeviceDeletedLog } from '../helpers/device-deleted';
import { assertRuntimeMatchesQemu, startHotplugVm, type HotplugVm } from '../helpers/hotplug-vm';
import { makeImage } from '../helpers/plan-vm';
import { useQemuCleanup } from '../helpers/qemu';
import { macN, makeSpec, uuidN } from '../helpers/specs';
import { rejectsWithCode } from '../helpers/gkd-assert';

const MiB = 1024 * 1024;

interface Booted {
  h: HotplugVm;
  con: GuestConsole;
  /** DEVICE_DELETED events as the test's own monitor sees them. */
  deleted: DeviceDeletedLog;
  removed: RemovedEvent[];
  /** Resolves at the next onRemoved. */
  nextRemoved(): Promise<RemovedEvent>;
}

/** Boots `spec` with the guest kit as its kernel; `extra` adds hand-made devices. */
async function boot(spec: InstanceSpec, extra?: (dir: string) => string[]): Promise<Booted> {
  const kit = guestKit();
  spec.hvparams = { ...spec.hvparams, ...guestHvparams(kit), reboot_behavior: 'exit' };
  spec.beparams = { ...spec.beparams, maxmem: 256 };
  const removed: RemovedEvent[] = [];
  let wake: ((ev: RemovedEvent) => void) | undefined;
  const paths = (dir: string): { serialLog: string; cmdSocket: string } => ({ serialLog: join(dir, 'ttyS0.log'), cmdSocket: join(dir, 'ttyS1.sock') });
  const h = await startHotplugVm(spec, {
    paused: false,
    serials: (dir) => guestSerialChardevs(paths(dir)).map(serialArg),
    ...(extra === undefined ? {} : { extraArgv: extra }),
    engine: {
      // A TCG guest on a loaded machine can take seconds to answer an ACPI eject; removals the
      // tests expect to complete within the call get room (the pending ones pass their own 1 ms).
      unplugTimeoutMs: 30_000,
      onRemoved: (ev) => {
        removed.push(ev);
        wake?.(ev);
      },
    },
  });
  const deleted = new DeviceDeletedLog(h.vm.qmp);
  const con = new GuestConsole(paths(h.vm.dir));
  await con.waitReady(60_000);
  return { h, con, deleted, removed, nextRemoved: () => new Promise((r) => (wake = r)) };
}

describe('hotplug with a booted guest', function () {
  this.timeout(120_000);
  useQemuCleanup();

  describe('scsi-hd on virtio-scsi-pci, paravirtual NICs (pc)', () => {
    let g: Booted;
    const disk = uuidN(0x5c51);
    const nic = uuidN(0x7a1, '66a8-4e6d-8b7e-ec4f69751396');
    const nic2 = uuidN(0x7a2, '66a8-4e6d-8b7e-ec4f69751396');

    before(async () => {
      g = await boot(makeSpec({ disks: 0, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', nic_type: 'paravirtual' } }));
    });
    after(() => g?.con.close());

    it('a hot-added SCSI disk and NIC appear in the guest, and the runtime file lists them where QEMU has them', async () => {
      const before = await g.con.state();
      assert.equal(before.net.length, 1, 'the planned NIC is there at boot');
      assert.deepEqual(before.scsi, []);

      const d = await g.h.engine.addDisk(g.h.name, { uuid: disk, path: makeImage(join(g.h.vm.dir, 'hot.raw'), 8 * MiB) });
      const target = (d.hvinfo as ScsiHvInfo)['scsi-id'];
      // virtio-scsi tells the guest itself: no rescan.
      const st = await g.con.waitFor((s) => s.scsi.some((x) => x.hctl.endsWith(`:0:${target}:0`) && x.block !== ''), 15_000, `a SCSI disk at target ${target}`);
      const sd = st.scsi.find((x) => x.hctl.endsWith(`:0:${target}:0`))!.block;
      assert.equal((await g.con.check(`cat /sys/block/${sd}/size`)).trim(), String((8 * MiB) / 512));

      const n = await g.h.engine.addNic(g.h.name, { uuid: nic, mac: macN(0x7a1), backend: { type: 'user' } });
      assert.equal((n.hvinfo as PciHvInfo).bus, 'pci.0');
      await g.con.waitFor((s) => s.net.some((x) => x.mac === macN(0x7a1)), 15_000, 'the hot-added NIC');
      await assertRuntimeMatchesQemu(g.h);
    });

    it('a PCI hot-remove completes with DEVICE_DELETED: removed, not pending, and the runtime file follows', async () => {
      const r = await g.h.engine.removeNic(g.h.name, nic);
      assert.equal(r.status, 'removed');
      assert.deepEqual(r.warnings, []);
      await g.deleted.waitFor(r.hvinfo.id, 10_000);
      assert.ok(!(await g.h.runtime())[1].some((x) => x.uuid === nic));
      await assertRuntimeMatchesQemu(g.h);
      await g.con.waitFor((s) => !s.net.some((x) => x.mac === macN(0x7a1)), 10_000, 'the NIC to leave the guest');
    });

    it('a SCSI hot-remove completes and the guest drops the disk', async () => {
      const r = await g.h.engine.removeDisk(g.h.name, disk);
      assert.equal(r.status, 'removed');
      assert.deepEqual(r.warnings, []);
      await g.deleted.waitFor(r.hvinfo.id, 10_000);
      assert.deepEqual((await g.h.runtime())[3], []);
      await assertRuntimeMatchesQemu(g.h);
      await g.con.waitFor((s) => s.scsi.length === 0, 10_000, 'the SCSI disk to leave the guest');
    });

    it('a removal reported pending under a tiny timeout is finished when DEVICE_DELETED arrives', async () => {
      await g.h.engine.addNic(g.h.name, { uuid: nic2, mac: macN(0x7a2), backend: { type: 'user' } });
      // Let the guest bind the driver first: it only acknowledges an eject for a device it knows.
      await g.con.waitFor((s) => s.net.some((x) => x.mac === macN(0x7a2)), 15_000, 'the second NIC');
      const file = readFileSync(g.h.store.path(g.h.name));
      const done = g.nextRemoved();
      const e = await rejectsWithCode(g.h.engine.removeNic(g.h.name, nic2, { unplugTimeoutMs: 1 }), 'GKD_HOTPLUG_PENDING');
      const id = (e.data as { hvinfo: PciHvInfo }).hvinfo.id;
      assert.deepEqual(readFileSync(g.h.store.path(g.h.name)), file, 'pending must not touch the runtime file');
      assert.deepEqual(g.h.engine.pending().map((p) => p.uuid), [nic2]);

      const ev = await done;
      assert.deepEqual(ev, { name: g.h.name, kind: 'nic', uuid: nic2, id, warnings: [] });
      // The engine may see the device gone from QOM (its poll) before the test's own monitor
      // receives DEVICE_DELETED: wait for the event there rather than race it.
      await g.deleted.waitFor(id, 10_000);
      assert.deepEqual(g.h.engine.pending(), []);
      assert.ok(!(await g.h.runtime())[1].some((x) => x.uuid === nic2));
      await assertRuntimeMatchesQemu(g.h);
      await g.con.waitFor((s) => !s.net.some((x) => x.mac === macN(0x7a2)), 10_000, 'the second NIC to leave the guest');
    });
  });

  describe('virtio-blk, with a disk from the PCI era (pc)', () => {
    let g: Booted;
    // Hot-added by a 2.10-2.15 release at slot 5: QEMU knows it by the PCI-era id, the runtime file only by `pci: 5`.
    const old = uuidN(0x01d, '7c07-4913-8e3b-2f1e9a3c5d70');
    const oldId = 'hotdisk-0000001d-pci-5';
    const disk = uuidN(0xb1b);

    before(async () => {
      g = await boot(makeSpec({ disks: 0, nics: 0, hvparams: { disk_type: 'paravirtual' } }), (dir) => [
        // As the PCI era started it: a -drive (auto-deleted with its device), then the device.
        '-drive', `file=${makeImage(join(dir, 'old.raw'), 4 * MiB)},if=none,format=raw,id=${oldId}`,
        '-device', `virtio-blk-pci,id=${oldId},drive=${oldId},bus=pci.0,addr=0x5`,
      ]);
      const rt = await g.h.runtime();
      const v2_10: RuntimeV2_10 = [rt[0], [], rt[2], [[{ uuid: old, mode: 'rw', size: 4, pci: 5 }, join(g.h.vm.dir, 'old.raw'), null]]];
      await g.h.store.write(g.h.name, v2_10, { format: '2.10' });
    });
    after(() => g?.con.close());

    it('removes a PCI-era disk by its old id and writes the runtime without it', async () => {
      assert.deepEqual(await g.con.blockDevices(), ['vda'], 'the PCI-era disk is the only one at boot');
      const read = await g.h.store.read(g.h.name);
      assert.equal(read.format, '2.10');
      assert.deepEqual(read.upgraded[3][0][0].hvinfo, { driver: 'virtio-blk-pci', id: oldId, addr: '0x5', bus: 'pci.0' });
      const r = await g.h.engine.removeDisk(g.h.name, old);
      assert.equal(r.status, 'removed');
      assert.equal(r.hvinfo.id, oldId);
      await g.deleted.waitFor(oldId, 10_000);
      // A -drive goes away with its device; there is no block node left to delete.
      assert.equal(r.warnings.length, 1);
      assert.match(r.warnings[0], new RegExp(`^blockdev-del ${oldId}: `));
      const after = await g.h.store.read(g.h.name);
      assert.deepEqual(after.value[3], [], 'the file itself lists no disk');
      assert.deepEqual(after.upgraded[3], []);
      const blocks = await g.h.vm.qmp.execute<Array<{ qdev?: string }>>('query-block');
      assert.ok(!blocks.some((b) => b.qdev?.includes(oldId)), 'QEMU still has the drive');
      await assertRuntimeMatchesQemu(g.h);
      await g.con.waitFor((s) => s.block.length === 0, 10_000, 'vda to leave the guest');
    });

    it('a hot-added virtio-blk disk appears in the guest and its PCI hot-remove completes', async () => {
      assert.deepEqual(await g.con.blockDevices(), [], 'the PCI-era disk is gone');
      const d = await g.h.engine.addDisk(g.h.name, { uuid: disk, path: makeImage(join(g.h.vm.dir, 'new.raw'), 6 * MiB) });
      assert.equal(d.hvinfo.driver, 'virtio-blk-pci');
      const st = await g.con.waitFor((s) => s.block.includes('vda'), 15_000, 'vda');
      assert.deepEqual(st.block, ['vda']);
      assert.equal((await g.con.check('cat /sys/block/vda/size')).trim(), String((6 * MiB) / 512));
      await assertRuntimeMatchesQemu(g.h);

      const r = await g.h.engine.removeDisk(g.h.name, disk);
      assert.equal(r.status, 'removed');
      assert.deepEqual(r.warnings, []);
      await g.deleted.waitFor(d.hvinfo.id, 10_000);
      await assertRuntimeMatchesQemu(g.h);
      await g.con.waitFor((s) => s.block.length === 0, 10_000, 'vda to leave the guest');
    });
  });
});
