import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { basename, dirname } from 'node:path';
import { MAIN, spawnDaemon, type DaemonProcess } from './daemon-process';

function call(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, 'call', ...args], { encoding: 'utf8', input, env: { ...process.env, GKD_CONFIG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('kvm-devices call', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  before(async () => {
    d = await spawnDaemon();
  });
  after(async () => {
    await d?.stop();
  });

  it('prints the result as JSON and exits 0', () => {
    const r = call(['--socket', d.socket, 'runtime.list']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { dir: d.runtimeDir, files: [] });
  });

  it('reads params from stdin with "-"', () => {
    const r = call(['--socket', d.socket, '--json', 'runtime.validate', '-'], '{"runtime":[[],[],{}]}');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { valid: true, format: '2.9' });
  });

  it('prints an RPC error object on stderr and exits 1', () => {
    const r = call(['--socket', d.socket, 'runtime.get', '{"name":"missing"}']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    const err = JSON.parse(r.stderr) as { code: number; data: { code: string } };
    assert.equal(err.code, 2004);
    assert.equal(err.data.code, 'GKD_RUNTIME_NOT_FOUND');
  });

  it('--socket takes a path relative to the working directory', () => {
    const r = spawnSync(process.execPath, [MAIN, 'call', '--socket', `./${basename(d.socket)}`, 'runtime.list'], {
      cwd: dirname(d.socket), encoding: 'utf8', env: { ...process.env, GKD_CONFIG: '' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { dir: d.runtimeDir, files: [] });
  });

  it('exits 2 on usage errors and 1 when the daemon is unreachable', () => {
    assert.equal(call(['--socket', d.socket]).status, 2);
    assert.equal(call(['--socket', d.socket, 'rpc.discover', '{not json']).status, 2);
    assert.equal(call(['--socket', d.socket, 'rpc.discover', '[1]']).status, 2);
    assert.equal(call(['--bogus']).status, 2);
    const r = call(['--socket', `${d.dir}/none.sock`, 'rpc.discover']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /Cannot reach the daemon/);
  });

  it('--help on every daemon-side command exits 0', () => {
    for (const cmd of ['serve', 'call', 'hook']) {
      const r = spawnSync(process.execPath, [MAIN, cmd, '--help'], { encoding: 'utf8' });
      assert.equal(r.status, 0, cmd);
      assert.match(r.stdout, new RegExp(`usage: kvm-devices ${cmd}`));
    }
  });
});
