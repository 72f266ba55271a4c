/**
 * q35 with a booted Linux guest (the kit from test/guest/prepare.sh),
 * started from the planner's argv: devices behind root ports are seen by
 * the guest at 00.0 of the bus firmware gave their port; a virtio disk and
 * a NIC hot-added onto spare ports appear in the guest; hot-remove
 * completes with DEVICE_DELETED (status removed: QEMU 7.2 uses ACPI hotplug
 * on root ports) and frees the port, and a re-add lands on the freed port
 * and is seen again. Then the instance migrates to a second "node" with
 * the guest running: the target is verified clean, the guest there still
 * has every device, and hot-add onto a spare port works on the target.
 * A second boot covers a SCSI disk hot-added onto a virtio-scsi-pci
 * controller that itself sits behind a root port (disk_type is per
 * instance). One guest at a time; each suite boots once in `before`.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { HotplugEngine } from '../../plugin/hotplug';
import { readLiveLayout } from '../../plugin/inspect';
import { acceptMigration, startMigration, verifyInstance } from '../../plugin/migration';
import type { QmpClient } from '../../plugin/qmp';
import type { PciHvInfo, RuntimeV2_16, ScsiHvInfo } from '../../plugin/types';
import { DeviceDeletedLog } from '../helpers/device-deleted';
import { GuestConsole, guestHvparams, guestKit, guestSerialChardevs, serialArg, type GuestState } from '../helpers/guest';
import { migrationLab, startSource, userBackends, type MigrationLab, type SourceVm, type TestNode } from '../helpers/migration-pair';
import { makeImage } from '../helpers/plan-vm';
import { useQemuCleanup } from '../helpers/qemu';
import { macN, makeSpec, uuidN } from '../helpers/specs';
import type { PciBus } from '../qemu/q35/pci-tree';

const MiB = 1024 * 1024;
const FAST = { migration_bandwidth: 10_000, migration_downtime: 100 };
const nicUuid = (n: number): string => uuidN(n, '66a8-4e6d-8b7e-ec4f69751396');

const paths = (dir: string): { serialLog: string; cmdSocket: string } => ({ serialLog: join(dir, 'ttyS0.log'), cmdSocket: join(dir, 'ttyS1.sock') });

interface Booted {
  lab: MigrationLab;
  src: TestNode;
  vm: SourceVm;
  engine: HotplugEngine;
  con: GuestConsole;
  /** DEVICE_DELETED events as the test's own monitor sees them. */
  deleted: DeviceDeletedLog;
}

async function boot(hvparams: Record<string, unknown>, disks: number, nics: number): Promise<Booted> {
  const kit = guestKit();
  const lab = migrationLab();
  const src = lab.node('src');
  const spec = makeSpec({ disks, nics, hvparams: { machine_version: 'q35', ...hvparams, ...FAST, ...guestHvparams(kit), reboot_behavior: 'exit' } });
  spec.beparams = { ...spec.beparams, maxmem: 256 };
  const vm = await startSource(src, spec, { paused: false, serials: guestSerialChardevs(paths(src.dir)).map(serialArg) });
  const deleted = new DeviceDeletedLog(vm.vm.qmp);
  const con = new GuestConsole(paths(src.dir));
  await con.waitReady(60_000);
  const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg', unplugTimeoutMs: 30_000 });
  return { lab, src, vm, engine, con, deleted };
}

/** The guest PCI address (`0000:BB:00.0`) a device behind root port `port` must have, from the running VM's query-pci. */
async function guestAddressBehind(qmp: QmpClient, port: string): Promise<string> {
  const pci = await qmp.execute<PciBus[]>('query-pci');
  const p = pci[0].devices.find((d) => d.qdev_id === port);
  assert.ok(p?.pci_bridge, `query-pci lacks port ${port}`);
  return `0000:${p.pci_bridge.bus.secondary.toString(16).padStart(2, '0')}:00.0`;
}

function pciAt(s: GuestState, address: string): { vendor: string; driver: string } | undefined {
  return s.pci.find((d) => d.address === address);
}

/** Spare ports: planned ports with nothing behind them in QEMU. */
async function emptyPorts(qmp: QmpClient, runtime: RuntimeV2_16): Promise<string[]> {
  const busy = new Set((await readLiveLayout(qmp, { anonymous: true })).map((d) => d.bus));
  return runtime[0].map(String).flatMap((a) => /^pcie-root-port,id=(rp\d+),/.exec(a)?.[1] ?? []).filter((p) => !busy.has(p));
}

