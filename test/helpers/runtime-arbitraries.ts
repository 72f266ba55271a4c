/**
 * fast-check arbitraries over runtime files: valid 2.9 and 2.10 files,
 * 2.16 files a downgrade must accept, and 2.16 files of every kind (SCSI,
 * IDE, ISA, other buses, other drivers, new-style ids, q35 machines).
 * Every dict carries random unknown fields, including awkward keys such as
 * `__proto__`, which every conversion must keep.
 */
import fc from 'fast-check';
import type { HvParams, KvmCmdItem, RuntimeV2_10, RuntimeV2_16, RuntimeV2_9 } from '../../plugin/types';

/** Keys the schemas type; extra fields avoid them so the files stay valid. */
const TYPED = new Set([
  'pci', 'hvinfo', 'uuid', 'mac', 'ip', 'name', 'network', 'nicparams', 'netinfo', 'dev_type', 'logical_id',
  'children', 'nodes', 'iv_name', 'size', 'mode', 'params', 'spindles', 'serial_no', 'ctime', 'mtime',
  'disk_type', 'nic_type', 'kvm_pci_reservations', 'scsi_controller_type', 'machine_version',
]);

const extraKey = fc
  .oneof(fc.constantFrom('__proto__', 'constructor', 'toString', 'x_future', 'é-ü', ''), fc.string({ maxLength: 8 }))
  .filter((k) => !TYPED.has(k));

/** Unknown fields: a list of entries, so `__proto__` stays a plain key. */
const extras = fc.uniqueArray(fc.tuple(extraKey, fc.jsonValue({ maxDepth: 2 })), { maxLength: 3, selector: ([k]) => k });

function dict(...parts: Array<Array<[string, unknown]>>): Record<string, unknown> {
  return Object.fromEntries(parts.flat());
}

/** True for what makes a q35 machine: a root port, or a q35 machine type (after `-machine` or not, to stay simple). */
export const isQ35Item = (s: string): boolean => s.includes('pcie-root-port') || /(^|[,=])(q35|pc-q35)/.test(s);

const kvmItem: fc.Arbitrary<KvmCmdItem> = fc.oneof(
  fc.constantFrom('/usr/bin/kvm', '-m', '-device', 'virtio-balloon', '-machine', '-M', 'pc-i440fx-2.8'),
  fc.string({ maxLength: 12 }).filter((s) => !isQ35Item(s)),
  fc.integer({ min: 0, max: 1 << 20 }),
);
export const kvmCmdArb: fc.Arbitrary<KvmCmdItem[]> = fc.array(kvmItem, { maxLength: 8 });
/** Sometimes a q35 machine: a root port as our planner writes them, or a q35 machine type. */
const kvmCmdAnyArb = fc.tuple(kvmCmdArb, fc.constantFrom('none', 'port', 'machine', 'M')).map(([cmd, q35]) =>
  q35 === 'port'
    ? [...cmd, '-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x2,multifunction=on']
    : q35 === 'machine'
      ? [...cmd, '-machine', 'pc-q35-7.2,accel=kvm']
      : q35 === 'M'
        ? [...cmd, '-M', 'q35']
        : cmd,
);

const TYPES = { disk: ['paravirtual', 'ide', 'scsi', 'scsi-hd', 'scsi-block', 'sd'], nic: ['paravirtual', 'e1000', 'rtl8139', 'ne2k_isa'] };

/** hvparams of an i440fx machine (`machine_version` absent, empty or a pc type). */
export const hvparamsArb: fc.Arbitrary<HvParams> = hvparamsWith(fc.constantFrom(undefined, '', 'pc', 'pc-i440fx-2.8'));
/** Also with a q35 `machine_version`. */
const hvparamsAnyArb: fc.Arbitrary<HvParams> = hvparamsWith(fc.constantFrom(undefined, '', 'pc', 'q35', 'pc-q35-7.2'));

