import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { convertRuntime, serializeRuntime } from '../../../plugin/runtime';
import { hashDir } from '../../helpers/dir-hash';
import { makeTempDir, putRuntime, removeDir } from '../../helpers/runtime-dir';
import { sample210, sample216, scsi216 } from '../../helpers/runtime-samples';

const MAIN = join(__dirname, '..', '..', '..', 'plugin', 'cli', 'main.js');

function cli(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, 'runtime', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('kvm-devices runtime', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir();
    putRuntime(dir, 'a216', JSON.stringify(sample216(), null, 2), true);
    putRuntime(dir, 'b210', sample210());
    putRuntime(dir, 'scsi', scsi216());
    const nobus = scsi216();
    delete (nobus[1][0].hvinfo as Record<string, unknown>).bus;
    putRuntime(dir, 'nobus', nobus);
  });
  after(() => removeDir(dir));
  const f = (n: string): string => join(dir, `${n}.runtime`);

  it('detect prints the format id; validate says valid or lists the problems with their place', () => {
    assert.deepEqual(cli('detect', f('a216')), { code: 0, out: '2.16\n', err: '' });
    assert.deepEqual(cli('validate', f('b210')), { code: 0, out: 'valid 2.10\n', err: '' });
    const bad = cli('validate', f('nobus'));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /is not valid 2\.16:\n {2}nics\[0\]\.hvinfo: must have required property "bus"/);
  });

  it('convert prints one line (Ganeti encoding) and refuses a lossy downgrade naming the device', () => {
    const up = cli('convert', '--to', '2.16', f('b210'));
    assert.equal(up.code, 0, up.err);
    assert.equal(up.out, serializeRuntime(convertRuntime(sample210(), '2.16').value));
    const no = cli('convert', '--to', '2.10', f('scsi'));
    assert.equal(no.code, 1);
    assert.equal(no.out, '');
    assert.match(no.err, /^kvm-devices runtime convert: Cannot downgrade runtime file to 2\.10: nic .*; disk "disk-9e7c85f6-b6e5-4243" is on SCSI bus "scsi\.0"/);
    const forced = cli('convert', '--to', '2.10', '--force', f('scsi'));
    assert.equal(forced.code, 0);
    assert.match(forced.err, /^note: disks\[0\]\.hvinfo: dropped hvinfo /m);
  });

  it('usage errors exit 2; --help exits 0', () => {
    assert.equal(cli().code, 2);
    assert.equal(cli('nope').code, 2);
    assert.match(cli('convert', f('a216')).err, /convert needs --to ID/);
    assert.equal(cli('convert', '--to', '3.0', f('a216')).code, 2);
    assert.equal(cli('detect', '--bogus', f('a216')).code, 2);
    assert.equal(cli('detect').code, 2);
    for (const sub of ['convert', 'downgrade-all']) {
      const h = cli(sub, '--help');
      assert.equal(h.code, 0);
      assert.match(h.out, new RegExp(`^usage: kvm-devices runtime ${sub} `));
    }
  });

  it('refuses standard input over the 16 MiB cap with exit 1, not as a usage error', () => {
    const big = Buffer.alloc(16 * 1024 * 1024 + 1, 0x20);
    const r = spawnSync(process.execPath, [MAIN, 'runtime', 'detect', '-'], { input: big, encoding: 'utf8', maxBuffer: 1 << 20 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^kvm-devices runtime detect: Cannot read standard input: it is over the 16 MiB limit\n$/);
    assert.doesNotMatch(r.stderr, /usage:/);
  });

  it('downgrade-all --dry-run changes nothing and exits 1 when a file would be refused; upgrade-all converts', () => {
    const work = makeTempDir();
    try {
      putRuntime(work, 'b210', sample210());
      putRuntime(work, 'scsi', scsi216());
      writeFileSync(join(work, 'junk.runtime'), '{');
      const before = hashDir(work);
      const dry = cli('downgrade-all', '--to', '2.10', '--dry-run', work);
      assert.equal(dry.code, 1);
      assert.equal(hashDir(work), before);
      assert.match(dry.out, /^scsi: refused \(2\.16 -> 2\.10\): Cannot downgrade "scsi"|^scsi: refused/m);
      assert.match(dry.err, /dry run: 3 files: 0 would convert, 1 unchanged, 1 refused, 1 failed/);
      const up = cli('upgrade-all', '--to', '2.16', work);
      assert.equal(up.code, 1);
      assert.match(up.out, /^b210: converted \(2\.10 -> 2\.16\)$/m);
      assert.match(up.out, /^junk: error \(-> 2\.16\): Cannot parse runtime file/m);
      assert.equal(readFileSync(join(work, 'junk.runtime'), 'utf8'), '{');
      const json = JSON.parse(cli('upgrade-all', '--to', '2.16', '--json', work).out);
      assert.deepEqual(json.counts, { converted: 0, unchanged: 2, refused: 0, error: 1 });
    } finally {
      removeDir(work);
    }
  });
});
