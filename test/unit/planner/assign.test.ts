import { strict as assert } from 'node:assert';
import { GkdError } from '../../../plugin/errors';
import { buildArgv, parseInstanceSpec, planInstance } from '../../../plugin/planner';
import type { PciHvInfo } from '../../../plugin/types';
import { makeSpec } from '../../helpers/specs';

function throwsCode(fn: () => unknown, code: string, field?: string, msg?: RegExp): GkdError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GkdError, `expected GkdError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (field !== undefined) assert.equal(e.field, field, e.message);
    if (msg !== undefined) assert.match(e.message, msg);
    return e;
  }
  assert.fail('expected an error');
}

describe('planInstance() Ganeti-compatible placement', () => {
  it('gives a paravirtual disk 0xc and the NIC 0xd (disks before NICs, slots below 12 left to QEMU)', () => {
    const p = planInstance(makeSpec({ disks: 1, nics: 1 }));
    assert.deepEqual(p.runtime[3][0][0].hvinfo, { driver: 'virtio-blk-pci', id: 'disk-00001000-b6e5-4243', bus: 'pci.0', addr: '0xc' });
    assert.deepEqual(p.runtime[1][0].hvinfo, { driver: 'virtio-net-pci', id: 'nic-00002000-66a8-4e6d', bus: 'pci.0', addr: '0xd' });
  });

  it('matches Ganeti 2.16 for one scsi-hd disk on virtio-scsi-pci and one NIC', () => {
    const spec = makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } });
    spec.disks[0].uuid = '9e7c85f6-b6e5-4243-b27d-680b78c6d203';
    spec.nics[0].uuid = '003fc157-66a8-4e6d-8b7e-ec4f69751396';
    const p = planInstance(spec);
    assert.deepEqual(p.runtime[3][0][0].hvinfo, { driver: 'scsi-hd', id: 'disk-9e7c85f6-b6e5-4243', bus: 'scsi.0', channel: 0, 'scsi-id': 0, lun: 0 });
    assert.deepEqual(p.runtime[1][0].hvinfo, { driver: 'virtio-net-pci', id: 'nic-003fc157-66a8-4e6d', bus: 'pci.0', addr: '0xc' });
    // The controller is explicit, at the top of the reserved range (machine-init devices take the bottom).
    assert.ok(p.runtime[0].includes('virtio-scsi-pci,id=scsi,bus=pci.0,addr=0xb'));
  });

  it('keeps hvinfo key order driver, id, bus, addr as Ganeti writes it', () => {
    const p = planInstance(makeSpec({ disks: 1, nics: 0 }));
    assert.deepEqual(Object.keys(p.runtime[3][0][0].hvinfo!), ['driver', 'id', 'bus', 'addr']);
  });

  it('with kvm_pci_reservations 0 skips the slots the machine occupies itself', () => {
    const p = planInstance(makeSpec({ disks: 2, nics: 1, hvparams: { kvm_pci_reservations: 0 } }));
    assert.deepEqual(p.devices.map((d) => (d.hvinfo as PciHvInfo).addr), ['0x2', '0x3', '0x4']);
  });

  it('with kvm_pci_reservations 20 starts at 0x14 and runs out with a clear error', () => {
    const p = planInstance(makeSpec({ disks: 1, nics: 1, hvparams: { kvm_pci_reservations: 20 } }));
    assert.deepEqual(p.devices.map((d) => (d.hvinfo as PciHvInfo).addr), ['0x14', '0x15']);
    throwsCode(() => planInstance(makeSpec({ disks: 12, nics: 1, hvparams: { kvm_pci_reservations: 20 } })), 'GKD_CAPACITY', 'hvparams.kvm_pci_reservations', /NIC 0 on pci\.0: hvparams\.kvm_pci_reservations is 20 and all 12 slots from 20 to 31 are taken/);
  });

  it('never places a device on a slot kvm_extra claims (addr is hex, with or without 0x, or JSON)', () => {
    const p = planInstance(makeSpec({ disks: 2, nics: 0, hvparams: { kvm_extra: '-device virtio-rng-pci,id=rng,addr=0xc -device "e1000,id=x,bus=pci.0,addr=d.1"' } }));
    assert.deepEqual(p.devices.map((d) => (d.hvinfo as PciHvInfo).addr), ['0xe', '0xf']);
    assert.deepEqual(p.runtime[0].slice(-4), ['-device', 'virtio-rng-pci,id=rng,addr=0xc', '-device', 'e1000,id=x,bus=pci.0,addr=d.1']);
    const j = planInstance(makeSpec({ disks: 1, nics: 0, hvparams: { kvm_extra: `-device '{"driver":"virtio-rng-pci","id":"r","addr":"0xc"}' -device virtio-rng-pci,addr=12` } }));
    assert.deepEqual(j.devices.map((d) => (d.hvinfo as PciHvInfo).addr), ['0xd']);
    assert.ok(!planInstance(makeSpec({ disks: 14, nics: 0, hvparams: { kvm_extra: '-device virtio-rng-pci,addr=12' } })).devices.some((d) => (d.hvinfo as PciHvInfo).addr === '0x12'));
  });

  it('keeps the SCSI controller off the slot -vga takes at machine init', () => {
    const p = planInstance(makeSpec({ disks: 1, nics: 0, hvparams: { disk_type: 'scsi-hd', kvm_pci_reservations: 3, kvm_extra: '-vga std' } }));
    // Slots 0-1 are the machine's, 2 is the VGA's: no room below 3, so the controller takes the top slot.
    assert.ok(p.runtime[0].includes('lsi53c895a,id=scsi,bus=pci.0,addr=0x1f'), String(p.runtime[0]));
  });

  it('gives each SCSI disk its own target, channel 0, lun 0', () => {
    const p = planInstance(makeSpec({ disks: 3, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'megasas' } }));
    assert.deepEqual(p.devices.map((d) => [d.hvinfo.bus, (d.hvinfo as { 'scsi-id': number })['scsi-id']]), [['scsi.0', 0], ['scsi.0', 1], ['scsi.0', 2]]);
    assert.ok(p.runtime[0].includes('megasas,id=scsi,bus=pci.0,addr=0xb'));
  });

  it('takes 7 disks on lsi and refuses 8, naming the controller, its limit and the fix', () => {
    planInstance(makeSpec({ disks: 7, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' } }));
    throwsCode(
      () => planInstance(makeSpec({ disks: 8, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' } })),
      'GKD_CAPACITY',
      'hvparams.scsi_controller_type',
      /8 SCSI disks on "lsi" \(lsi53c895a\): it has 7 usable targets .*virtio-scsi-pci/,
    );
  });

  it('refuses 17 disks and 9 NICs', () => {
    throwsCode(() => planInstance(makeSpec({ disks: 17, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } })), 'GKD_CAPACITY', 'disks', /at most 16/);
    throwsCode(() => planInstance(makeSpec({ disks: 0, nics: 9 })), 'GKD_CAPACITY', 'nics', /at most 8/);
  });

  it('fits 16 paravirtual disks and 8 NICs with the default reservations on pc', () => {
    const p = planInstance(makeSpec({ disks: 16, nics: 4 }));
    assert.equal((p.devices.at(-1)!.hvinfo as PciHvInfo).addr, '0x1f');
    throwsCode(() => planInstance(makeSpec({ disks: 16, nics: 5 })), 'GKD_CAPACITY', 'hvparams.kvm_pci_reservations');
  });

  it('rejects malformed UUIDs and colliding ids', () => {
    const bad = makeSpec({ disks: 2, nics: 0 });
    bad.disks[1].uuid = 'not-a-uuid';
    throwsCode(() => planInstance(bad), 'GKD_ID_INVALID', 'disks[1].uuid');
    const clash = makeSpec({ disks: 2, nics: 0 });
    clash.disks[1].uuid = clash.disks[0].uuid.replace(/..$/, 'ff');
    throwsCode(() => planInstance(clash), 'GKD_ID_INVALID', 'disks[1].uuid', /collides with disks\[0\]\.uuid/);
  });

  it('rejects unknown and refused hvparam values, naming the field', () => {
    throwsCode(() => planInstance(makeSpec({ hvparams: { disk_type: 'floppy' } })), 'GKD_UNSUPPORTED_VALUE', 'hvparams.disk_type');
    throwsCode(() => planInstance(makeSpec({ hvparams: { disk_type: 'scsi' } })), 'GKD_UNSUPPORTED_VALUE', 'hvparams.disk_type', /scsi-hd/);
    throwsCode(() => planInstance(makeSpec({ hvparams: { kvm_pci_reservations: 33 } })), 'GKD_UNSUPPORTED_VALUE', 'hvparams.kvm_pci_reservations', /0 to 32/);
    throwsCode(() => planInstance(makeSpec({ hvparams: { nic_type: 'virtio' } })), 'GKD_UNSUPPORTED_VALUE', 'hvparams.nic_type');
    throwsCode(() => planInstance(makeSpec({ hvparams: { machine_version: 'microvm' } })), 'GKD_UNSUPPORTED_VALUE', 'hvparams.machine_version');
    throwsCode(() => planInstance(makeSpec({ hvparams: { vhost_net: 'yes' } })), 'GKD_SPEC_INVALID', 'hvparams.vhost_net');
  });

  it('keeps unknown hvparams and fills Ganeti defaults in the runtime', () => {
    const p = planInstance(makeSpec({ hvparams: { x_future: { a: 1 } } }));
    assert.deepEqual(p.runtime[2].x_future, { a: 1 });
    assert.equal(p.runtime[2].kvm_pci_reservations, 12);
    assert.equal(p.runtime[2].scsi_controller_type, 'lsi');
  });

  it('puts ne2k_isa on the ISA bus and refuses a second one', () => {
    const p = planInstance(makeSpec({ disks: 0, nics: 1, hvparams: { nic_type: 'ne2k_isa' } }));
    assert.deepEqual(p.devices[0].hvinfo, { driver: 'ne2k_isa', id: 'nic-00002000-66a8-4e6d', bus: 'isa.0' });
    assert.equal(p.devices[0].hotpluggable, false);
    throwsCode(() => planInstance(makeSpec({ disks: 0, nics: 2, hvparams: { nic_type: 'ne2k_isa' } })), 'GKD_CAPACITY', 'hvparams.nic_type');
  });

  it('puts IDE disks on ide.N units and refuses a fifth on pc', () => {
    const p = planInstance(makeSpec({ disks: 4, nics: 0, hvparams: { disk_type: 'ide' } }));
    assert.deepEqual(p.devices.map((d) => [d.hvinfo.bus, (d.hvinfo as { unit: number }).unit]), [['ide.0', 0], ['ide.0', 1], ['ide.1', 0], ['ide.1', 1]]);
    throwsCode(() => planInstance(makeSpec({ disks: 5, nics: 0, hvparams: { disk_type: 'ide' } })), 'GKD_CAPACITY', 'hvparams.disk_type');
  });

  it('freezes a machine alias to the versioned type when the local QEMU mapping is given', () => {
    const p = planInstance(makeSpec({}), { machineAliases: { pc: 'pc-i440fx-7.2' } });
    const cmd = p.runtime[0];
    assert.equal(cmd[cmd.indexOf('-machine') + 1], 'pc-i440fx-7.2');
  });
});

describe('planInstance() on q35', () => {
  it('puts each device alone at slot 0 of its own root port, packed 8 ports per root slot', () => {
    const p = planInstance(makeSpec({ disks: 2, nics: 1, hvparams: { machine_version: 'q35', kvm_pcie_spare_ports: 6 } }));
    assert.deepEqual(p.devices.map((d) => d.hvinfo.bus), ['rp0', 'rp1', 'rp2']);
    assert.ok(p.devices.every((d) => (d.hvinfo as PciHvInfo).addr === '0x0'));
    const ports = p.runtime[0].filter((a) => typeof a === 'string' && a.startsWith('pcie-root-port'));
    assert.equal(ports.length, 9);
    assert.equal(ports[0], 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x1,multifunction=on');
    assert.equal(ports[7], 'pcie-root-port,id=rp7,bus=pcie.0,chassis=8,addr=0x1.0x7');
    assert.equal(ports[8], 'pcie-root-port,id=rp8,bus=pcie.0,chassis=9,addr=0x2');
  });

  it('ignores kvm_pci_reservations and by default leaves room to grow to 16 disks and 8 NICs', () => {
    const p = planInstance(makeSpec({ disks: 3, nics: 2, hvparams: { machine_version: 'pc-q35-7.2', kvm_pci_reservations: 31 } }));
    const ports = p.runtime[0].filter((a) => typeof a === 'string' && a.startsWith('pcie-root-port'));
    assert.equal(ports.length, 16 + 8);
  });

  it('puts the SCSI controller behind a port too', () => {
    const p = planInstance(makeSpec({ disks: 2, nics: 0, hvparams: { machine_version: 'q35', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }));
    assert.ok(p.runtime[0].includes('virtio-scsi-pci,id=scsi,bus=rp0,addr=0x0'));
    assert.deepEqual(p.devices.map((d) => d.hvinfo.bus), ['scsi.0', 'scsi.0']);
  });
});

describe('buildArgv()', () => {
  it('escapes commas in disk paths and keeps spaces inside one argument', () => {
    const p = planInstance(makeSpec({ disks: 1, nics: 0, diskPath: () => '/srv/img/we,ird name.raw' }));
    const argv = buildArgv(p.runtime, { accel: 'tcg' });
    const bd = argv[argv.indexOf('-blockdev') + 1];
    assert.match(bd, /file\.filename=\/srv\/img\/we,,ird name\.raw(,|$)/);
  });

  it('adds node-local options only: accel, pid file, serial, qmp, -S, -incoming', () => {
    const p = planInstance(makeSpec({ disks: 0, nics: 0 }));
    const argv = buildArgv(p.runtime, { accel: 'tcg', runDir: '/run/x', qmp: '/run/x/q,1.sock', paused: true, incoming: 'defer' });
    // kvm_cmd as stored, except its serial port, whose socket is this node's.
    const kvm = p.runtime[0].map(String);
    const s = kvm.indexOf('-serial');
    assert.deepEqual(argv.slice(0, kvm.length - 2), [...kvm.slice(0, s), ...kvm.slice(s + 2)]);
    assert.deepEqual(argv.slice(kvm.length - 2), [
      '-accel', 'tcg', '-pidfile', '/run/x/pid/inst1.example.com',
      '-serial', 'unix:/run/x/ctrl/inst1.example.com.serial,server=on,wait=off',
      '-qmp', 'unix:/run/x/q,,1.sock,server=on,wait=off', '-S', '-incoming', 'defer',
    ]);
  });

  it('builds user, tap-by-ifname and tap-by-fd netdevs, vhost only under KVM', () => {
    const p = planInstance(makeSpec({ disks: 0, nics: 3 }));
    const [a, b, c] = p.runtime[1].map((n) => n.uuid!);
    const be = { [a]: { type: 'user' as const }, [b]: { type: 'tap' as const, ifname: 'tap7' }, [c]: { type: 'tap' as const, fd: 9 } };
    const nd = (argv: string[]) => argv.filter((_, i) => argv[i - 1] === '-netdev');
    assert.deepEqual(nd(buildArgv(p.runtime, { accel: 'tcg', nicBackends: be })), [
      'user,id=nic-00002000-66a8-4e6d',
      'tap,id=nic-00002001-66a8-4e6d,ifname=tap7,script=no,downscript=no',
      'tap,id=nic-00002002-66a8-4e6d,fd=9',
    ]);
    assert.match(nd(buildArgv(p.runtime, { accel: 'kvm', nicBackends: be }))[1], /,vhost=on$/);
  });

  it('maps disk_cache, disk_aio and disk_discard like Ganeti 3.1', () => {
    const p = planInstance(makeSpec({ disks: 1, nics: 0, hvparams: { disk_cache: 'writethrough', disk_discard: 'unmap', disk_aio: 'io_uring' } }));
    const argv = buildArgv(p.runtime, {});
    assert.match(argv[argv.indexOf('-blockdev') + 1], /discard=unmap,cache\.direct=off,.*file\.aio=io_uring/);
    assert.match(argv[argv.lastIndexOf('-device') + 1], /write-cache=off,bootindex=1$/);
    const nat = planInstance(makeSpec({ disks: 1, nics: 0, hvparams: { disk_aio: 'native' } }));
    assert.match(buildArgv(nat.runtime, {}).join(' '), /cache\.direct=on/);
  });

  it('uses host_device for block devices and blockdev protocols for rbd and gluster URIs', () => {
    const spec = makeSpec({ disks: 3, nics: 0 });
    spec.disks[1].uri = 'rbd:pool1/img-a';
    spec.disks[2].uri = 'gluster://gl1:24008/vol/dir/img';
    const argv = buildArgv(planInstance(spec).runtime, { isBlockDevice: () => true });
    const bds = argv.filter((_, i) => argv[i - 1] === '-blockdev');
    assert.match(bds[0], /file\.driver=host_device,/);
    assert.match(bds[1], /file\.driver=rbd,file\.pool=pool1,file\.image=img-a$/);
    assert.match(bds[2], /file\.driver=gluster,file\.volume=vol,file\.path=dir\/img,file\.server\.0\.type=inet,file\.server\.0\.host=gl1,file\.server\.0\.port=24008$/);
  });
});

describe('parseInstanceSpec()', () => {
  const good = () => JSON.parse(JSON.stringify(makeSpec({}))) as Record<string, unknown>;
  it('accepts a valid spec', () => {
    assert.equal(parseInstanceSpec(good()).name, 'inst1.example.com');
  });
  for (const [what, mutate, field] of [
    ['missing name', (s: any) => delete s.name, 'name'],
    ['name with a slash', (s: any) => (s.name = 'a/b'), 'name'],
    ['disks not an array', (s: any) => (s.disks = {}), 'disks'],
    ['disk without path', (s: any) => delete s.disks[0].path, 'disks[0].path'],
    ['disk size a string', (s: any) => (s.disks[0].size = '10G'), 'disks[0].size'],
    ['bad UUID', (s: any) => (s.nics[0].uuid = 'xyz'), 'nics[0].uuid'],
    ['bad MAC', (s: any) => (s.nics[0].mac = 'aa:bb'), 'nics[0].mac'],
    ['vcpus zero', (s: any) => (s.beparams.vcpus = 0), 'beparams.vcpus'],
  ] as const) {
    it(`rejects ${what}, naming ${field}`, () => {
      const s = good();
      mutate(s);
      throwsCode(() => parseInstanceSpec(s), 'GKD_SPEC_INVALID', field);
    });
  }
});

describe('buildArgv() on a runtime written by Ganeti', () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const ganeti = require('../../../../test/fixtures/runtime/ganeti/kvm_runtime.json');

  // The sample's disk URIs ("rbd://123451214123/") are placeholders Ganeti's own parser would refuse too.
  const sample = () => {
    const rt = structuredClone(ganeti);
    for (const e of rt[3]) e[2] = null;
    return rt;
  };

  it('drops Ganeti\'s node-local options and accel= and rebuilds the same number of serial ports', () => {
    const rt = sample();
    const argv = buildArgv(rt, { accel: 'tcg', runDir: '/run/t' });
    assert.ok(!argv.includes('-daemonize'));
    assert.equal(argv.filter((a) => a === '-pidfile').length, 1);
    assert.equal(argv.filter((a) => a === '-monitor').length, 0);
    assert.ok(argv.filter((a, i) => argv[i - 1] === '-machine').every((m) => !m.includes('accel=')));
    // One unix serial in Ganeti's kvm_cmd: one rebuilt, at this node's path.
    assert.deepEqual(argv.filter((a, i) => argv[i - 1] === '-serial'), ['unix:/run/t/ctrl/xen-test-inst2.serial,server=on,wait=off']);
    // Ganeti's read-time rewrite of the removed -balloon option.
    assert.ok(argv.includes('virtio-balloon') && !argv.includes('-balloon'));
  });

  it('keeps "-serial none" and adds no port then', () => {
    const rt = sample();
    const cmd = rt[0] as string[];
    const i = cmd.indexOf('-serial');
    cmd[i + 1] = 'none';
    const argv = buildArgv(rt, {});
    assert.deepEqual(argv.filter((a, j) => argv[j - 1] === '-serial'), ['none']);
  });
});

describe('buildArgv() socket paths', () => {
  it('refuses a QMP or serial socket path over 107 bytes, naming what made it long', () => {
    const long = `i${'x'.repeat(100)}.example.com`;
    const p = planInstance(makeSpec({ name: long, disks: 0, nics: 0 }));
    assert.throws(() => buildArgv(p.runtime, { runDir: '/var/run/ganeti/kvm-hypervisor' }), (e: GkdError) => e.code === 'GKD_SPEC_INVALID' && e.field === 'name' && /over the 107/.test(e.message));
    const q = planInstance(makeSpec({ disks: 0, nics: 0 }));
    assert.throws(() => buildArgv(q.runtime, { qmp: `/run/${'q'.repeat(110)}.qmp` }), (e: GkdError) => e.field === 'qmp');
    // 107 bytes exactly is fine.
    buildArgv(q.runtime, { runDir: '/r', qmp: `/${'q'.repeat(106)}` });
  });
});