function hvparamsWith(machine: fc.Arbitrary<string | undefined>): fc.Arbitrary<HvParams> {
  return fc
    .tuple(fc.option(fc.constantFrom(...TYPES.disk), { nil: undefined }), fc.option(fc.constantFrom(...TYPES.nic), { nil: undefined }), machine, extras)
    .map(([d, n, m, ex]) => dict(ex, d === undefined ? [] : [['disk_type', d]], n === undefined ? [] : [['nic_type', n]], m === undefined ? [] : [['machine_version', m]]));
}

const nicBase = fc.record(
  { mac: fc.constant('aa:00:00:bf:2f:16'), nicparams: fc.constant({ mode: 'bridged', link: 'br0' }), ip: fc.constantFrom('10.0.0.1', null), name: fc.constant('eth0') },
  { requiredKeys: ['mac'] },
);
const diskBase = fc.record(
  { dev_type: fc.constantFrom('plain', 'drbd', 'rbd'), size: fc.nat(1 << 20), mode: fc.constantFrom('rw', 'ro'), iv_name: fc.constant('disk/0'), params: fc.constant({}) },
  { requiredKeys: [] },
);
const link = fc.constant('/var/run/ganeti/instance-disks/inst1:0');
const uri = fc.constantFrom(null, 'rbd:pool/image');
const slotArb = fc.integer({ min: 0, max: 31 });

/** Valid 2.9 files; `withUuids` false lets NICs lack a uuid (files from before Ganeti 2.8). */
export function runtime29Arb(withUuids = true): fc.Arbitrary<RuntimeV2_9> {
  const nic = fc
    .tuple(nicBase, withUuids ? fc.uuid() : fc.option(fc.uuid(), { nil: undefined }), extras)
    .map(([b, u, ex]) => dict(ex, Object.entries(b), u === undefined ? [] : [['uuid', u]]));
  return fc.tuple(kvmCmdArb, fc.array(nic, { maxLength: 3 }), hvparamsArb).map(([c, n, h]) => [c, n, h]);
}

/** Valid 2.10 files of i440fx machines (no PCI-era instance can use q35's root ports; a q35 file never goes down). */
export const runtime210Arb: fc.Arbitrary<RuntimeV2_10> = (() => {
  const pci = fc.option(slotArb, { nil: undefined });
  const nic = fc
    .tuple(nicBase, fc.uuid(), pci, extras)
    .map(([b, u, p, ex]) => dict(Object.entries(b), [['uuid', u]], p === undefined ? [] : [['pci', p]], ex));
  const disk = fc
    .tuple(diskBase, fc.uuid(), pci, extras, link, uri)
    .map(([b, u, p, ex, l, r]) => [dict(ex, Object.entries(b), p === undefined ? [] : [['pci', p]], [['uuid', u]]), l, r]);
  return fc
    .tuple(kvmCmdArb, fc.array(nic, { maxLength: 3 }), hvparamsArb, fc.array(disk, { maxLength: 3 }))
    .map(([c, n, h, d]) => [c, n, h, d] as RuntimeV2_10);
})();

/** How a generated 2.16 device is placed; `era` is exactly what 2.10 can express. */
type Placement =
  | { t: 'empty' }
  | { t: 'era'; slot: number }
  | { t: 'pci'; slot: number; bus: string; driver: string | null; id: 'era' | 'new' | string; addr: 'canonical' | string }
  | { t: 'scsi'; channel: number; target: number; lun: number }
  | { t: 'ide'; unit: number }
  | { t: 'isa' };

const qemuId = fc.stringMatching(/^[A-Za-z][A-Za-z0-9._-]{0,20}$/);

const downgradablePlacement: fc.Arbitrary<Placement> = fc.oneof(fc.constant({ t: 'empty' as const }), slotArb.map((slot) => ({ t: 'era' as const, slot })));

