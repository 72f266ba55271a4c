/**
 * `kvm-devices demo`, the README's first command, as an operator runs it.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = join(__dirname, '..', '..', '..', 'plugin', 'cli', 'main.js');

describe('kvm-devices demo', function () {
  this.timeout(120_000);

  it('runs every step on real QEMU, ends clean on both nodes, and leaves no QEMU behind', () => {
    const r = spawnSync(process.execPath, [MAIN, 'demo'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /instance\.verify on node A .*\n\s+clean/);
    assert.match(r.stdout, /downgrade check \(runtime\.convert to 2\.10\) refused: .*disk-/);
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

  it('on SIGINT after QEMU started, stops every QEMU, removes its temp dir and exits non-zero', async () => {
    const demoDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('kvm-devices-demo-'));
    const before = new Set(demoDirs());
    const child = spawn(process.execPath, [MAIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        stdout += b.toString();
        if (/^ 3\. instance\.start/m.test(stdout)) resolve();
      });
      void exited.then(() => reject(new Error(`demo ended before step 3: ${stdout}${stderr}`)));
    });
    assert.notEqual(spawnSync('pgrep', ['-f', 'kvm-devices-demo-'], { encoding: 'utf8' }).stdout.trim(), '', 'QEMU runs');
    child.kill('SIGINT');
    const code = await exited;
    assert.equal(code, 130, stdout + stderr);
    assert.match(stderr, /SIGINT received/);
    const left = spawnSync('pgrep', ['-f', 'kvm-devices-demo-'], { encoding: 'utf8' });
    assert.equal(left.stdout.trim(), '', 'a demo QEMU is still running');
    assert.deepEqual(demoDirs().filter((n) => !before.has(n)), [], 'the temp dir is left behind');
  });
});
