import { strict as assert } from 'node:assert';
import type { GkdError } from '../../../plugin/errors';
import {
  expectedLayout, findDrift, incomingProblem, machineType, migrationSettings, parseDeviceAliases, parseDeviceHelp, repairRuntime, targetRefusals, unplacedDevices, type LiveState,
} from '../../../plugin/migration';
import { convertRuntime } from '../../../plugin/runtime';
import { tiny29 } from '../../helpers/runtime-samples';
import { planInstance } from '../../../plugin/planner';
import type { RuntimeV2_16 } from '../../../plugin/types';
import { makeSpec } from '../../helpers/specs';

function plan(hvparams: Record<string, unknown> = {}): RuntimeV2_16 {
  return planInstance(makeSpec({ disks: 2, nics: 1, hvparams, diskPath: (i) => `/srv/d${i}` })).runtime;
}

/** The live state QEMU would report for `rt` exactly. */
function liveOf(rt: RuntimeV2_16): LiveState {
  const devices = expectedLayout(rt)
    .filter((e) => e.id !== undefined)
    .map((e) => ({ id: e.id as string, ...(e.fields as { driver: string }) }))
    .sort((a, b) => (a.id < b.id ? -1 : 1));
  const blocks = new Map(rt[3].map(([d, path]) => [(d.hvinfo as { id: string }).id, { nodeName: (d.hvinfo as { id: string }).id, file: path, readOnly: false }]));
  const macs = new Map(rt[1].map((n) => [(n.hvinfo as { id: string }).id, String(n.mac)]));
  return { devices, anon: [], blocks, macs };
}