const anyPlacement: fc.Arbitrary<Placement> = fc.oneof(
  downgradablePlacement,
  fc.record({
    t: fc.constant('pci' as const),
    slot: slotArb,
    bus: fc.constantFrom('pci.0', 'pcie.0', 'rp3'),
    driver: fc.oneof(fc.constant(null), fc.constantFrom('e1000', 'virtio-net-pci', 'virtio-blk-pci', 'scsi-hd')),
    id: fc.oneof(fc.constantFrom('era', 'new'), qemuId),
    addr: fc.constantFrom('canonical', '0x0c', '0XC', '0x20', '0xff'),
  }),
  fc.record({ t: fc.constant('scsi' as const), channel: fc.nat(1), target: fc.nat(15), lun: fc.nat(3) }),
  fc.record({ t: fc.constant('ide' as const), unit: fc.nat(1) }),
  fc.constant({ t: 'isa' as const }),
);

function eraDriver(kind: 'disk' | 'nic', hv: HvParams): string {
  const t = (hv[`${kind}_type`] as string | undefined) ?? 'paravirtual';
  return t !== 'paravirtual' ? t : kind === 'disk' ? 'virtio-blk-pci' : 'virtio-net-pci';
}

/** Builds hvinfo in Ganeti 2.16's key order (driver, id, bus, addr|channel…). */
function hvinfoFor(p: Placement, kind: 'disk' | 'nic', uuid: string, hv: HvParams): Record<string, unknown> {
  const eraId = (slot: number): string => `hot${kind}-${uuid.split('-')[0]}-pci-${slot}`;
  const newId = `${kind}-${uuid.split('-').slice(0, 3).join('-')}`;
  switch (p.t) {
    case 'empty':
      return {};
    case 'era':
      return { driver: eraDriver(kind, hv), id: eraId(p.slot), bus: 'pci.0', addr: `0x${p.slot.toString(16)}` };
    case 'pci': {
      const id = p.id === 'era' ? eraId(p.slot) : p.id === 'new' ? newId : p.id;
      const addr = p.addr === 'canonical' ? `0x${p.slot.toString(16)}` : p.addr;
      return { driver: p.driver ?? eraDriver(kind, hv), id, bus: p.bus, addr };
    }
    case 'scsi':
      return { driver: 'scsi-hd', id: newId, bus: 'scsi.0', channel: p.channel, 'scsi-id': p.target, lun: p.lun };
    case 'ide':
      return { driver: 'ide-hd', id: newId, bus: 'ide.0', unit: p.unit };
    case 'isa':
      return { driver: 'ne2k_isa', id: newId, bus: 'isa.0' };
  }
}

function runtime216(placement: fc.Arbitrary<Placement>, kvm: fc.Arbitrary<KvmCmdItem[]>, hvparams: fc.Arbitrary<HvParams>): fc.Arbitrary<RuntimeV2_16> {
  const nic = fc.tuple(nicBase, fc.uuid(), placement, extras);
  const disk = fc.tuple(diskBase, fc.uuid(), placement, extras, link, uri);
  return fc.tuple(kvm, fc.array(nic, { maxLength: 3 }), hvparams, fc.array(disk, { maxLength: 3 })).map(([c, nics, hv, disks]) => [
    c,
    nics.map(([b, u, p, ex]) => dict(Object.entries(b), [['uuid', u]], [['hvinfo', hvinfoFor(p, 'nic', u, hv)]], ex)),
    hv,
    disks.map(([b, u, p, ex, l, r]) => [dict(ex, Object.entries(b), [['hvinfo', hvinfoFor(p, 'disk', u, hv)]], [['uuid', u]]), l, r]),
  ] as RuntimeV2_16);
}

/** 2.16 files whose every device 2.10 can express (hvinfo `{}` or the PCI-era form). */
export const downgradable216Arb = runtime216(downgradablePlacement, kvmCmdArb, hvparamsArb);

/** 2.16 files of every kind (q35 machines too), most of which a lossless downgrade must refuse. */
export const any216Arb = runtime216(anyPlacement, kvmCmdAnyArb, hvparamsAnyArb);
