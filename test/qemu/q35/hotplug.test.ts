/**
 * Hot-add on q35 through the hotplug engine, on real QEMU without a guest:
 * devices go onto spare root ports (never pcie.0) at slot 0, "auto" spare
 * ports let an instance grow to exactly 16 disks and 8 NICs, the error when
 * no port is left names hvparams.kvm_pcie_spare_ports and changes nothing,
 * SCSI disks go onto the controller (itself behind a port) without using
 * ports, and a spare port taken behind the plugin's back (with or without a
 * device id) is skipped. Hot-added devices are checked through QOM while
 * paused and through query-pci once firmware has run.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { GkdError } from '../../../plugin/errors';
import { readLiveLayout } from '../../../plugin/inspect';
import { parsePorts } from '../../../plugin/planner';
import type { HvInfo, PciHvInfo, ScsiHvInfo } from '../../../plugin/types';
import { assertRuntimeMatchesQemu, startHotplugVm, type HotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';
import { assertPciTree, runFirmware } from './pci-tree';
import { rejectsWithCode } from '../../helpers/gkd-assert';

const nicUuid = (n: number): string => uuidN(n, '66a8-4e6d-8b7e-ec4f69751396');

async function addDisks(h: HotplugVm, from: number): Promise<{ added: HvInfo[]; error: GkdError }> {
  const added: HvInfo[] = [];
  for (let n = 0; n < 300; n++) {
    try {
      added.push((await h.engine.addDisk(h.name, { uuid: uuidN(from + n), path: h.image(`hot${from + n}.raw`) })).hvinfo);
    } catch (e) {
      assert.ok(e instanceof GkdError, String(e));
      return { added, error: e };
    }
  }
  assert.fail('disk hot-add never ran out');
}

async function addNics(h: HotplugVm, from: number): Promise<{ added: HvInfo[]; error: GkdError }> {
  const added: HvInfo[] = [];
  for (let n = 0; n < 300; n++) {
    try {
      added.push((await h.engine.addNic(h.name, { uuid: nicUuid(from + n), mac: macN(from + n), backend: { type: 'user' } })).hvinfo);
    } catch (e) {
      assert.ok(e instanceof GkdError, String(e));
      return { added, error: e };
    }
  }
  assert.fail('NIC hot-add never ran out');
}

/** Port ids with something behind them in QEMU (QOM parent_bus of every peripheral). */
async function busyPorts(h: HotplugVm): Promise<string[]> {
  return (await readLiveLayout(h.vm.qmp)).map((d) => d.bus).filter((b): b is string => b !== undefined && /^rp\d+$/.test(b)).sort();
}

