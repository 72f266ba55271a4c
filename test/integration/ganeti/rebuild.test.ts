/**
 * Every runtime file this project writes must be readable by Ganeti's own
 * KVM code, which rebuilds the same devices from it: a Ganeti migration
 * target, a Ganeti hotplug and `gnt-instance info` all read the file back
 * into Ganeti's Disk and NIC objects. Ganeti 3.0's installed code is the
 * oracle (test/helpers/ganeti.ts).
 */
import assert from 'node:assert/strict';
import { buildArgv, diskEntry, nicEntry, planInstance } from '../../../plugin/planner';
import type { HvInfo, InstanceSpec, RuntimeV2_16 } from '../../../plugin/types';
import { withEntry } from '../../../plugin/hotplug/runtime-entries';
import { ganetiRebuild, optionPairs, optionValues } from '../../helpers/ganeti';
import { macN, makeSpec, uuidN } from '../../helpers/specs';

const ALIASES = { pc: 'pc-i440fx-7.2', q35: 'pc-q35-7.2' };

/** Checks that Ganeti reads `runtime` and builds, for every disk and NIC, exactly the device our argv has. */
function assertGanetiRebuilds(runtime: RuntimeV2_16, label: string): void {
  const g = ganetiRebuild(runtime);
  const ours = buildArgv(runtime, { accel: 'tcg', qmp: '/tmp/x.qmp', runDir: '/tmp/run' });
  const ourDevices = new Map(optionValues(ours, '-device').map((v) => [new Map(optionPairs(v)).get('id'), optionPairs(v)] as const));
  const ourNodes = new Set(optionValues(ours, '-blockdev').map((v) => new Map(optionPairs(v, 'x')).get('node-name')));

  assert.equal(g.disks.length, runtime[3].length, `${label}: disks`);
  const gDevices = optionValues(g.block_options, '-device').map((v) => optionPairs(v));
  const gDrives = optionValues(g.block_options, '-drive').map((v) => new Map(optionPairs(v, 'x')));
  assert.equal(gDevices.length, runtime[3].length, `${label}: Ganeti builds one -device per disk`);
  runtime[3].forEach(([d, link, uri], i) => {
    const h = d.hvinfo as HvInfo;
    // Ganeti's -device is the hvinfo, in order, then the drive: exactly our hvinfo.
    const expected: Array<[string, string]> = [...Object.entries(h).map(([k, v]): [string, string] => [k, String(v)]), ['drive', h.id]];
    assert.deepEqual(gDevices[i], expected, `${label}: Ganeti's -device for disks[${i}]`);
    const ourDev = ourDevices.get(h.id);
    assert.ok(ourDev !== undefined, `${label}: our argv has ${h.id}`);
    const ourMap = new Map(ourDev);
    for (const [k, v] of expected) assert.equal(ourMap.get(k), v, `${label}: our -device ${h.id} ${k}`);
    // Ganeti's drive id is the node our -device reads.
    assert.equal(gDrives[i].get('id'), h.id, `${label}: Ganeti's -drive id for disks[${i}]`);
    assert.ok(ourNodes.has(h.id), `${label}: our -blockdev node ${h.id}`);
    // Ganeti opens the link, or the URI of a userspace disk, as our -blockdev does.
    assert.equal(gDrives[i].get('file'), uri ?? link, `${label}: what Ganeti opens for disks[${i}]`);
    assert.equal(g.disks[i].uuid, d.uuid);
  });

  assert.equal(g.nics.length, runtime[1].length, `${label}: NICs`);
  runtime[1].forEach((n, i) => {
    const h = n.hvinfo as HvInfo;
    const ourDev = optionValues(ours, '-device').find((v) => new Map(optionPairs(v)).get('id') === h.id);
    // Ganeti's NIC -device (on start and on a migration target) is character for character ours.
    assert.equal(g.nics[i].device, ourDev, `${label}: nics[${i}] -device`);
    assert.equal(g.nics[i].mac, n.mac);
    assert.equal(typeof g.nics[i].mode, 'string');
    assert.equal(typeof g.nics[i].link, 'string');
  });
}

function planned(spec: InstanceSpec, isBlockDevice?: (p: string) => boolean): RuntimeV2_16 {
  return planInstance(spec, { machineAliases: ALIASES, ...(isBlockDevice === undefined ? {} : { isBlockDevice }) }).runtime;
}