describe('q35 with a booted guest', function () {
  this.timeout(120_000);
  useQemuCleanup();

  describe('virtio disks and NICs on root ports, then migration', () => {
    let g: Booted;
    const disk1 = uuidN(0x9d01);
    const disk2 = uuidN(0x9d02);
    const disk3 = uuidN(0x9d03);
    const nic1 = nicUuid(0x9e01);
    const nic2 = nicUuid(0x9e02);
    let diskPort = '';
    let nicPort = '';

    before(async () => {
      g = await boot({ disk_type: 'paravirtual', nic_type: 'paravirtual' }, 1, 1);
    });
    after(async () => {
      g?.con.close();
      await g?.lab.cleanup();
    });

    it('the guest sees the planned disk and NIC at 00.0 behind their ports, and instance.verify is clean', async () => {
      const rt = (await g.src.store.read(g.vm.name)).upgraded;
      const s = await g.con.state();
      assert.deepEqual(s.block, ['vda']);
      assert.deepEqual(s.net.map((n) => n.mac), [macN(1)]);
      for (const d of g.vm.plan.devices) {
        const at = await guestAddressBehind(g.vm.vm.qmp, (d.hvinfo as PciHvInfo).bus);
        assert.equal(pciAt(s, at)?.driver, 'virtio-pci', `${d.id} at ${at} in the guest`);
      }
      // The guest's bridges: every planned root port, and nothing of ours directly on bus 0.
      const ports = rt[0].filter((a) => String(a).startsWith('pcie-root-port')).length;
      assert.equal(s.pci.filter((d) => d.address.startsWith('0000:00:') && d.class === '0x060400').length, ports);
      assert.equal((await verifyInstance(g.src.ctx, g.vm.name)).clean, true);
    });

    it('a virtio disk and a NIC hot-added onto spare ports appear in the guest', async () => {
      const spare = await emptyPorts(g.vm.vm.qmp, (await g.src.store.read(g.vm.name)).upgraded);
      const d = await g.engine.addDisk(g.vm.name, { uuid: disk1, path: makeImage(join(g.src.dir, 'hot1.raw'), 8 * MiB) });
      diskPort = d.hvinfo.bus;
      assert.equal(diskPort, spare[0]);
      assert.equal((d.hvinfo as PciHvInfo).addr, '0x0');
      const n = await g.engine.addNic(g.vm.name, { uuid: nic1, mac: macN(0x91), backend: { type: 'user' } });
      nicPort = n.hvinfo.bus;
      assert.equal(nicPort, spare[1]);
      const dAt = await guestAddressBehind(g.vm.vm.qmp, diskPort);
      const nAt = await guestAddressBehind(g.vm.vm.qmp, nicPort);
      const s = await g.con.waitFor((x) => x.block.includes('vdb') && x.net.some((y) => y.mac === macN(0x91)), 15_000, 'vdb and the new NIC');
      assert.equal(pciAt(s, dAt)?.driver, 'virtio-pci');
      assert.equal(pciAt(s, nAt)?.driver, 'virtio-pci');
      assert.equal((await g.con.check('cat /sys/block/vdb/size')).trim(), String((8 * MiB) / 512));
      assert.equal((await verifyInstance(g.src.ctx, g.vm.name)).clean, true);
    });

    it('hot-remove completes with DEVICE_DELETED and frees the port; a re-add lands on it and the guest sees it again', async () => {
      const rd = await g.engine.removeDisk(g.vm.name, disk1);
      assert.equal(rd.status, 'removed');
      await g.deleted.waitFor(rd.hvinfo.id);
      const rn = await g.engine.removeNic(g.vm.name, nic1);
      assert.equal(rn.status, 'removed');
      await g.deleted.waitFor(rn.hvinfo.id);
      await g.con.waitFor((x) => !x.block.includes('vdb') && !x.net.some((y) => y.mac === macN(0x91)), 10_000, 'vdb and the NIC to leave the guest');
      const spare = await emptyPorts(g.vm.vm.qmp, (await g.src.store.read(g.vm.name)).upgraded);
      assert.ok(spare.includes(diskPort) && spare.includes(nicPort), `freed ports ${diskPort} ${nicPort} among ${spare.join(' ')}`);
      assert.equal((await verifyInstance(g.src.ctx, g.vm.name)).clean, true);

      const d = await g.engine.addDisk(g.vm.name, { uuid: disk2, path: makeImage(join(g.src.dir, 'hot2.raw'), 4 * MiB) });
      assert.equal(d.hvinfo.bus, diskPort);
      const n = await g.engine.addNic(g.vm.name, { uuid: nic2, mac: macN(0x92), backend: { type: 'user' } });
      assert.equal(n.hvinfo.bus, nicPort);
      await g.con.waitFor((x) => x.block.includes('vdb') && x.net.some((y) => y.mac === macN(0x92)), 15_000, 'the re-added disk and NIC');
      assert.equal((await g.con.check('cat /sys/block/vdb/size')).trim(), String((4 * MiB) / 512));
      assert.equal((await verifyInstance(g.src.ctx, g.vm.name)).clean, true);
    });

    it('migrates with the guest running: the target is verified clean, the guest keeps every device and takes a further hot-add', async () => {
      const dst = g.lab.node('dst');
      const sent = await g.src.store.read(g.vm.name);
      const before = await readLiveLayout(g.vm.vm.qmp);
      const incoming = `unix:${join(g.lab.root, 'mig.sock')}`;
      const accepted = await acceptMigration(dst.ctx, {
        name: g.vm.name,
        runtime: sent.value,
        incoming,
        launch: true,
        build: { nicBackends: userBackends(sent.upgraded), serials: guestSerialChardevs(paths(dst.dir)).map(serialArg) },
      });
      const result = await startMigration(g.src.ctx, { name: g.vm.name, uri: incoming, targetQmp: accepted.qmp });
      assert.equal(result.target.confirmed, true, result.target.detail);
      assert.equal(result.target.status, 'running');
      // The launcher's own connection to the target, adopted by the pool: it stays open.
      const target = await dst.pool.use(accepted.qmp, async (c) => c);
      assert.deepEqual(await readLiveLayout(target), before, 'target layout equals the source layout');
      const v = await verifyInstance(dst.ctx, g.vm.name);
      assert.deepEqual(v.differences, []);

      // The same guest, now on the target's serial ports. It printed its ready marker on the
      // source's console, so this console is told it is ready rather than waiting for it again.
      g.con.close();
      const con = new GuestConsole(paths(dst.dir));
      (con as unknown as { ready: unknown }).ready = { kernel: 'migrated', uptime: 0, elapsedMs: 0 };
      g.con = con;
      const s = await con.waitFor((x) => x.block.includes('vdb') && x.net.some((y) => y.mac === macN(0x92)), 15_000, 'the devices on the target');
      assert.deepEqual(s.block.sort(), ['vda', 'vdb']);

      const engine = new HotplugEngine({ store: dst.store, connections: dst.pool, qmpSocket: () => accepted.qmp, accel: 'tcg', unplugTimeoutMs: 30_000 });
      const spare = await emptyPorts(target, (await dst.store.read(g.vm.name)).upgraded);
      const d = await engine.addDisk(g.vm.name, { uuid: disk3, path: makeImage(join(dst.dir, 'hot3.raw'), 2 * MiB) });
      assert.equal(d.hvinfo.bus, spare[0]);
      const at = await guestAddressBehind(target, d.hvinfo.bus);
      const s2 = await con.waitFor((x) => x.block.includes('vdc'), 15_000, 'vdc on the target');
      assert.equal(pciAt(s2, at)?.driver, 'virtio-pci');
      assert.equal((await verifyInstance(dst.ctx, g.vm.name)).clean, true);
    });
  });

  describe('a SCSI disk on a virtio-scsi-pci controller behind a root port', () => {
    let g: Booted;
    const disk1 = uuidN(0x9f01);
    const disk2 = uuidN(0x9f02);

    before(async () => {
      g = await boot({ disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 1, 0);
    });
    after(async () => {
      g?.con.close();
      await g?.lab.cleanup();
    });

    it('hot-adds a SCSI disk the guest sees, removes it (DEVICE_DELETED) and re-adds it at the freed target', async () => {
      const rt = (await g.src.store.read(g.vm.name)).upgraded;
      const ctrlPort = /virtio-scsi-pci,id=scsi,bus=(rp\d+),addr=0x0/.exec(rt[0].map(String).join(' '))?.[1];
      assert.ok(ctrlPort, 'the controller sits behind a port');
      const ctrlAt = await guestAddressBehind(g.vm.vm.qmp, ctrlPort);
      const s0 = await g.con.state();
      assert.equal(pciAt(s0, ctrlAt)?.driver, 'virtio-pci', `the controller at ${ctrlAt} in the guest`);
      assert.equal(s0.scsi.length, 1);

      const d = await g.engine.addDisk(g.vm.name, { uuid: disk1, path: makeImage(join(g.src.dir, 's1.raw'), 8 * MiB) });
      const t = (d.hvinfo as ScsiHvInfo)['scsi-id'];
      assert.equal(d.hvinfo.bus, 'scsi.0');
      const hasTarget = (x: GuestState): boolean => x.scsi.some((y) => y.hctl.endsWith(`:0:${t}:0`) && y.block !== '');
      await g.con.waitFor(hasTarget, 15_000, `a SCSI disk at target ${t}`);
      assert.equal((await verifyInstance(g.src.ctx, g.vm.name)).clean, true);

      const r = await g.engine.removeDisk(g.vm.name, disk1);
      assert.equal(r.status, 'removed');
      await g.deleted.waitFor(r.hvinfo.id);
      await g.con.waitFor((x) => !hasTarget(x), 10_000, 'the SCSI disk to leave the guest');

      const again = await g.engine.addDisk(g.vm.name, { uuid: disk2, path: makeImage(join(g.src.dir, 's2.raw'), 4 * MiB) });
      assert.equal((again.hvinfo as ScsiHvInfo)['scsi-id'], t);
      const s = await g.con.waitFor(hasTarget, 15_000, `the re-added disk at target ${t}`);
      const sd = s.scsi.find((y) => y.hctl.endsWith(`:0:${t}:0`))!.block;
      assert.equal((await g.con.check(`cat /sys/block/${sd}/size`)).trim(), String((4 * MiB) / 512));
      assert.equal((await verifyInstance(g.src.ctx, g.vm.name)).clean, true);
    });
  });
});
