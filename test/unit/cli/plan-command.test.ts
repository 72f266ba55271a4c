/**
 * `kvm-devices plan` as an operator runs it: the real CLI in a child
 * process, exit status and the field named on stderr.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { makeSpec } from '../../helpers/specs';

const MAIN = join(__dirname, '..', '..', '..', 'plugin', 'cli', 'main.js');

function plan(input: unknown, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, 'plan', ...args, '-'], { input: typeof input === 'string' ? input : JSON.stringify(input), encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('kvm-devices plan', function () {
  this.timeout(20_000);

  it('prints argv, runtime and devices for a valid spec', () => {
    const r = plan(makeSpec({ disks: 2, nics: 1 }), ['--accel', 'tcg', '--qmp', '/tmp/q.sock', '--run-dir', '/tmp/r']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(out), ['argv', 'runtime', 'devices']);
    assert.equal(out.runtime.length, 4);
    assert.deepEqual(out.devices.map((d: { hvinfo: { addr: string } }) => d.hvinfo.addr), ['0xc', '0xd', '0xe']);
    assert.ok(out.argv.includes('-qmp') && out.argv.includes('tcg'));
    assert.ok(out.argv.includes('/tmp/r/pid/inst1.example.com'));
  });

  const bad: Array<[string, () => unknown, string]> = [
    ['truncated JSON', () => '{"name": "x", "disks": [', 'parse'],
    ['a missing name', () => { const s: any = makeSpec({}); delete s.name; return s; }, '[name]'],
    ['a wrong type', () => { const s: any = makeSpec({}); s.disks = 'none'; return s; }, '[disks]'],
    ['an unknown disk_type', () => makeSpec({ hvparams: { disk_type: 'floppy' } }), '[hvparams.disk_type]'],
    ['17 disks', () => makeSpec({ disks: 17, nics: 0, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } }), '[disks]'],
    ['lsi with 8 SCSI disks', () => makeSpec({ disks: 8, nics: 0, hvparams: { disk_type: 'scsi-hd' } }), '[hvparams.scsi_controller_type]'],
    ['a bad UUID', () => { const s = makeSpec({}); s.disks[0].uuid = '12345678-zzzz'; return s; }, '[disks[0].uuid]'],
    ['kvm_pci_reservations 33', () => makeSpec({ hvparams: { kvm_pci_reservations: 33 } }), '[hvparams.kvm_pci_reservations]'],
  ];
  for (const [what, make, field] of bad) {
    it(`exits 1 naming the field for ${what}`, () => {
      const r = plan(make());
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.ok(r.stderr.includes(field), r.stderr);
    });
  }

  it('exits 2 on usage errors and 0 on --help', () => {
    assert.equal(spawnSync(process.execPath, [MAIN, 'plan'], { encoding: 'utf8' }).status, 2);
    assert.equal(spawnSync(process.execPath, [MAIN, 'plan', '--accel', 'xen', '-'], { encoding: 'utf8', input: '{}' }).status, 2);
    const h = spawnSync(process.execPath, [MAIN, 'plan', '--help'], { encoding: 'utf8' });
    assert.equal(h.status, 0);
    assert.match(h.stdout, /usage: kvm-devices plan/);
  });
});