describe('Ganeti 3.0 reads what we write and rebuilds the same devices', function () {
  this.timeout(120_000);

  it('paravirtual: 1 to 16 disks, 0 to 8 NICs, with several kvm_pci_reservations', () => {
    const cases: Array<[number, number, number]> = [[1, 1, 12], [2, 8, 12], [16, 4, 12], [12, 8, 12], [4, 2, 4], [1, 1, 20], [6, 0, 0], [0, 3, 12]];
    for (const [disks, nics, res] of cases) {
      assertGanetiRebuilds(planned(makeSpec({ disks, nics, hvparams: { kvm_pci_reservations: res } })), `paravirtual ${disks}+${nics} res=${res}`);
    }
  });

  for (const [ctrl, max] of [['lsi', 7], ['megasas', 16], ['virtio-scsi-pci', 16]] as const) {
    it(`scsi-hd on ${ctrl}: up to ${max} disks and 8 NICs`, () => {
      for (const [disks, nics, res] of [[1, 1, 12], [max, 8, 12], [3, 2, 5]] as const) {
        const spec = makeSpec({ disks, nics, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: ctrl, kvm_pci_reservations: res } });
        assertGanetiRebuilds(planned(spec), `scsi-hd/${ctrl} ${disks}+${nics} res=${res}`);
      }
    });
  }

  it('hot-added disks and NICs (the entries disk.add and nic.add write)', () => {
    let rt = planned(makeSpec({ disks: 1, nics: 1 }));
    const disk = { uuid: uuidN(0x3000), path: '/var/run/ganeti/instance-disks/inst1.example.com:1', mode: 'rw' as const };
    rt = withEntry(rt, 'disk', diskEntry(disk, { driver: 'virtio-blk-pci', id: 'disk-00003000-b6e5-4243', bus: 'pci.0', addr: '0xe' }, 1, 'disk'));
    const nic = { uuid: uuidN(0x4000), mac: macN(9), backend: { type: 'user' as const } };
    rt = withEntry(rt, 'nic', nicEntry(nic, { driver: 'virtio-net-pci', id: 'nic-00004000-b6e5-4243', bus: 'pci.0', addr: '0xf' }));
    assertGanetiRebuilds(rt, 'hot-added');
    let scsi = planned(makeSpec({ disks: 2, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    scsi = withEntry(scsi, 'disk', diskEntry(disk, { driver: 'scsi-hd', id: 'disk-00003000-b6e5-4243', bus: 'scsi.0', channel: 0, 'scsi-id': 2, lun: 0 }, 2, 'disk'));
    assertGanetiRebuilds(scsi, 'hot-added scsi');
  });

  it('carries the Ganeti fields a spec gives and fills the rest honestly', () => {
    const spec = makeSpec({ disks: 3, nics: 2 });
    Object.assign(spec.disks[0], { dev_type: 'plain', logical_id: ['xenvg', 'lv0'], iv_name: 'disk/0', size: 1024, params: { stripes: 1 }, spindles: 1 });
    Object.assign(spec.disks[1], { custom_field: 'x', backend: { type: 'user' }, pci: 5, dynamic_params: { x: 1 }, hvinfo: { driver: 'x' } });
    Object.assign(spec.disks[2], { uri: 'rbd:rbd/image-2', params: { access: 'userspace' } });
    delete (spec.nics[1] as { nicparams?: unknown }).nicparams;
    Object.assign(spec.nics[0], { network: 'net-uuid', netinfo: null, ip: '192.0.2.7', name: 'eth0', custom: 1 });
    const rt = planned(spec, (p) => p.endsWith(':1'));
    const g = ganetiRebuild(rt);
    assert.deepEqual(g.disks.map((d) => d.dev_type), ['plain', 'blockdev', 'rbd']);
    assert.deepEqual(g.disks[0].logical_id, ['xenvg', 'lv0']);
    assert.deepEqual(g.disks[1].logical_id, ['manual', spec.disks[1].path]);
    assert.deepEqual(g.disks.map((d) => d.iv_name), ['disk/0', 'disk/1', 'disk/2']);
    // A userspace disk: Ganeti opens its URI, as our -blockdev does.
    assert.equal(new Map(optionPairs(optionValues(g.block_options, '-drive')[2], 'x')).get('file'), 'rbd:rbd/image-2');
    assert.equal(rt[3][0][0].size, 1024);
    assert.equal(rt[3][0][0].spindles, 1);
    // Fields Ganeti does not know would make its reader fail; they are not stored.
    assert.equal('custom_field' in rt[3][1][0], false);
    assert.equal('backend' in rt[3][1][0], false);
    // The placement is ours, and node-local params are never stored.
    assert.equal('pci' in rt[3][1][0], false);
    assert.equal('dynamic_params' in rt[3][1][0], false);
    assert.equal(rt[3][1][0].hvinfo?.driver, 'virtio-blk-pci');
    assert.equal('custom' in rt[1][0], false);
    assert.deepEqual(g.nics[0].nicparams, { mode: 'bridged', link: 'br0', vlan: '' });
    assert.deepEqual(g.nics[1].nicparams, { mode: 'bridged', link: 'xen-br0', vlan: '' });
    assertGanetiRebuilds(rt, 'typed disks');
  });

  it('refuses a disk with a uri that Ganeti would open through its link', () => {
    const spec = makeSpec({ disks: 1, nics: 0 });
    Object.assign(spec.disks[0], { uri: 'rbd:rbd/x', params: { access: 'kernelspace' } });
    assert.throws(() => planned(spec), (e: { code?: string; field?: string }) => e.code === 'GKD_SPEC_INVALID' && e.field === 'disks[0].params.access');
  });

  it('refuses a DRBD disk without its logical_id (Ganeti would fail reading it)', () => {
    const spec = makeSpec({ disks: 1, nics: 0 });
    Object.assign(spec.disks[0], { dev_type: 'drbd' });
    assert.throws(() => planned(spec), (e: { code?: string; field?: string }) => e.code === 'GKD_SPEC_INVALID' && e.field === 'disks[0].logical_id');
  });
});
