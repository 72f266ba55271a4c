/**
 * q35 planning details: the "auto" spare-port count, what kvm_extra takes
 * on pcie.0 (root slots in QEMU's hex syntax, PCIe chassis numbers, ids),
 * which ports the hot-add allocator treats as spare, and the refusal to
 * downgrade a planned q35 runtime to the PCI-era format. The QEMU side of
 * the same facts is proven in test/qemu/q35.
 */
import { strict as assert } from 'node:assert';
import { GkdError } from '../../../plugin/errors';
import { allocate, type LiveOccupancy } from '../../../plugin/hotplug';
import { parsePorts, planInstance, resolveMachine } from '../../../plugin/planner';
import { parseDevfnText, rootClaims } from '../../../plugin/planner/pcie-ports';
import { convertRuntime } from '../../../plugin/runtime';
import type { PciHvInfo, RuntimeV2_16 } from '../../../plugin/types';
import { makeSpec } from '../../helpers/specs';

const NONE: LiveOccupancy = { rootSlots: new Set(), busyBuses: new Set(), scsiTargets: new Set() };

function ports(rt: RuntimeV2_16): string[] {
  return rt[0].filter((a): a is string => typeof a === 'string' && a.startsWith('pcie-root-port'));
}

function q35(disks: number, nics: number, hv: Record<string, unknown> = {}): RuntimeV2_16 {
  return planInstance(makeSpec({ disks, nics, hvparams: { machine_version: 'q35', ...hv } })).runtime;
}

describe('q35 "auto" spare ports', () => {
  // Ganeti's per-instance limits: 16 disks, 8 NICs.
  it('grows paravirtual disks to 16 and NICs to 8', () => {
    for (const [d, n] of [[0, 0], [1, 1], [3, 2], [16, 8], [10, 0]]) {
      assert.equal(ports(q35(d, n)).length, 16 + 8, `${d} disks, ${n} NICs`);
    }
  });

  it('keeps no disk ports for SCSI disks (they grow on the controller), one port for the controller', () => {
    assert.equal(ports(q35(2, 1, { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' })).length, 1 + 1 + 7);
  });

  it('keeps no ports for kinds that cannot be hot-added: IDE disks, an ISA NIC', () => {
    assert.equal(ports(q35(2, 1, { disk_type: 'ide' })).length, 1 + 7, 'IDE disks: NIC room only');
    assert.equal(ports(q35(2, 1, { nic_type: 'ne2k_isa' })).length, 2 + 14, 'ISA NIC: disk room only');
    assert.equal(ports(q35(2, 1, { disk_type: 'ide', nic_type: 'ne2k_isa' })).length, 0);
  });

  it('takes a number as given', () => {
    assert.equal(ports(q35(2, 1, { kvm_pcie_spare_ports: 0 })).length, 3);
    assert.equal(ports(q35(2, 1, { kvm_pcie_spare_ports: '5' })).length, 8);
  });

  it('refuses more ports than the root bus holds, naming the hvparam', () => {
    // 30 free root slots (0 and 0x1f are the machine's) x 8 functions = 240 ports.
    assert.equal(ports(q35(0, 0, { kvm_pcie_spare_ports: 200 })).length, 200);
    assert.throws(
      () => q35(0, 0, { kvm_pcie_spare_ports: 200, kvm_extra: Array.from({ length: 6 }, (_, i) => `-device virtio-rng-pci,id=r${i},addr=0x${(i + 1).toString(16)}`).join(' ') }),
      (e: unknown) => e instanceof GkdError && e.code === 'GKD_CAPACITY' && e.field === 'hvparams.kvm_pcie_spare_ports',
    );
  });
});

describe('q35 ports beside kvm_extra', () => {
  it('reads addr as QEMU does: hex with or without 0x, with a function', () => {
    assert.deepEqual(parseDevfnText('10'), { slot: 0x10, fn: 0 });
    assert.deepEqual(parseDevfnText('0x2.0x3'), { slot: 2, fn: 3 });
    assert.deepEqual(parseDevfnText('1f.7'), { slot: 0x1f, fn: 7 });
    assert.equal(parseDevfnText('0x20'), undefined);
    assert.equal(parseDevfnText('slot'), undefined);
  });

  it('skips root slots kvm_extra claims, in every addr form and in JSON -device', () => {
    const claims = rootClaims(
      ['-device', 'virtio-rng-pci,id=a,addr=2', '-device', 'virtio-rng-pci,id=b,bus=pcie.0,addr=0x3.0x1', '-device', '{"driver":"virtio-rng-pci","id":"c","addr":"0x4"}', '-device', 'virtio-rng-pci,id=d,bus=rp9,addr=0x5'],
      resolveMachine('q35'),
    );
    assert.deepEqual([...claims.slots].sort((x, y) => x - y), [2, 3, 4]);
    const rt = q35(1, 1, { kvm_extra: '-device virtio-rng-pci,id=rng,addr=2 -device virtio-rng-pci,id=rng2,addr=0x3.0x1' });
    const slots = new Set(parsePorts(rt[0]).map((p) => p.slot));
    assert.deepEqual([...slots], [1, 4, 5], '24 ports on three root slots, none of them 2 or 3');
  });

  it('skips chassis numbers kvm_extra uses, and does not offer the operator\'s own port for hot-add', () => {
    const rt = q35(1, 0, { kvm_pcie_spare_ports: 2, kvm_extra: '-device pcie-root-port,id=theirs,bus=pcie.0,chassis=1,addr=0x10 -device pcie-root-port,id=mine,bus=pcie.0,chassis=3,addr=0x11' });
    const ours = parsePorts(rt[0]);
    assert.deepEqual(ours.map((p) => [p.id, p.chassis]), [['rp0', 2], ['rp1', 4], ['rp2', 5]]);
    assert.equal((rt[3][0][0].hvinfo as PciHvInfo).bus, 'rp0');
    assert.equal((allocate(rt, 'nic', 'nic-x', NONE) as PciHvInfo).bus, 'rp1');
    // With rp1 and rp2 busy nothing is spare: the operator's empty ports are theirs.
    const busy: LiveOccupancy = { ...NONE, busyBuses: new Set(['rp1', 'rp2']) };
    assert.throws(() => allocate(rt, 'nic', 'nic-x', busy), (e: unknown) => e instanceof GkdError && e.field === 'hvparams.kvm_pcie_spare_ports');
  });

  it('refuses a kvm_extra device id of the plugin\'s port form', () => {
    assert.throws(
      () => q35(1, 0, { kvm_extra: '-device pcie-root-port,id=rp7,bus=pcie.0,chassis=40,addr=0x10' }),
      (e: unknown) => e instanceof GkdError && e.code === 'GKD_SPEC_INVALID' && e.field === 'hvparams.kvm_extra' && /"rp7"/.test(e.message),
    );
  });
});

describe('q35 runtime downgrade', () => {
  it('refuses to turn a planned q35 runtime into 2.10, also with force', () => {
    const rt = q35(1, 1, { kvm_pcie_spare_ports: 1 });
    for (const force of [false, true]) {
      assert.throws(
        () => convertRuntime(rt, '2.10', { force }),
        (e: unknown) => e instanceof GkdError && /pcie-root-port" "rp0"/.test(e.message) && /pcie-root-port" "rp2"/.test(e.message),
      );
    }
  });
});