describe('findDrift()', () => {
  it('finds nothing when QEMU has exactly the recorded devices', () => {
    const rt = plan({ disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' });
    assert.deepEqual(findDrift(expectedLayout(rt), liveOf(rt)), []);
  });

  it('tells an address change from a driver change, and names the runtime place', () => {
    const rt = plan();
    const live = liveOf(rt);
    const [d0, d1] = rt[3].map(([d]) => (d.hvinfo as { id: string }).id);
    live.devices.find((d) => d.id === d0)!.addr = '0x1a';
    live.devices.find((d) => d.id === d1)!.driver = 'virtio-blk-pci-transitional';
    const diffs = findDrift(expectedLayout(rt), live);
    assert.deepEqual(diffs.map((d) => [d.device, d.kind]), [[d0, 'address'], [d1, 'driver']]);
    assert.match(diffs[0].detail, /^disks\[0\] "disk-00001000-b6e5-4243": addr: runtime "0xc", QEMU "0x1a"$/);
  });

  it('reports another disk file, a missing medium and another MAC as property drift', () => {
    const rt = plan();
    const live = liveOf(rt);
    const [d0, d1] = rt[3].map(([d]) => (d.hvinfo as { id: string }).id);
    live.blocks.set(d0, { file: '/elsewhere', readOnly: false });
    live.blocks.delete(d1);
    const n0 = (rt[1][0].hvinfo as { id: string }).id;
    live.macs.set(n0, 'aa:00:00:00:00:99');
    assert.deepEqual(findDrift(expectedLayout(rt), live).map((d) => [d.device, d.kind]), [[n0, 'property'], [d0, 'property'], [d1, 'property']]);
  });

  it('matches devices without an id by driver, one for one', () => {
    const rt = plan({ kvm_extra: '-device virtio-rng-pci' });
    const live = liveOf(rt);
    assert.deepEqual(findDrift(expectedLayout(rt), live).map((d) => [d.device, d.kind]), [['virtio-rng-pci (no id)', 'missing-in-qemu']]);
    live.anon.push({ path: '/machine/peripheral-anon/device[0]', driver: 'virtio-rng-pci' }, { path: '/machine/peripheral-anon/device[1]', driver: 'virtio-rng-pci' });
    assert.deepEqual(findDrift(expectedLayout(rt), live).map((d) => d.device), ['/machine/peripheral-anon/device[1]']);
  });

  it('checks q35 root ports and the SCSI controller declared in kvm_cmd', () => {
    const rt = plan({ machine_version: 'pc-q35-7.2', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', kvm_pcie_spare_ports: 1 });
    const live = liveOf(rt);
    live.devices = live.devices.filter((d) => d.id !== 'rp0');
    live.devices.find((d) => d.id === 'scsi')!.bus = 'rp1';
    assert.deepEqual(findDrift(expectedLayout(rt), live).map((d) => [d.device, d.kind, d.recordedIn]), [['rp0', 'missing-in-qemu', 'kvm_cmd'], ['scsi', 'address', 'kvm_cmd']]);
  });
});

describe('repairRuntime()', () => {
  it('rewrites a moved disk from QEMU and refuses a kvm_cmd device', () => {
    const rt = plan({ disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' });
    const live = liveOf(rt);
    const d0 = (rt[3][0][0].hvinfo as { id: string }).id;
    live.devices.find((d) => d.id === d0)!['scsi-id'] = 5;
    const fixed = repairRuntime(rt, findDrift(expectedLayout(rt), live), live);
    assert.equal((fixed[3][0][0].hvinfo as { 'scsi-id': number })['scsi-id'], 5);
    assert.equal((rt[3][0][0].hvinfo as { 'scsi-id': number })['scsi-id'], 0, 'the input is not changed');
    live.devices.find((d) => d.id === 'scsi')!.addr = '0x9';
    assert.throws(() => repairRuntime(rt, findDrift(expectedLayout(rt), live), live), (e: GkdError) => e.code === 'GKD_DRIFT' && e.device === 'scsi');
  });
});

describe('disks QEMU reads through a passed descriptor (/dev/fdset/N)', () => {
  const real = (map: Record<string, string>) => (p: string): string | undefined => map[p];

  it('compares the file the descriptor is open on with the runtime path through its symlink', () => {
    const rt = plan();
    const [d0, d1] = rt[3].map(([d]) => (d.hvinfo as { id: string }).id);
    const live = liveOf(rt);
    live.blocks.set(d0, { file: '/dev/fdset/3', opened: '/data/d0.img', readOnly: false });
    live.blocks.set(d1, { file: '/dev/fdset/4', readOnly: false });
    live.fdsets = { sets: new Map([[3, ['/data/d0.img']], [4, []]]), open: new Set(['/data/d0.img', '/data/d1.img']) };
    const realpath = real({ '/srv/d0': '/data/d0.img', '/srv/d1': '/data/d1.img' });
    assert.deepEqual(findDrift(expectedLayout(rt), live, { realpath }), []);
    // Another file behind the link: drift, named with what QEMU really has.
    const moved = real({ '/srv/d0': '/data/other.img', '/srv/d1': '/data/gone.img' });
    const diffs = findDrift(expectedLayout(rt), live, { realpath: moved });
    assert.deepEqual(diffs.map((d) => [d.device, d.kind]), [[d0, 'property'], [d1, 'property']]);
    assert.deepEqual(diffs[0].qemu, { file: '/dev/fdset/3', opened: '/data/d0.img', nodeName: undefined });
    // An emptied set is not matched by a file another disk accounts for: the runtime naming disk 0's file for disk 1 is drift.
    const swapped = real({ '/srv/d0': '/data/d0.img', '/srv/d1': '/data/d0.img' });
    assert.deepEqual(findDrift(expectedLayout(rt), live, { realpath: swapped }).map((d) => [d.device, d.kind]), [[d1, 'property']]);
  });

  it('reports a descriptor it cannot resolve as unverifiable in a note, not as a difference', () => {
    const rt = plan();
    const [d0] = rt[3].map(([d]) => (d.hvinfo as { id: string }).id);
    const live = liveOf(rt);
    live.blocks.set(d0, { file: '/dev/fdset/0', readOnly: false });
    live.fdsets = { sets: new Map(), problem: 'no process visible here serves "/run/x.qmp"' };
    const notes: string[] = [];
    assert.deepEqual(findDrift(expectedLayout(rt), live, { realpath: (p) => p, notes }), []);
    assert.equal(notes.length, 1);
    assert.match(notes[0], /^disks\[0\] "disk-00001000-b6e5-4243": disk file unverifiable: QEMU reads it through \/dev\/fdset\/0, which cannot be resolved here: no process visible/);
    // Two disks matched only by QEMU's open files: which reads which is unverifiable.
    live.blocks.set(rt[3][1][0].hvinfo!.id as string, { file: '/dev/fdset/1', readOnly: false });
    live.fdsets = { sets: new Map([[0, []], [1, []]]), open: new Set(['/srv/d0', '/srv/d1']) };
    const notes2: string[] = [];
    assert.deepEqual(findDrift(expectedLayout(rt), live, { notes: notes2 }), []);
    assert.match(notes2[0], /read emptied fd sets; QEMU has each runtime file open, but which disk reads which file is unverifiable$/);
  });

  it('repair never records a name QEMU made up: /dev/fdset/N, json:{…}, or a path that does not exist', () => {
    const rt = plan();
    const [d0] = rt[3].map(([d]) => (d.hvinfo as { id: string }).id);
    for (const file of ['/dev/fdset/0', 'json:{"driver":"nbd"}', '/no/such/file']) {
      const live = liveOf(rt);
      live.blocks.set(d0, { file, readOnly: false });
      live.fdsets = { sets: new Map([[0, []]]), open: new Set() };
      const realpath = real({ '/srv/d0': '/data/d0.img', '/srv/d1': '/srv/d1' });
      const diffs = findDrift(expectedLayout(rt), live, { realpath });
      assert.deepEqual(diffs.map((d) => [d.device, d.kind]), [[d0, 'property']], file);
      assert.throws(() => repairRuntime(rt, diffs, live, {}, { realpath }), (e: GkdError) => e.code === 'GKD_DRIFT' && e.device === d0 && e.message.includes('no real file'), file);
    }
    // A descriptor whose set QEMU still lists is recorded as the file it is open on.
    const live = liveOf(rt);
    live.blocks.set(d0, { file: '/dev/fdset/0', opened: '/data/new.img', readOnly: false });
    const realpath = real({ '/srv/d0': '/data/d0.img', '/srv/d1': '/srv/d1', '/data/new.img': '/data/new.img' });
    const fixed = repairRuntime(rt, findDrift(expectedLayout(rt), live, { realpath }), live, {}, { realpath });
    assert.equal(fixed[3][0][1], '/data/new.img');
  });
});

describe('migration settings and target checks', () => {
  it('converts Ganeti units to QEMU parameters and refuses bad values', () => {
    assert.deepEqual(migrationSettings({ migration_bandwidth: 32, migration_downtime: '30', migration_caps: 'xbzrle:auto-converge' }), {
      parameters: { 'max-bandwidth': 32 * 1024 * 1024, 'downtime-limit': 30 },
      capabilities: ['xbzrle', 'auto-converge'],
    });
    assert.deepEqual(migrationSettings({}), { parameters: {}, capabilities: [] });
    assert.throws(() => migrationSettings({ migration_bandwidth: -1 }), { code: 'GKD_UNSUPPORTED_VALUE', field: 'hvparams.migration_bandwidth' });
  });

  it('reads the machine type and the local offer', () => {
    assert.equal(machineType(['kvm', '-machine', 'pc-i440fx-7.2,accel=tcg']), 'pc-i440fx-7.2');
    assert.equal(machineType(['kvm', '-M', 'accel=tcg,type=q35']), 'q35');
    assert.equal(machineType(['kvm']), undefined);
    assert.deepEqual([...parseDeviceHelp('Storage devices:\nname "virtio-blk-pci", bus PCI, alias "virtio-blk"\nname "scsi-hd", bus SCSI\n')], ['virtio-blk-pci', 'virtio-blk', 'scsi-hd']);
    assert.equal(incomingProblem('tcp:[::1]:8102'), undefined);
    assert.equal(incomingProblem('unix:relative.sock') !== undefined, true);
  });

  it('checks migration_caps against QEMU 7.2\'s capabilities, before anything starts', () => {
    assert.deepEqual(migrationSettings({ migration_caps: 'xbzrle:postcopy-ram:xbzrle:return-path' }).capabilities, ['xbzrle', 'postcopy-ram', 'return-path']);
    assert.throws(() => migrationSettings({ migration_caps: 'xbzrle:no-such-cap:x-colo:fast' }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_UNSUPPORTED_VALUE');
      assert.equal(e.field, 'hvparams.migration_caps');
      assert.match(e.message, /^Cannot use hvparams\.migration_caps "xbzrle:no-such-cap:x-colo:fast": "no-such-cap", "fast" are not migration capabilities of QEMU 7\.2 \(xbzrle, rdma-pin-all, /);
      assert.deepEqual(e.data, { unknown: ['no-such-cap', 'fast'] });
      return true;
    });
  });

  it('lists every refusal, with the field and device', () => {
    const rt = plan();
    const offer = { machines: new Set(['pc']), aliases: {}, devices: new Set(['virtio-net-pci']), deviceAliases: {} };
    const r = targetRefusals(rt, offer, (p) => p === '/srv/d0');
    assert.deepEqual(r.map((x) => [x.field, x.device]), [
      ['runtime[3][0][0].hvinfo.driver', 'disk-00001000-b6e5-4243'],
      ['runtime[3][1][0].hvinfo.driver', 'disk-00001001-b6e5-4243'],
      ['runtime[3][1][1]', 'disk-00001001-b6e5-4243'],
    ]);
  });

  it('reads device aliases from -device help', () => {
    assert.deepEqual(parseDeviceAliases('name "virtio-balloon-pci", bus PCI, alias "virtio-balloon"\nname "scsi-hd", bus SCSI\nname "e1000", bus PCI, alias "e1000-82540em", desc "Intel Gigabit Ethernet"\n'), {
      'virtio-balloon': 'virtio-balloon-pci',
      'e1000-82540em': 'e1000',
    });
  });
});

describe('findDrift() with Ganeti-era command lines', () => {
  it('reads -balloon as the -device QEMU gets and compares drivers through aliases', () => {
    for (const [opt, value, live] of [
      ['-balloon', 'virtio', { anon: [{ path: '/machine/peripheral-anon/device[0]', driver: 'virtio-balloon-pci' }] }],
      ['-balloon', 'virtio,id=balloon,bus=pci.0,addr=0x3', { devices: [{ id: 'balloon', driver: 'virtio-balloon-pci', bus: 'pci.0', addr: '0x3' }] }],
      ['-device', 'virtio-balloon,id=balloon', { devices: [{ id: 'balloon', driver: 'virtio-balloon-pci', bus: 'pci.0', addr: '0x2' }] }],
    ] as const) {
      const rt = plan();
      rt[0].push(opt, value);
      const l = liveOf(rt);
      l.anon.push(...('anon' in live ? live.anon : []));
      l.devices.push(...('devices' in live ? live.devices : []));
      assert.deepEqual(findDrift(expectedLayout(rt), l), [], `${opt} ${value}`);
      const e = expectedLayout(rt).find((x) => x.recordedIn === 'kvm_cmd')!;
      assert.equal(e.index, rt[0].length - 1, 'the place is kvm_cmd\'s own index');
    }
    // Another model is still a driver difference.
    const rt = plan();
    rt[0].push('-device', 'virtio-balloon,id=balloon');
    const l = liveOf(rt);
    l.devices.push({ id: 'balloon', driver: 'virtio-rng-pci', bus: 'pci.0', addr: '0x2' });
    assert.deepEqual(findDrift(expectedLayout(rt), l).map((d) => [d.device, d.kind]), [['balloon', 'driver']]);
  });

  it('reports the devices of a 2.9 file and hvinfo {} as unplaced, each taking its device without an id', () => {
    const rt = convertRuntime(tiny29(), '2.16').value;
    const unplaced = unplacedDevices(rt, '2.9');
    assert.deepEqual(unplaced.map((u) => [u.label, u.driver]), [
      ['nic with uuid "003fc157-66a8-4e6d-8b7e-ec4f69751396" (nics[0])', 'virtio-net-pci'],
      ['disk "-drive file=/var/run/ganeti/instance-disks/inst1:0,format=raw,if=virtio" (kvm_cmd[6])', 'virtio-blk-pci'],
    ]);
    const live: LiveState = {
      devices: [],
      anon: [{ path: '/machine/peripheral-anon/device[0]', driver: 'virtio-blk-pci' }, { path: '/machine/peripheral-anon/device[1]', driver: 'virtio-net-pci' }],
      blocks: new Map(),
      macs: new Map(),
    };
    const diffs = findDrift(expectedLayout(rt), live, { unplaced });
    assert.deepEqual(diffs.map((d) => [d.device, d.kind, d.recordedIn]), [
      ['/machine/peripheral-anon/device[1]', 'unplaced', 'nic'],
      ['/machine/peripheral-anon/device[0]', 'unplaced', 'kvm_cmd'],
    ]);
    assert.match(diffs[0].detail, /^nic with uuid "003fc157-.*" \(nics\[0\]\), in QEMU "\/machine\/peripheral-anon\/device\[1\]", has no device id: started by a release without device ids; restart the instance under this release before migrating$/);
    assert.throws(() => repairRuntime(rt, diffs, live), (e: GkdError) => e.code === 'GKD_DRIFT' && /started by a release without device ids/.test(e.message));
    // The same file as 2.16 (hvinfo {} NIC, no kvm_cmd disks counted): the NIC only.
    assert.deepEqual(unplacedDevices(rt, '2.16').map((u) => u.recordedIn), ['nic']);
    assert.deepEqual(unplacedDevices(plan(), '2.16'), []);
  });
});
