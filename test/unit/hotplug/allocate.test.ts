/**
 * allocate() and freeCapacity(): where a hot-added device goes, from the
 * runtime file's occupancy and what QEMU reports as live. Pure; the
 * runtimes come from the planner so they have the shape a started instance
 * really has. Controller limits are restated here from QEMU's behaviour
 * (qemu-lab.md section 5: lsi target 7 is the HBA itself) rather than read
 * from the planner's table, so a wrong table fails these tests.
 */
import { strict as assert } from 'node:assert';
import { GkdError } from '../../../plugin/errors';
import { allocate, freeCapacity, machineFromCmd, type DeviceKind, type LiveOccupancy } from '../../../plugin/hotplug';
import { planInstance } from '../../../plugin/planner';
import type { HvInfo, PciHvInfo, RuntimeV2_16, ScsiHvInfo } from '../../../plugin/types';
import { makeSpec, uuidN } from '../../helpers/specs';

const NONE: LiveOccupancy = { rootSlots: new Set(), busyBuses: new Set(), scsiTargets: new Set() };
const live = (o: Partial<{ rootSlots: number[]; busyBuses: string[]; scsiTargets: number[] }>): LiveOccupancy => ({
  rootSlots: new Set(o.rootSlots ?? []),
  busyBuses: new Set(o.busyBuses ?? []),
  scsiTargets: new Set(o.scsiTargets ?? []),
});
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function runtimeOf(disks: number, nics: number, hvparams: Record<string, unknown> = {}): RuntimeV2_16 {
  return planInstance(makeSpec({ disks, nics, hvparams })).runtime;
}

function throwsGkd(fn: () => unknown, code: string, field: string, message: RegExp): GkdError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GkdError, String(e));
    assert.equal(e.code, code, e.message);
    assert.equal(e.field, field);
    assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

/** Allocates until the allocator refuses, recording each device as the engine would. */
function fill(runtime: RuntimeV2_16, kind: DeviceKind, occ: LiveOccupancy): { placed: HvInfo[]; error: GkdError } {
  const rt = structuredClone(runtime);
  const placed: HvInfo[] = [];
  for (let n = 0; n < 300; n++) {
    const uuid = uuidN(0xe000 + n);
    let h: HvInfo;
    try {
      h = allocate(rt, kind, `${kind}-${uuid.slice(0, 8)}`, occ);
    } catch (e) {
      assert.ok(e instanceof GkdError, String(e));
      return { placed, error: e };
    }
    placed.push(h);
    if (kind === 'disk') rt[3].push([{ uuid, hvinfo: h }, '/dev/null', null]);
    else rt[1].push({ uuid, hvinfo: h });
  }
  assert.fail('allocate never ran out');
}

