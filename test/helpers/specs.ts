/**
 * Instance specs for planner tests: a readable builder and fast-check
 * arbitraries over the valid input space.
 */
import fc from 'fast-check';
import type { DiskSpec, InstanceSpec, NicSpec } from '../../plugin/types';

/** A deterministic UUID whose first group is `n` (so ids never collide). */
export function uuidN(n: number, tail = 'b6e5-4243-b27d-680b78c6d203'): string {
  return `${n.toString(16).padStart(8, '0')}-${tail}`;
}

export function macN(n: number): string {
  return `aa:00:00:00:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
}

export function makeSpec(opts: {
  disks?: number;
  nics?: number;
  hvparams?: Record<string, unknown>;
  diskPath?: (i: number) => string;
  name?: string;
}): InstanceSpec {
  const disks: DiskSpec[] = Array.from({ length: opts.disks ?? 1 }, (_, i) => ({
    uuid: uuidN(0x1000 + i),
    mode: 'rw',
    size: 16,
    path: opts.diskPath?.(i) ?? `/var/run/ganeti/instance-disks/inst1.example.com:${i}`,
    uri: null,
  }));
  const nics: NicSpec[] = Array.from({ length: opts.nics ?? 1 }, (_, i) => ({
    uuid: uuidN(0x2000 + i, '66a8-4e6d-8b7e-ec4f69751396'),
    mac: macN(i + 1),
    nicparams: { mode: 'bridged', link: 'br0' },
    backend: { type: 'user' },
  }));
  return {
    name: opts.name ?? 'inst1.example.com',
    uuid: '4b6e0a2c-1f0e-4c1b-9a51-0d2f7c0e8b11',
    hvparams: opts.hvparams ?? {},
    beparams: { maxmem: 128, vcpus: 1 },
    disks,
    nics,
  };
}

export const diskTypeArb = fc.constantFrom('paravirtual', 'scsi-hd', 'scsi-block', 'scsi-generic', 'scsi-cd', 'ide');
export const nicTypeArb = fc.constantFrom('paravirtual', 'e1000', 'i82551', 'i82559er', 'i82557b', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139');
export const controllerArb = fc.constantFrom('lsi', 'megasas', 'virtio-scsi-pci', 'mptsas1068', 'pvscsi', 'dc390');
export const machineArb = fc.constantFrom('', 'pc', 'pc-i440fx-7.2', 'q35', 'pc-q35-7.2');

/** Specs across the whole input space, including ones that exceed limits. */
export const specArb = fc
  .record({
    disks: fc.integer({ min: 0, max: 18 }),
    nics: fc.integer({ min: 0, max: 9 }),
    disk_type: diskTypeArb,
    nic_type: nicTypeArb,
    scsi_controller_type: controllerArb,
    kvm_pci_reservations: fc.integer({ min: 0, max: 32 }),
    machine_version: machineArb,
    kvm_pcie_spare_ports: fc.oneof(fc.constant('auto'), fc.integer({ min: 0, max: 40 })),
    extraSlot: fc.option(fc.integer({ min: 2, max: 30 }), { nil: undefined }),
    unknown: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).map((s) => `x_${s}`), fc.jsonValue(), { maxKeys: 3 }),
  })
  .map((r) =>
    makeSpec({
      disks: r.disks,
      nics: r.nics,
      hvparams: {
        ...r.unknown,
        disk_type: r.disk_type,
        nic_type: r.nic_type,
        scsi_controller_type: r.scsi_controller_type,
        kvm_pci_reservations: r.kvm_pci_reservations,
        machine_version: r.machine_version,
        kvm_pcie_spare_ports: r.kvm_pcie_spare_ports,
        kvm_extra: r.extraSlot === undefined ? '' : `-device virtio-rng-pci,id=rng0,addr=0x${r.extraSlot.toString(16)}`,
      },
    }),
  );
