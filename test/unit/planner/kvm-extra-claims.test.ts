import { strict as assert } from 'node:assert';
import { planInstance } from '../../../plugin/planner';
import { GkdError } from '../../../plugin/errors';
import type { PciHvInfo } from '../../../plugin/types';
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