describe('q35 hot-add onto spare root ports (real QEMU, no guest)', function () {
  this.timeout(120_000);
  useQemuCleanup();

  it('grows a default q35 instance to exactly 16 virtio disks and 8 NICs, one per port, then refuses', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams: { machine_version: 'q35' } }));
    const ports = parsePorts(h.plan.runtime[0]).map((p) => p.id);
    const disks = await addDisks(h, 0x5000);
    const nics = await addNics(h, 0x6000);
    // Ganeti's limits end the growth, not a lack of ports.
    assert.equal(disks.added.length, 15);
    assert.equal(disks.error.code, 'GKD_CAPACITY');
    assert.equal(disks.error.field, 'disks');
    assert.equal(nics.added.length, 7);
    assert.equal(nics.error.field, 'nics');
    for (const hv of [...disks.added, ...nics.added]) {
      assert.match(hv.bus, /^rp\d+$/);
      assert.equal((hv as PciHvInfo).addr, '0x0');
    }
    // Every port now carries exactly one device, and nothing was left spare.
    const busy = await busyPorts(h);
    assert.equal(new Set(busy).size, busy.length, 'two devices behind one port');
    assert.deepEqual(busy, [...ports].sort());
    await assertRuntimeMatchesQemu(h);
    // The guest-facing tree: each hot-added device alone at 00.0 behind its port.
    const rt = await h.runtime();
    assertPciTree(await runFirmware(h.vm.qmp), rt, [...rt[3].map((e) => e[0].hvinfo as HvInfo), ...rt[1].map((n) => n.hvinfo as HvInfo)]);
    await h.close();
  });

  it('says which hvparam to raise when no spare port is left, and changes nothing', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 2, nics: 1, hvparams: { machine_version: 'q35', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', kvm_pcie_spare_ports: 2 } }));
    // SCSI disks go onto the controller (behind rp0), not onto ports.
    const d = await h.engine.addDisk(h.name, { uuid: uuidN(0x5100), path: h.image('s.raw') });
    assert.deepEqual({ ...(d.hvinfo as ScsiHvInfo), id: '' }, { driver: 'scsi-hd', id: '', bus: 'scsi.0', channel: 0, 'scsi-id': 2, lun: 0 });
    const nics = await addNics(h, 0x6100);
    assert.deepEqual(nics.added.map((x) => x.bus), ['rp2', 'rp3'], 'rp0: the controller, rp1: the NIC, then the two spares');
    assert.equal(nics.error.code, 'GKD_CAPACITY');
    assert.equal(nics.error.field, 'hvparams.kvm_pcie_spare_ports');
    assert.match(nics.error.message, /no spare PCIe root port.*kvm_pcie_spare_ports/);
    const before = readFileSync(h.store.path(h.name));
    const live = await readLiveLayout(h.vm.qmp);
    await rejectsWithCode(h.engine.addNic(h.name, { uuid: nicUuid(0x6199), mac: macN(0x99), backend: { type: 'user' } }), 'GKD_CAPACITY');
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    assert.deepEqual(await readLiveLayout(h.vm.qmp), live);
    // SCSI disks still fit: targets, not ports, are their limit.
    await h.engine.addDisk(h.name, { uuid: uuidN(0x5101), path: h.image('s2.raw') });
    await assertRuntimeMatchesQemu(h);
    // A SCSI disk removes without a guest on q35 too, and its target is reused.
    const r = await h.engine.removeDisk(h.name, uuidN(0x5100));
    assert.equal(r.status, 'removed');
    const again = await h.engine.addDisk(h.name, { uuid: uuidN(0x5102), path: h.image('s3.raw') });
    assert.equal((again.hvinfo as ScsiHvInfo)['scsi-id'], 2);
    await assertRuntimeMatchesQemu(h);
    const rt = await h.runtime();
    assertPciTree(await runFirmware(h.vm.qmp), rt, rt[1].map((n) => n.hvinfo as HvInfo));
    await h.close();
  });

  it('skips spare ports taken behind the plugin\'s back, by a device with an id and by one without', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams: { machine_version: 'q35', kvm_pcie_spare_ports: 4 } }));
    // rp0: disk, rp1: NIC, rp2-rp5 spare.
    await h.vm.qmp.execute('device_add', { driver: 'virtio-rng-pci', id: 'intruder', bus: 'rp2', addr: '0x0' });
    await h.vm.qmp.execute('device_add', { driver: 'virtio-rng-pci', bus: 'rp3', addr: '0x0' });
    const a = await h.engine.addDisk(h.name, { uuid: uuidN(0x5200), path: h.image('a.raw') });
    assert.equal(a.hvinfo.bus, 'rp4');
    const b = await h.engine.addNic(h.name, { uuid: nicUuid(0x6200), mac: macN(0x20), backend: { type: 'user' } });
    assert.equal(b.hvinfo.bus, 'rp5');
    const e = await rejectsWithCode(h.engine.addNic(h.name, { uuid: nicUuid(0x6201), mac: macN(0x21), backend: { type: 'user' } }), 'GKD_CAPACITY');
    assert.equal(e.field, 'hvparams.kvm_pcie_spare_ports');
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });
});
