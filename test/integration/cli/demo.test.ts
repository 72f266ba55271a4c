/**
 * `kvm-devices demo`, the README's first command, as an operator runs it.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const MAIN = join(__dirname, '..', '..', '..', 'plugin', 'cli', 'main.js');

describe('kvm-devices demo', function () {
  this.timeout(120_000);

  it('runs every step on real QEMU, ends clean on both nodes, and leaves no QEMU behind', () => {
    const r = spawnSync(process.execPath, [MAIN, 'demo'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /instance\.verify on node A .*\n\s+clean/);
    assert.match(r.stdout, /migration\.start on node A .*\n\s+completed/);
    assert.match(r.stdout, /instance\.verify on node B .*\n\s+clean/);
    assert.match(r.stdout, /demo passed/);
    const left = spawnSync('pgrep', ['-f', 'kvm-devices-demo-'], { encoding: 'utf8' });
    assert.equal(left.stdout.trim(), '', 'a demo QEMU is still running');
  });

  it('says how to get QEMU when it is missing', () => {
    const r = spawnSync(process.execPath, [MAIN, 'demo', '--qemu', '/nonexistent/qemu'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /install QEMU/);
  });
});
