import { strict as assert } from 'node:assert';
import { planInstance } from '../../../plugin/planner';
import { GkdError } from '../../../plugin/errors';
import type { PciHvInfo } from '../../../plugin/types';
import { DUPLICATE_NAMES, SHARED_NAMES, SLOT_CONFLICTS, SLOTS_SHARED } from '../../helpers/kvm-extra-samples';
import { makeSpec } from '../../helpers/specs';

/** The error planning `hvparams` throws (fails the test when planning succeeds). */
function refusal(hvparams: Record<string, unknown>, disks = 1, nics = 1): GkdError {
  try {
    planInstance(makeSpec({ disks, nics, hvparams }));
  } catch (e) {
    assert.ok(e instanceof GkdError, String(e));
    return e;
  }
  assert.fail(`planned with ${JSON.stringify(hvparams)}`);
}

describe('kvm_extra: every claim QEMU sees', () => {
  const addrs = (hvparams: Record<string, unknown>): string[] =>
    planInstance(makeSpec({ disks: 2, nics: 1, hvparams })).devices.map((d) => (d.hvinfo as PciHvInfo).addr);

  it('reads slot claims written --device (QEMU accepts both spellings)', () => {
    assert.ok(!addrs({ kvm_extra: '--device virtio-rng-pci,id=rng,addr=0xc' }).includes('0xc'));
  });

  it('reads a slot set with -set device.ID.addr= on a kvm_extra device', () => {
    assert.ok(!addrs({ kvm_extra: '-device virtio-rng-pci,id=rng -set device.rng.addr=0xc' }).includes('0xc'));
    assert.ok(!addrs({ kvm_extra: '--device virtio-rng-pci,id=rng --set device.rng.addr=0xd' }).includes('0xd'));
  });

  it('refuses -set on a device kvm_extra does not create (a planned one), naming the field', () => {
    const id = planInstance(makeSpec({ disks: 1, nics: 0 })).devices[0].id;
    const e = refusal({ kvm_extra: `-set device.${id}.addr=0x5` });
    assert.equal(e.code, 'GKD_UNSUPPORTED_VALUE');
    assert.equal(e.field, 'hvparams.kvm_extra');
    assert.match(e.message, /does not create/);
  });

  it('refuses an id of any kind equal to a planned id', () => {
    const plan = planInstance(makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd' } }));
    const disk = plan.devices.find((d) => d.kind === 'disk')?.id as string;
    const nic = plan.devices.find((d) => d.kind === 'nic')?.id as string;
    for (const extra of [
      `-device virtio-rng-pci,id=${disk}`, `--device virtio-rng-pci,id=${nic}`, `-netdev user,id=${nic}`,
      `-blockdev driver=null-co,node-name=${disk}`, `-object rng-random,id=${disk}`, '-device virtio-rng-pci,id=scsi',
      `-device '{"driver":"virtio-rng-pci","id":"${disk}"}'`,
    ]) {
      const e = refusal({ disk_type: 'scsi-hd', kvm_extra: extra });
      assert.equal(e.code, 'GKD_ID_INVALID', extra);
      assert.equal(e.field, 'hvparams.kvm_extra');
    }
  });

  it('refuses node-local options the built command line would drop (-qmp, -monitor, -pidfile…)', () => {
    for (const extra of ['-qmp unix:/tmp/x.qmp,server=on,wait=off', '--qmp unix:/tmp/x', '-monitor stdio', '-pidfile /tmp/p', '-daemonize']) {
      const e = refusal({ kvm_extra: extra });
      assert.equal(e.code, 'GKD_UNSUPPORTED_VALUE', extra);
      assert.match(e.message, /would be dropped/);
    }
  });

  it('refuses two equal names in one of QEMU\'s namespaces, and allows them across namespaces', () => {
    // Each sample is checked against QEMU itself in test/qemu/planner.
    for (const extra of DUPLICATE_NAMES) {
      const e = refusal({ kvm_extra: extra });
      assert.equal(e.code, 'GKD_ID_INVALID', extra);
      assert.equal(e.field, 'hvparams.kvm_extra', extra);
      assert.match(e.message, /both name a .* "x"/, extra);
    }
    for (const extra of SHARED_NAMES) planInstance(makeSpec({ disks: 1, nics: 1, hvparams: { kvm_extra: extra } }));
  });

  it('refuses -set on a kvm_extra device written in JSON (QEMU applies -set to the flat syntax only)', () => {
    const e = refusal({ kvm_extra: '-device \'{"driver":"virtio-rng-pci","id":"j"}\' -set device.j.addr=0x5' });
    assert.equal(e.code, 'GKD_UNSUPPORTED_VALUE');
    assert.equal(e.field, 'hvparams.kvm_extra');
    assert.match(e.message, /JSON/);
  });

  it('refuses two kvm_extra devices on one PCI function of a bus, naming both', () => {
    for (const extra of SLOT_CONFLICTS) {
      const e = refusal({ kvm_extra: extra });
      assert.equal(e.code, 'GKD_SPEC_INVALID', extra);
      assert.equal(e.field, 'hvparams.kvm_extra', extra);
      assert.match(e.message, /asks for slot .* which .* QEMU would refuse to start/, extra);
    }
    for (const extra of SLOTS_SHARED) planInstance(makeSpec({ disks: 1, nics: 1, hvparams: { kvm_extra: extra } }));
  });

  it('keeps disks and NICs clear of the slots kvm_extra devices without addr take (kvm_pci_reservations 0)', () => {
    const at = (hvparams: Record<string, unknown>): string[] =>
      planInstance(makeSpec({ disks: 2, nics: 1, hvparams: { kvm_pci_reservations: 0, ...hvparams } })).devices.map((d) => (d.hvinfo as PciHvInfo).addr);
    // QEMU gives virtio-rng-pci slot 2 (the lowest free) before it creates the planned disks.
    assert.deepEqual(at({ kvm_extra: '-device virtio-rng-pci' }), ['0x3', '0x4', '0x5']);
    assert.deepEqual(at({ kvm_extra: '--device virtio-rng' }), ['0x3', '0x4', '0x5'], 'an alias of a PCI model, written --device');
    // -vga (slot 2) and -nic (3) at machine init, then the -device (4); pvpanic is an ISA device; ne2k_isa is an ISA card.
    assert.deepEqual(at({ kvm_extra: '-device pvpanic -vga std -nic user -net nic,model=ne2k_isa -device VGA,id=v2' }), ['0x5', '0x6', '0x7']);
    // A device without addr skips a slot an earlier one names, as QEMU does.
    assert.deepEqual(at({ kvm_extra: '-device virtio-rng-pci,id=a,addr=2 -device virtio-rng-pci,id=b' }), ['0x4', '0x5', '0x6']);
    // JSON -devices and -drive if=virtio are created after the planned disks and NICs: they take what is left then.
    assert.deepEqual(at({ kvm_extra: '-device \'{"driver":"virtio-rng-pci","id":"j"}\' -drive if=virtio,driver=null-co' }), ['0x2', '0x3', '0x4']);
    // A device on another bus takes no root slot.
    assert.deepEqual(at({ kvm_extra: '-device pci-bridge,id=br,chassis_nr=1,addr=0x1f -device virtio-rng-pci,bus=br' }), ['0x2', '0x3', '0x4']);
    // With the default reservation they fit below slot 12, where they always did.
    assert.deepEqual(at({ kvm_pci_reservations: 12, kvm_extra: '-device virtio-rng-pci' }), ['0xc', '0xd', '0xe']);
  });

  it('keeps q35 root ports clear of the slots -nic takes at machine init', () => {
    const plan = planInstance(makeSpec({ disks: 1, nics: 1, hvparams: { machine_version: 'q35', kvm_pcie_spare_ports: 0, kvm_extra: '-vga std -nic user' } }));
    const ports = plan.runtime[0].filter((a, i, cmd) => cmd[i - 1] === '-device' && String(a).startsWith('pcie-root-port'));
    // -vga takes slot 1 and the NIC slot 2 before any -device exists.
    assert.deepEqual(ports.map((p) => /addr=([^,]+)/.exec(String(p))?.[1]), ['0x3', '0x3.0x1']);
  });

  it('refuses -readconfig, whose devices it cannot see', () => {
    const e = refusal({ kvm_extra: '-readconfig /etc/qemu/devices.cfg' });
    assert.equal(e.code, 'GKD_UNSUPPORTED_VALUE');
    assert.match(e.message, /cannot see/);
  });
});

describe('NIC MAC addresses', () => {
  it('refuses multicast and broadcast MACs, naming the NIC', () => {
    for (const mac of ['01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', 'ab:00:00:00:00:01']) {
      const spec = makeSpec({ disks: 0, nics: 1 });
      (spec.nics as Array<{ mac: string }>)[0].mac = mac;
      assert.throws(() => planInstance(spec), (e: GkdError) => e.code === 'GKD_SPEC_INVALID' && e.field === 'nics[0].mac' && /multicast or broadcast/.test(e.message));
    }
    const ok = makeSpec({ disks: 0, nics: 1 });
    (ok.nics as Array<{ mac: string }>)[0].mac = 'aa:00:00:00:00:01';
    planInstance(ok);
  });
});
