/**
 * q35 plans on real QEMU: every disk type family (virtio-blk, scsi-hd on
 * virtio-scsi-pci, lsi and megasas, IDE on the ICH9 AHCI) and every NIC
 * type start, and each device is where hvinfo says: read through QOM on
 * the paused VM (query-pci hides devices behind root ports until firmware
 * ran), then through query-pci nesting once the VM runs (no kernel:
 * SeaBIOS numbers the buses and finds nothing to boot).
 */
import { strict as assert } from 'node:assert';
import { hvinfoDifferences, readLiveLayout } from '../../../plugin/inspect';
import { parsePorts } from '../../../plugin/planner';
import type { HvInfo } from '../../../plugin/types';
import { assertLayoutMatches, startPlanned } from '../../helpers/plan-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec } from '../../helpers/specs';
import { assertPciTree, runFirmware } from './pci-tree';

describe('q35 plans on real QEMU', function () {
  this.timeout(60_000);
  useQemuCleanup();

  const cases: Array<[string, Record<string, unknown>, number, number]> = [
    ['virtio-blk disks and virtio-net NICs, default spare ports', {}, 3, 2],
    ['scsi-hd on virtio-scsi-pci, e1000', { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', nic_type: 'e1000' }, 3, 1],
    ['scsi-hd on lsi, rtl8139', { disk_type: 'scsi-hd', scsi_controller_type: 'lsi', nic_type: 'rtl8139' }, 3, 1],
    ['scsi-hd on megasas, pcnet', { disk_type: 'scsi-hd', scsi_controller_type: 'megasas', nic_type: 'pcnet' }, 2, 2],
    ['i82551', { nic_type: 'i82551', kvm_pcie_spare_ports: 1 }, 1, 1],
    ['i82559er', { nic_type: 'i82559er', kvm_pcie_spare_ports: 1 }, 1, 1],
    ['i82557b', { nic_type: 'i82557b', kvm_pcie_spare_ports: 1 }, 1, 1],
    ['ne2k_pci', { nic_type: 'ne2k_pci', kvm_pcie_spare_ports: 1 }, 1, 1],
    ['IDE disks on AHCI and ne2k_isa, no ports for kinds without hotplug', { disk_type: 'ide', nic_type: 'ne2k_isa', kvm_pcie_spare_ports: 'auto' }, 3, 1],
    [
      'kvm_extra on pcie.0: a device at slot 2 function 1, one at addr=10, a port on chassis 1',
      { kvm_extra: '-device virtio-rng-pci,id=rngA,bus=pcie.0,addr=0x2.0x1 -device virtio-rng-pci,id=rngB,addr=10 -device pcie-root-port,id=theirs,bus=pcie.0,chassis=1,addr=0x12' },
      2,
      1,
    ],
    ['pc-q35-7.2 with disk_type paravirtual and 8 NICs', { machine_version: 'pc-q35-7.2' }, 1, 8],
  ];

  for (const [title, hv, disks, nics] of cases) {
    it(`places ${title} where hvinfo says`, async () => {
      const p = await startPlanned(makeSpec({ disks, nics, hvparams: { machine_version: 'q35', ...hv } }));
      await assertLayoutMatches(p);
      // The ports themselves, from QOM, are where kvm_cmd declares them.
      const live = await readLiveLayout(p.vm.qmp);
      const ports = parsePorts(p.plan.runtime[0]);
      for (const port of ports) {
        const l = live.find((x) => x.id === port.id);
        assert.ok(l, `QEMU lacks port ${port.id}`);
        assert.deepEqual(hvinfoDifferences({ driver: 'pcie-root-port', bus: 'pcie.0', addr: `0x${port.slot.toString(16)}.${port.fn}` }, l), []);
      }
      const hvinfos = p.plan.devices.map((d) => d.hvinfo as HvInfo);
      const pci = await runFirmware(p.vm.qmp);
      assertPciTree(pci, p.plan.runtime, hvinfos);
      // Nothing planned sits on pcie.0 itself: it takes no hotplug.
      for (const d of pci[0].devices) assert.ok(d.qdev_id === '' || /^rp\d+$/.test(d.qdev_id) || /^rng|^theirs$/.test(d.qdev_id), `${d.qdev_id} on pcie.0`);
      if (hv.disk_type === 'ide') assert.equal(ports.length, 0);
    });
  }

  it('reports a device behind another port, or at another slot, than its hvinfo says', async () => {
    const p = await startPlanned(makeSpec({ disks: 2, nics: 1, hvparams: { machine_version: 'q35', kvm_pcie_spare_ports: 1 } }));
    const live = await readLiveLayout(p.vm.qmp);
    const [d0, d1] = p.plan.devices;
    const l0 = live.find((x) => x.id === d0.id)!;
    assert.deepEqual(hvinfoDifferences(d0.hvinfo as unknown as Record<string, unknown>, l0), []);
    assert.deepEqual(hvinfoDifferences({ ...d0.hvinfo, bus: d1.hvinfo.bus }, l0), [`bus: runtime "${d1.hvinfo.bus}", QEMU "${d0.hvinfo.bus}"`]);
    assert.deepEqual(hvinfoDifferences({ ...d0.hvinfo, addr: '0x1' }, l0), ['addr: runtime "0x1", QEMU "0x0"']);
  });

  it('starts with the most spare ports the hvparam allows (200)', async () => {
    const p = await startPlanned(makeSpec({ disks: 2, nics: 2, hvparams: { machine_version: 'q35', kvm_pcie_spare_ports: 200 } }));
    await assertLayoutMatches(p);
    assert.equal(parsePorts(p.plan.runtime[0]).length, 204);
    const live = await readLiveLayout(p.vm.qmp);
    assert.equal(live.filter((d) => d.driver === 'pcie-root-port').length, 204);
  });
});
