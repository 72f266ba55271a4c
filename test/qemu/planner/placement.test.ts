/**
 * The planner's command lines on real QEMU (paused, TCG): QEMU accepts
 * them, and every device sits exactly where its hvinfo says, read back over
 * QMP (QOM properties, cross-checked with query-pci and query-block).
 *
 * scsi-block and scsi-generic pass a host SCSI device through and cannot be
 * started on a plain file; their placement is the same code path as scsi-hd
 * and is covered by the unit and property tests.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { shellSplit } from '../../../plugin/planner';
import { isPciHvInfo, isScsiHvInfo } from '../../../plugin/types';
import { DUPLICATE_NAMES, SHARED_NAMES, SLOT_CONFLICTS, SLOTS_SHARED } from '../../helpers/kvm-extra-samples';
import { assertLayoutMatches, startPlanned } from '../../helpers/plan-vm';
import { QEMU_BINARY, useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, specArb } from '../../helpers/specs';

interface PciDevice {
  slot: number;
  qdev_id: string;
}
interface PciBus {
  bus: number;
  devices: PciDevice[];
}
interface BlockInfo {
  qdev?: string;
  inserted?: { 'node-name': string; file: string; ro: boolean };
}

describe('planner argv on real QEMU', function () {
  this.timeout(60_000);
  useQemuCleanup();

  const cases: Array<[string, Record<string, unknown>, number, number]> = [];
  for (const c of ['lsi', 'megasas', 'virtio-scsi-pci', 'mptsas1068', 'pvscsi', 'dc390']) cases.push([`scsi-hd on ${c}`, { disk_type: 'scsi-hd', scsi_controller_type: c }, 3, 1]);
  cases.push(['scsi-cd on virtio-scsi-pci', { disk_type: 'scsi-cd', scsi_controller_type: 'virtio-scsi-pci' }, 2, 1]);
  cases.push(['7 scsi-hd on lsi (its limit)', { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' }, 7, 0]);
  cases.push(['16 scsi-hd on virtio-scsi-pci', { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 16, 8]);
  cases.push(['ide disks', { disk_type: 'ide' }, 4, 1]);
  for (const n of ['paravirtual', 'e1000', 'i82551', 'i82559er', 'i82557b', 'ne2k_pci', 'pcnet', 'rtl8139']) cases.push([`nic_type ${n}`, { nic_type: n }, 1, 2]);
  cases.push(['nic_type ne2k_isa', { nic_type: 'ne2k_isa' }, 1, 1]);
  for (const r of [0, 12, 20]) cases.push([`kvm_pci_reservations ${r}`, { kvm_pci_reservations: r, disk_type: 'scsi-hd', scsi_controller_type: 'megasas' }, 2, 3]);
  for (const r of [0, 20]) cases.push([`paravirtual disks, kvm_pci_reservations ${r}`, { kvm_pci_reservations: r }, 4, 3]);
  cases.push(['16 paravirtual disks and 4 NICs (every free slot from 12)', {}, 16, 4]);
  cases.push(['q35 paravirtual', { machine_version: 'q35' }, 3, 2]);
  cases.push(['q35 scsi-hd on virtio-scsi-pci', { machine_version: 'q35', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 3, 2]);
  cases.push(['SCSI with -vga std from kvm_extra', { disk_type: 'scsi-hd', kvm_extra: '-vga std' }, 2, 1]);
  cases.push(['q35 with -vga std from kvm_extra', { machine_version: 'q35', kvm_extra: '-vga std' }, 2, 1]);
  cases.push(['5 virtio disks beside a kvm_extra device at addr=10 (hex)', { kvm_extra: '-device virtio-rng-pci,id=rng,addr=10' }, 5, 2]);
  cases.push(['virtio disks beside a kvm_extra --device at addr=0xc (the double-dash spelling)', { kvm_extra: '--device virtio-rng-pci,id=rng,addr=0xc' }, 2, 1]);
  cases.push(['virtio disks beside a kvm_extra device moved to 0xc by -set device.rng.addr', { kvm_extra: '-device virtio-rng-pci,id=rng -set device.rng.addr=0xc' }, 2, 1]);
  cases.push(['q35 beside a kvm_extra --device at addr=2', { machine_version: 'q35', kvm_extra: '--device virtio-rng-pci,id=rng,addr=2' }, 2, 1]);
  // Devices without addr in kvm_extra take the lowest free slots before the planned disks and NICs exist.
  cases.push(['virtio disks beside a kvm_extra device without addr, kvm_pci_reservations 0', { kvm_pci_reservations: 0, kvm_extra: '-device virtio-rng-pci,id=rng' }, 2, 1]);
  cases.push(['SCSI beside a kvm_extra device without addr, kvm_pci_reservations 0', { kvm_pci_reservations: 0, disk_type: 'scsi-hd', kvm_extra: '-device virtio-rng-pci,id=rng' }, 2, 2]);
  cases.push([
    'virtio disks beside -vga, -nic and a display -device from kvm_extra, kvm_pci_reservations 0',
    { kvm_pci_reservations: 0, kvm_extra: '-device pvpanic -vga std -nic user -net nic,model=ne2k_isa -device VGA,id=v2' },
    2,
    1,
  ]);
  cases.push([
    'virtio disks beside a JSON -device and -drive if=virtio without addr (created last), kvm_pci_reservations 0',
    { kvm_pci_reservations: 0, kvm_extra: `-device '{"driver":"virtio-rng-pci","id":"j"}' -drive if=virtio,driver=null-co` },
    2,
    1,
  ]);
  cases.push(['q35 with -vga std and -nic from kvm_extra (both at machine init)', { machine_version: 'q35', kvm_extra: '-vga std -nic user' }, 2, 1]);
  cases.push(['pc-q35-7.2 with 40 spare ports', { machine_version: 'pc-q35-7.2', kvm_pcie_spare_ports: 40 }, 2, 1]);

  for (const [title, hvparams, disks, nics] of cases) {
    it(`places ${title} where hvinfo says`, async () => {
      const p = await startPlanned(makeSpec({ disks, nics, hvparams }));
      await assertLayoutMatches(p);
      // Independent cross-checks on what query-pci and query-block report.
      if (p.plan.machine.family === 'pc') {
        const pci = await p.vm.qmp.execute<PciBus[]>('query-pci');
        for (const d of p.plan.devices) {
          if (!isPciHvInfo(d.hvinfo)) continue;
          const found = pci[0].devices.find((x) => x.qdev_id === d.id);
          assert.ok(found, `query-pci lacks ${d.id}`);
          assert.equal(found.slot, parseInt(d.hvinfo.addr, 16), `${d.id} slot`);
        }
      }
      const blocks = await p.vm.qmp.execute<BlockInfo[]>('query-block');
      for (const d of p.plan.devices.filter((x) => x.kind === 'disk')) {
        const b = blocks.find((x) => x.inserted?.['node-name'] === d.id);
        assert.ok(b, `query-block lacks node ${d.id}`);
        if (isScsiHvInfo(d.hvinfo)) assert.equal(b.qdev, d.id);
      }
    });
  }

  it('opens disk paths with commas and spaces exactly', async () => {
    const names = (i: number) => [`we,ird ${i}.raw`, `a,,b c${i}.raw`][i];
    const p = await startPlanned(makeSpec({ disks: 2, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }), { fileName: names });
    const blocks = await p.vm.qmp.execute<BlockInfo[]>('query-block');
    const files = p.plan.runtime[3].map((e) => e[1]);
    assert.ok(files[0].endsWith('/we,ird 0.raw') && files[1].endsWith('/a,,b c1.raw'));
    for (const [i, d] of p.plan.devices.entries()) {
      assert.equal(blocks.find((b) => b.inserted?.['node-name'] === d.id)?.inserted?.file, files[i]);
    }
  });

  it('opens a read-only disk read-only', async () => {
    const spec = makeSpec({ disks: 2, nics: 0 });
    spec.disks[1].mode = 'ro';
    const p = await startPlanned(spec);
    const blocks = await p.vm.qmp.execute<BlockInfo[]>('query-block');
    const ro = p.plan.devices.map((d) => blocks.find((b) => b.inserted?.['node-name'] === d.id)?.inserted?.ro);
    assert.deepEqual(ro, [false, true]);
  });

  it('starts with kvm_extra devices, implicit and explicit, beside the planned ones', async () => {
    const p = await startPlanned(
      makeSpec({ disks: 2, nics: 1, hvparams: { disk_type: 'paravirtual', kvm_extra: '-device virtio-rng-pci,id=rng0 -device virtio-rng-pci,id=rng1,addr=0xd' } }),
    );
    await assertLayoutMatches(p);
    const pci = await p.vm.qmp.execute<PciBus[]>('query-pci');
    const slotOf = (id: string) => pci[0].devices.find((d) => d.qdev_id === id)?.slot;
    assert.equal(slotOf('rng1'), 0xd);
    assert.equal(slotOf('rng0'), 2, 'an implicit kvm_extra device takes the lowest free reserved slot');
    assert.deepEqual(p.plan.devices.map((d) => slotOf(d.id)), [0xc, 0xe, 0xf]);
  });

  it('starts a kvm_extra device without addr beside disks with kvm_pci_reservations 0, where the plan left its slot free', async () => {
    const p = await startPlanned(makeSpec({ disks: 2, nics: 1, hvparams: { kvm_pci_reservations: 0, kvm_extra: '-device virtio-rng-pci,id=rng' } }));
    const pci = await p.vm.qmp.execute<PciBus[]>('query-pci');
    const slotOf = (id: string) => pci[0].devices.find((d) => d.qdev_id === id)?.slot;
    assert.equal(slotOf('rng'), 2, 'QEMU gives the device the lowest free slot');
    assert.deepEqual(p.plan.devices.map((d) => slotOf(d.id)), [3, 4, 5]);
  });

  it('QEMU refuses to start with each kvm_extra the planner refuses as a duplicate, and starts with the others', () => {
    // The bare kvm_extra on a paused QEMU, quit over QMP on stdin once it is up.
    const run = (extra: string) =>
      spawnSync(QEMU_BINARY, ['-S', '-nodefaults', '-display', 'none', '-machine', 'pc', '-accel', 'tcg', '-qmp', 'stdio', ...shellSplit(extra)], {
        input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
        encoding: 'utf8',
        timeout: 30_000,
      });
    for (const extra of [...DUPLICATE_NAMES, ...SLOT_CONFLICTS]) {
      const r = run(extra);
      assert.equal(r.status, 1, `QEMU started with ${extra}`);
      assert.match(r.stderr, /Duplicate|conflict|not available/, extra);
    }
    for (const extra of [...SHARED_NAMES, ...SLOTS_SHARED]) {
      const r = run(extra);
      assert.equal(r.status, 0, `QEMU refused ${extra}: ${r.stderr}`);
    }
  });

  it('places a sample of property-generated specs where hvinfo says', async () => {
    const startable = specArb.filter((s) => !['scsi-block', 'scsi-generic'].includes(String(s.hvparams!.disk_type)));
    const samples = fc.sample(startable, { numRuns: 40, seed: 4242 });
    let started = 0;
    for (const spec of samples) {
      let p;
      try {
        p = await startPlanned(spec);
      } catch (e) {
        // Specs over a limit are refused by the planner before QEMU starts; anything else fails the test.
        assert.equal((e as { code?: string }).code, 'GKD_CAPACITY', String(e));
        continue;
      }
      await assertLayoutMatches(p);
      await p.vm.stop();
      started++;
    }
    assert.ok(started >= 15, `only ${started} samples were startable`);
  });
});
