import { strict as assert } from 'node:assert';
import { GkdError } from '../../../plugin/errors';
import { type ConvertOptions, convertRuntime } from '../../../plugin/runtime';
import type { RuntimeFormatId, RuntimeV2_10, RuntimeV2_16 } from '../../../plugin/types';
import { sample210, sample216, scsi216, tiny210, tiny29 } from '../../helpers/runtime-samples';

function refused(value: unknown, to: RuntimeFormatId, expected: string[], options: ConvertOptions = {}): GkdError {
  let err: GkdError | undefined;
  assert.throws(
    () => convertRuntime(value, to, options),
    (e: unknown) => {
      assert.ok(e instanceof GkdError);
      assert.equal(e.code, 'GKD_RUNTIME_LOSSY');
      for (const s of expected) assert.ok(e.message.includes(s), `${e.message}\n  lacks: ${s}`);
      err = e;
      return true;
    },
  );
  return err!;
}

/** The upgraded tiny 2.10 file: everything on pci.0 with PCI-era ids. */
function era216(): RuntimeV2_16 {
  return convertRuntime(tiny210(), '2.16').value;
}

function hv(v: RuntimeV2_16, which: 'nic' | 'disk'): Record<string, unknown> {
  return (which === 'nic' ? v[1][0].hvinfo : v[3][0][0].hvinfo) as Record<string, unknown>;
}

describe('downgrade 2.16 → 2.10', () => {
  it("restores Ganeti 2.15's sample exactly after an upgrade", () => {
    assert.deepStrictEqual(convertRuntime(convertRuntime(sample210(), '2.16').value, '2.10').value, sample210());
  });

  it('removes hvinfo {} without adding a slot', () => {
    const f = era216();
    f[1][0].hvinfo = {};
    assert.equal('pci' in convertRuntime(f, '2.10').value[1][0], false);
  });

  it("refuses Ganeti 2.16's sample: its new-style ids can't be expressed, each device named", () => {
    const e = refused(sample216(), '2.10', [
      'Cannot downgrade runtime file of "xen-test-inst2" to 2.10: ',
      'nic "nic-003fc157-66a8-4e6d" would be renamed "hotnic-003fc157-pci-8" (2.10 derives ids from the slot)',
      'disk "disk-7c079136-2573-4112" would be renamed "hotdisk-7c079136-pci-9"',
      'disk "disk-9f5c5bd4-6f60-480b" would be renamed "hotdisk-9f5c5bd4-pci-10"',
      '(--allow-id-change accepts this)',
    ], { name: 'xen-test-inst2' });
    assert.equal(e.device, 'nic-003fc157-66a8-4e6d');
    assert.equal(e.field, 'nics[0].hvinfo.id');
    assert.equal((e.data!.problems as unknown[]).length, 3);
  });

  it('allowIdChange downgrades it to the slots and reports each rename', () => {
    const r = convertRuntime(sample216(), '2.10', { allowIdChange: true });
    assert.equal(r.value[1][0].pci, 8);
    assert.deepStrictEqual(r.value[3].map(([d]) => d.pci), [9, 10]);
    assert.deepStrictEqual(r.changes.map((c) => [c.kind, c.device]), [
      ['renamed', 'nic-003fc157-66a8-4e6d'],
      ['renamed', 'disk-7c079136-2573-4112'],
      ['renamed', 'disk-9f5c5bd4-6f60-480b'],
    ]);
    assert.deepStrictEqual(Object.keys(r.value[1][0]), ['mac', 'nicparams', 'pci', 'uuid']);
  });

  it('refuses a SCSI disk, naming the bus and address; force drops its hvinfo and says so', () => {
    refused(scsi216(), '2.10', ['disk "disk-9e7c85f6-b6e5-4243" is on SCSI bus "scsi.0" (channel 0, scsi-id 0, lun 0); 2.10 has only PCI slots', '(--force drops this and reports each loss)'], {
      allowIdChange: true,
    });
    const r = convertRuntime(scsi216(), '2.10', { force: true });
    assert.equal('pci' in r.value[3][0][0], false);
    assert.equal('hvinfo' in r.value[3][0][0], false);
    const drop = r.changes.find((c) => c.kind === 'dropped')!;
    assert.equal(drop.device, 'disk-9e7c85f6-b6e5-4243');
    assert.match(drop.detail, /^dropped hvinfo \{"driver":"scsi-hd",.*"lun":0\}/);
  });

  it('refuses other buses: a q35 root port, pcie.0, IDE, ISA', () => {
    const onBus = (bus: string): RuntimeV2_16 => {
      const f = era216();
      hv(f, 'disk').bus = bus;
      return f;
    };
    refused(onBus('rp3'), '2.10', ['disk "hotdisk-7c079136-pci-4" is on PCI bus "rp3"; 2.10 knows only "pci.0"']);
    refused(onBus('pcie.0'), '2.10', ['is on PCI bus "pcie.0"']);
    const ide = era216();
    ide[3][0][0].hvinfo = { driver: 'ide-hd', id: 'disk-7c079136-2573-4112', bus: 'ide.0', unit: 1 };
    refused(ide, '2.10', ['disk "disk-7c079136-2573-4112" is on IDE bus "ide.0" unit 1; 2.10 has only PCI slots']);
    const isa = era216();
    isa[1][0].hvinfo = { driver: 'ne2k_isa', id: 'nic-003fc157-66a8-4e6d', bus: 'isa.0' };
    refused(isa, '2.10', ['nic "nic-003fc157-66a8-4e6d" is on bus "isa.0" without a PCI address']);
  });

  it('refuses a driver the old release would not rebuild; force keeps the slot and reports the driver dropped', () => {
    const f = era216();
    hv(f, 'nic').driver = 'e1000';
    refused(f, '2.10', ['nic "hotnic-003fc157-pci-6" uses driver "e1000"; 2.10 rebuilds it as "virtio-net-pci" from nic_type "paravirtual"']);
    const r = convertRuntime(f, '2.10', { force: true });
    assert.equal(r.value[1][0].pci, 6);
    assert.deepStrictEqual(r.changes.map((c) => c.detail), ['dropped driver "e1000" (2.10 rebuilds nic "hotnic-003fc157-pci-6" as "virtio-net-pci")']);
  });

  it('refuses addrs 2.10 cannot store exactly (padded, upper case, slot 32 and above)', () => {
    for (const addr of ['0x04', '0X4', '0x20', '0xff']) {
      const f = era216();
      hv(f, 'disk').addr = addr;
      refused(f, '2.10', [`has addr "${addr}"; 2.10 stores only slots 0x0 to 0x1f`]);
    }
  });

  it('refuses a kvm_cmd with a pcie-root-port, even with force', () => {
    const f = era216();
    f[0].push('-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x2');
    const e = refused(f, '2.10', ['kvm_cmd[6] adds "pcie-root-port" "rp0"; releases before 2.16 can only manage devices on "pci.0"'], { force: true });
    assert.doesNotMatch(e.message, /--force/);
  });

  it('refuses a q35 machine type in kvm_cmd or hvparams even without a root port, even with force', () => {
    for (const [opt, value] of [['-machine', 'q35'], ['-machine', 'pc-q35-7.2,accel=kvm'], ['-M', 'type=pc-q35-2.8']]) {
      const f = era216();
      f[0].push(opt, value);
      const e = refused(f, '2.10', ['kvm_cmd[6] makes it a q35 machine', 'releases before 2.16 put hot-added devices on "pci.0", which q35 lacks'], { force: true });
      assert.equal(e.field, 'kvm_cmd[6]');
      assert.doesNotMatch(e.message, /--force|--allow-id-change/);
    }
    const mv = era216();
    mv[2].machine_version = 'pc-q35-7.2';
    refused(mv, '2.10', ['hvparams.machine_version is "pc-q35-7.2", a q35 machine'], { force: true });
    // An i440fx machine is no reason to refuse.
    const pc = era216();
    pc[0].push('-machine', 'pc-i440fx-7.2,accel=kvm');
    pc[2].machine_version = 'pc';
    assert.deepStrictEqual(convertRuntime(pc, '2.10').changes, []);
  });

  it('lists every problem of every device at once', () => {
    const f = scsi216();
    hv(f, 'nic').driver = 'e1000';
    const e = refused(f, '2.10', ['disk "disk-9e7c85f6-b6e5-4243" is on SCSI bus', 'nic "nic-003fc157-66a8-4e6d" uses driver "e1000"', 'would be renamed "hotnic-003fc157-pci-12"']);
    assert.equal((e.data!.problems as unknown[]).length, 3);
  });
});

