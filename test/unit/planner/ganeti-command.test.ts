/**
 * Command lines built from runtimes Ganeti 3.0 wrote: what Ganeti adds when
 * it starts QEMU without storing it is added, and nothing of ours that
 * would change the machine is.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectedLayout } from '../../../plugin/migration';
import { buildArgv, planInstance } from '../../../plugin/planner';
import type { RuntimeV2_16 } from '../../../plugin/types';
import { makeSpec } from '../../helpers/specs';

const FIXTURES = join(__dirname, '../../../../test/fixtures/runtime/ganeti-3.0');
const fixture = (name: string): RuntimeV2_16 => JSON.parse(readFileSync(join(FIXTURES, `${name}.runtime`), 'utf8')) as RuntimeV2_16;
const build = (rt: RuntimeV2_16): string[] => buildArgv(rt, { accel: 'tcg', runDir: '/tmp/run', qmp: '/tmp/run/x.qmp' });
const devices = (argv: string[]): string[] => argv.filter((_, i) => argv[i - 1] === '-device');

describe('command lines from Ganeti 3.0 runtime files', () => {
  it('keeps kvm_cmd as Ganeti stored it: no -nodefaults, its controller, -usb, the balloon', () => {
    const argv = build(fixture('inst3.example.com'));
    assert.ok(!argv.includes('-nodefaults'));
    assert.ok(argv.includes('-usb'));
    assert.deepEqual(devices(argv).slice(0, 2), ['lsi,id=scsi', 'virtio-balloon']);
    assert.ok(!argv.includes('-net'));
    assert.match(devices(argv).find((d) => d.startsWith('scsi-hd,')) ?? '', /,bootindex=1$/);
  });

  it('adds the SCSI controller the way Ganeti does when kvm_cmd lacks it, and verify expects it', () => {
    for (const [name, ctrl] of [['inst3.example.com', 'lsi'], ['inst2.example.com', 'virtio-scsi-pci']]) {
      const rt = fixture(name);
      const at = rt[0].indexOf(`${ctrl},id=scsi`);
      rt[0].splice(at - 1, 2);
      assert.deepEqual(devices(build(rt)).slice(0, 2), [`${ctrl},id=scsi`, 'virtio-balloon'], name);
      const e = expectedLayout(rt).find((x) => x.id === 'scsi');
      assert.deepEqual(e, { id: 'scsi', recordedIn: 'kvm_cmd', index: -1, fields: { driver: ctrl } });
    }
    // Paravirtual disks need no controller.
    assert.ok(!devices(build(fixture('inst1.example.com'))).some((d) => d.includes('id=scsi')));
  });

  it('passes -net none for an instance without NICs, as Ganeti does outside kvm_cmd (QEMU would add a NIC otherwise)', () => {
    const rt = fixture('inst3.example.com');
    rt[1] = [];
    const argv = build(rt);
    assert.deepEqual(argv.slice(argv.indexOf('-net'), argv.indexOf('-net') + 2), ['-net', 'none']);
    // Our own runtimes have -nodefaults: QEMU adds no NIC, so nothing is added.
    const ours = planInstance(makeSpec({ disks: 1, nics: 0 })).runtime;
    assert.ok(!build(ours).includes('-net'));
  });

  it('stores the serial port in kvm_cmd as Ganeti does, so a Ganeti target builds it too; serial_console false: none', () => {
    const on = planInstance(makeSpec({ disks: 1, nics: 0 })).runtime;
    assert.equal(on[0][on[0].indexOf('-serial') + 1], 'unix:/var/run/ganeti/kvm-hypervisor/ctrl/inst1.example.com.serial,server,nowait');
    // Our command line has the same one port, at this node's path.
    assert.deepEqual(build(on).filter((_, i, a) => a[i - 1] === '-serial'), ['unix:/tmp/run/ctrl/inst1.example.com.serial,server=on,wait=off']);
    const off = planInstance(makeSpec({ disks: 1, nics: 0, hvparams: { serial_console: false } })).runtime;
    assert.equal(off[0][off[0].indexOf('-serial') + 1], 'none');
    assert.deepEqual(build(off).filter((_, i, a) => a[i - 1] === '-serial'), ['none']);
  });

  it('leaves the boot device to a -boot in kvm_cmd (a cdrom, network or floppy boot_order)', () => {
    const rt = fixture('inst1.example.com');
    rt[0].push('-boot', 'd');
    assert.ok(!devices(build(rt)).some((d) => d.includes('bootindex')));
  });
});