describe('allocate', () => {
  describe('PCI on pc', () => {
    it('places the first device at kvm_pci_reservations, not below it, even when lower slots are free', () => {
      const rt = runtimeOf(0, 0, { kvm_pci_reservations: 12 });
      assert.deepEqual(allocate(rt, 'disk', 'disk-x', NONE), { driver: 'virtio-blk-pci', id: 'disk-x', bus: 'pci.0', addr: '0xc' });
      assert.deepEqual(allocate(rt, 'nic', 'nic-x', NONE), { driver: 'virtio-net-pci', id: 'nic-x', bus: 'pci.0', addr: '0xc' });
    });

    it('skips the machine\'s built-in slots 0 and 1 when nothing is reserved', () => {
      const rt = runtimeOf(0, 0, { kvm_pci_reservations: 0 });
      assert.equal((allocate(rt, 'disk', 'disk-x', NONE) as PciHvInfo).addr, '0x2');
    });

    it('skips slots the runtime records and slots QEMU reports live, whichever knows', () => {
      const rt = runtimeOf(2, 1); // disks at 0xc, 0xd, NIC at 0xe
      assert.equal((allocate(rt, 'disk', 'disk-x', NONE) as PciHvInfo).addr, '0xf', 'recorded slots only');
      // A device added by hand at 0xf and one from kvm_extra at 0x11: QEMU knows, the runtime does not.
      assert.equal((allocate(rt, 'disk', 'disk-x', live({ rootSlots: [0xf, 0x11] })) as PciHvInfo).addr, '0x10');
      // A live slot the runtime also records changes nothing.
      assert.equal((allocate(rt, 'nic', 'nic-x', live({ rootSlots: [0xc, 0xd, 0xe] })) as PciHvInfo).addr, '0xf');
    });

    it('treats a recorded multifunction address as taking its whole slot', () => {
      const rt = runtimeOf(0, 0);
      rt[1].push({ uuid: uuidN(0x77), hvinfo: { driver: 'virtio-net-pci', id: 'nic-mf', bus: 'pci.0', addr: '0xc.0x1' } });
      assert.equal((allocate(rt, 'disk', 'disk-x', NONE) as PciHvInfo).addr, '0xd');
    });

    it('fills slots reservations..31 in order, then fails naming kvm_pci_reservations', () => {
      const { placed, error } = fill(runtimeOf(0, 0, { kvm_pci_reservations: 20 }), 'nic', live({ rootSlots: [0x16] }));
      assert.deepEqual(
        placed.map((h) => (h as PciHvInfo).addr),
        // MAX_NICS (8) stops it before the slots run out: 20..29 minus live 22.
        ['0x14', '0x15', '0x17', '0x18', '0x19', '0x1a', '0x1b', '0x1c'],
      );
      assert.equal(error.field, 'nics');
      const full = throwsGkd(
        () => allocate(runtimeOf(0, 0, { kvm_pci_reservations: 28 }), 'disk', 'disk-x', live({ rootSlots: [28, 29, 30, 31] })),
        'GKD_CAPACITY',
        'hvparams.kvm_pci_reservations',
        /no free PCI slot from 28 to 31/,
      );
      assert.match(full.message, /pci\.0/);
    });
  });

  describe('SCSI', () => {
    // What a guest can address, per controller (qemu-lab.md section 5 and QEMU's HBA limits).
    const LIMITS: Record<string, number> = { lsi: 7, dc390: 7, mptsas1068: 8, megasas: 64, pvscsi: 64, 'virtio-scsi-pci': 256 };

    it('gives lsi targets 0-6 only: 7 is the HBA itself', () => {
      const { placed, error } = fill(runtimeOf(0, 0, { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' }), 'disk', NONE);
      assert.deepEqual(placed.map((h) => (h as ScsiHvInfo)['scsi-id']), [0, 1, 2, 3, 4, 5, 6]);
      for (const h of placed) assert.deepEqual({ ...h, 'scsi-id': 0, id: '' }, { driver: 'scsi-hd', id: '', bus: 'scsi.0', channel: 0, 'scsi-id': 0, lun: 0 });
      assert.equal(error.code, 'GKD_CAPACITY');
      assert.equal(error.field, 'hvparams.scsi_controller_type');
      assert.match(error.message, /"lsi".*all 7 usable targets are taken.*"virtio-scsi-pci"/);
    });

    for (const [ctrl, limit] of Object.entries(LIMITS)) {
      it(`stops at ${ctrl}'s last usable target ${limit - 1}`, () => {
        const rt = runtimeOf(0, 0, { disk_type: 'scsi-hd', scsi_controller_type: ctrl });
        // Everything but the last target is live (not recorded): the allocator must take the last one.
        const lastOnly = live({ scsiTargets: range(0, limit - 2) });
        assert.equal((allocate(rt, 'disk', 'disk-x', lastOnly) as ScsiHvInfo)['scsi-id'], limit - 1);
        throwsGkd(() => allocate(rt, 'disk', 'disk-x', live({ scsiTargets: range(0, limit - 1) })), 'GKD_CAPACITY', 'hvparams.scsi_controller_type', new RegExp(`all ${limit} usable targets`));
      });
    }

    it('skips targets the runtime records and targets QEMU has on the bus', () => {
      const rt = runtimeOf(2, 0, { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }); // targets 0, 1
      assert.equal((allocate(rt, 'disk', 'disk-x', NONE) as ScsiHvInfo)['scsi-id'], 2);
      assert.equal((allocate(rt, 'disk', 'disk-x', live({ scsiTargets: [2, 4] })) as ScsiHvInfo)['scsi-id'], 3);
    });

    it('does not count PCI slots against SCSI targets', () => {
      const rt = runtimeOf(0, 0, { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' });
      assert.equal((allocate(rt, 'disk', 'disk-x', live({ rootSlots: range(2, 31) })) as ScsiHvInfo)['scsi-id'], 0);
    });
  });

  describe('PCIe root ports on q35', () => {
    // rp0: the lsi controller (kvm_cmd), rp1: the NIC (runtime), rp2 and rp3 spare.
    const rt = (): RuntimeV2_16 => runtimeOf(2, 1, { machine_version: 'q35', kvm_pcie_spare_ports: 2, disk_type: 'scsi-hd' });

    it('takes the first port no recorded device, no kvm_cmd controller and nothing live sits behind, at slot 0', () => {
      const r = rt();
      assert.ok(r[0].some((a) => String(a).startsWith('lsi53c895a,') && String(a).includes('bus=rp0')), 'the planner put the controller on rp0');
      assert.equal((r[1][0].hvinfo as PciHvInfo).bus, 'rp1');
      assert.deepEqual(allocate(r, 'nic', 'nic-x', NONE), { driver: 'virtio-net-pci', id: 'nic-x', bus: 'rp2', addr: '0x0' });
      assert.equal((allocate(r, 'nic', 'nic-x', live({ busyBuses: ['rp2'] })) as PciHvInfo).bus, 'rp3');
    });

    it('never uses pcie.0, and fails naming kvm_pcie_spare_ports when every spare port is busy', () => {
      const { placed, error } = fill(rt(), 'nic', NONE);
      assert.deepEqual(placed.map((h) => (h as PciHvInfo).bus), ['rp2', 'rp3']);
      assert.equal(error.code, 'GKD_CAPACITY');
      assert.equal(error.field, 'hvparams.kvm_pcie_spare_ports');
      throwsGkd(() => allocate(rt(), 'nic', 'nic-x', live({ busyBuses: ['rp2', 'rp3'] })), 'GKD_CAPACITY', 'hvparams.kvm_pcie_spare_ports', /no spare PCIe root port/);
    });

    it('reads q35 from kvm_cmd when machine_version is empty', () => {
      const r = rt();
      r[2] = { ...r[2], machine_version: '' };
      assert.equal((allocate(r, 'nic', 'nic-x', NONE) as PciHvInfo).bus, 'rp2');
    });
  });

  describe('refusals', () => {
    it('refuses a disk_type or nic_type QEMU cannot hot-plug, naming the hvparam', () => {
      throwsGkd(() => allocate(runtimeOf(0, 0, { disk_type: 'ide' }), 'disk', 'disk-x', NONE), 'GKD_HOTPLUG_UNSUPPORTED', 'hvparams.disk_type', /"ide"/);
      throwsGkd(() => allocate(runtimeOf(0, 0, { nic_type: 'ne2k_isa' }), 'nic', 'nic-x', NONE), 'GKD_HOTPLUG_UNSUPPORTED', 'hvparams.nic_type', /"ne2k_isa".*ISA/);
    });

    it('refuses a 17th disk and a 9th NIC (Ganeti\'s MAX_DISKS, MAX_NICS)', () => {
      throwsGkd(() => allocate(runtimeOf(16, 0, { kvm_pci_reservations: 2 }), 'disk', 'disk-x', NONE), 'GKD_CAPACITY', 'disks', /has 16, the most it can have is 16/);
      throwsGkd(() => allocate(runtimeOf(0, 8), 'nic', 'nic-x', NONE), 'GKD_CAPACITY', 'nics', /has 8, the most it can have is 8/);
    });
  });

  describe('machineFromCmd', () => {
    it('reads the -machine type and maps Ganeti\'s old pc-N.N names to pc', () => {
      const with_ = (m: string | undefined): RuntimeV2_16 => [m === undefined ? ['kvm'] : ['kvm', '-machine', m], [], {}, []];
      assert.equal(machineFromCmd(with_('pc-q35-7.2,accel=kvm')), 'pc-q35-7.2');
      assert.equal(machineFromCmd(with_('pc-1.1')), 'pc');
      assert.equal(machineFromCmd(with_(undefined)), 'pc');
    });
  });
});

describe('freeCapacity', () => {
  it('counts what allocate would still place: the lower of the device limit and the free addresses', () => {
    const rt = runtimeOf(2, 1); // slots 0xc-0xe taken: 0xf-0x1f free (17)
    assert.equal(freeCapacity(rt, 'disk', NONE), 14, '16 disks minus 2');
    assert.equal(freeCapacity(rt, 'nic', NONE), 7, '8 NICs minus 1');
    assert.equal(freeCapacity(rt, 'disk', live({ rootSlots: range(0x10, 0x1f) })), 1, 'only 0xf is left');
    assert.equal(freeCapacity(rt, 'nic', live({ rootSlots: range(0xf, 0x1f) })), 0);
  });

  it('counts SCSI targets and q35 spare ports', () => {
    const q35 = runtimeOf(2, 1, { machine_version: 'q35', kvm_pcie_spare_ports: 2, disk_type: 'scsi-hd', scsi_controller_type: 'lsi' });
    assert.equal(freeCapacity(q35, 'disk', NONE), 5, 'lsi targets 2-6');
    assert.equal(freeCapacity(q35, 'disk', live({ scsiTargets: [5] })), 4);
    assert.equal(freeCapacity(q35, 'nic', NONE), 2, 'rp2 and rp3');
    assert.equal(freeCapacity(q35, 'nic', live({ busyBuses: ['rp3'] })), 1);
  });

  it('is 0 for a type that cannot be hot-plugged, and leaves the runtime untouched', () => {
    const rt = runtimeOf(1, 1, { nic_type: 'ne2k_isa' });
    const before = JSON.stringify(rt);
    assert.equal(freeCapacity(rt, 'nic', NONE), 0);
    assert.equal(freeCapacity(rt, 'disk', NONE), 15);
    assert.equal(JSON.stringify(rt), before);
  });
});

describe('allocate with a stored value this release does not know', () => {
  it('an unknown stored scsi_controller_type is refused naming the field, not an internal error', () => {
    const rt = runtimeOf(1, 0, { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' });
    (rt[2] as Record<string, unknown>).scsi_controller_type = 'bogus-hba';
    throwsGkd(() => allocate(rt, 'disk', 'disk-x', NONE), 'GKD_HOTPLUG_UNSUPPORTED', 'hvparams.scsi_controller_type', /"bogus-hba" is not one this release knows/);
    // hotplug.supported counts what still fits: nothing, rather than an internal error.
    assert.equal(freeCapacity(rt, 'disk', NONE), 0);
  });
});