describe('downgrade 2.10 → 2.9', () => {
  it('goes back when there are no disks and no NIC slots', () => {
    assert.deepStrictEqual(convertRuntime(convertRuntime(tiny29(), '2.10').value, '2.9').value, tiny29());
  });

  it('refuses listed disks and NIC slots, naming them; force drops both and reports each', () => {
    refused(tiny210(), '2.9', [
      'nic "hotnic-003fc157-pci-6" has PCI slot 6; 2.9 cannot store a NIC\'s slot',
      'disk "hotdisk-7c079136-pci-4" is listed in disks; 2.9 keeps disks only as -drive options in kvm_cmd',
    ]);
    const r = convertRuntime(tiny210(), '2.9', { force: true });
    assert.equal(r.value.length, 3);
    assert.equal('pci' in r.value[1][0], false);
    assert.deepStrictEqual(r.changes.map((c) => c.kind), ['dropped', 'dropped']);
    assert.match(r.changes[1].detail, /^dropped disk "hotdisk-7c079136-pci-4" \(uuid 7c079136-/);
  });

  it('refuses a q35 machine, with force too, naming it once on the way down from 2.16', () => {
    const f = tiny210();
    f[0].push('-machine', 'q35');
    refused(f, '2.9', ['kvm_cmd[6] makes it a q35 machine ("q35")'], { force: true });
    const noDevices: RuntimeV2_10 = [['/usr/bin/kvm', '-name', 'inst1', '-machine', 'pc-q35-7.2'], [], {}, []];
    refused(noDevices, '2.9', ['kvm_cmd[4] makes it a q35 machine ("pc-q35-7.2")'], { force: true });
    const mv: RuntimeV2_10 = [['/usr/bin/kvm', '-name', 'inst1'], [], { machine_version: 'q35' }, []];
    refused(mv, '2.9', ['hvparams.machine_version is "q35"'], { force: true });
    const from216 = era216();
    from216[0].push('-machine', 'q35');
    const e = refused(from216, '2.9', ['kvm_cmd[6] makes it a q35 machine'], { force: true });
    assert.equal(e.message.split('makes it a q35 machine').length, 2, e.message);
  });

  it('names devices of a 2.16 source by their 2.16 ids', () => {
    refused(scsi216(), '2.9', ['disk "disk-9e7c85f6-b6e5-4243" is listed in disks', 'nic "nic-003fc157-66a8-4e6d" has PCI slot 12'], { allowIdChange: true });
  });
});
