import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { RpcClient, RpcCallError, isLive } from '../../../plugin/rpc';
import { MAIN, sampleSpec, spawnDaemon, tempDir, untilDaemon, type DaemonProcess } from './daemon-process';

function rawSocket(path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${path}:/`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function code(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RpcCallError) return e.code;
    throw e;
  }
  return 0;
}

describe('kvm-devices serve (real daemon, child process)', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let c: RpcClient;

  before(async () => {
    d = await spawnDaemon();
    c = await RpcClient.connect(d.socket);
  });
  after(async () => {
    await c?.close();
    await d?.stop();
  });

  it('serves every wired method through the real client', async () => {
    const discover = await c.call<{ methods: { name: string }[] }>('rpc.discover');
    const names = discover.methods.map((m) => m.name);
    for (const m of ['rpc.discover', 'instance.plan', 'instance.start', 'instance.cleanup', 'instance.verify', 'hotplug.supported',
      'disk.add', 'disk.remove', 'nic.add', 'nic.remove', 'migration.accept', 'migration.start',
      'runtime.get', 'runtime.validate', 'runtime.convert', 'runtime.list']) {
      assert.ok(names.includes(m), `${m} not served`);
    }
    const spec = sampleSpec();
    const plan = await c.call<{ argv: string[]; devices: { id: string }[] }>('instance.plan', { instance: spec, accel: 'tcg' });
    assert.ok(plan.argv.includes('-name'));
    assert.ok(plan.argv.some((a) => a.includes(`${d.dir}/run/ctrl/inst1.example.com.qmp`)), 'QMP socket from the daemon config');
    assert.deepEqual(plan.devices.map((x) => x.id).sort(), ['disk-5a1d3c11-0b7e-4a59', 'disk-9e7c85f6-b6e5-4243', 'nic-003fc157-66a8-4e6d']);
    const started = await c.call<{ launched: boolean }>('instance.start', { instance: spec });
    assert.equal(started.launched, false);
    assert.ok(existsSync(join(d.runtimeDir, 'inst1.example.com.runtime')));
    // An existing runtime file may record hot-plugged devices: replaced only when asked.
    const before = readFileSync(join(d.runtimeDir, 'inst1.example.com.runtime'));
    await assert.rejects(c.call('instance.start', { instance: { ...spec, disks: [(spec.disks as unknown[])[0]] } }), (e: RpcCallError) => {
      assert.equal(e.code, 2008);
      assert.match(e.message, /already has a runtime file.*replace: true/);
      return true;
    });
    assert.deepEqual(readFileSync(join(d.runtimeDir, 'inst1.example.com.runtime')), before, 'refused: the file is untouched');
    await c.call('instance.start', { instance: spec, replace: true });
    const got = await c.call<{ format: string; runtime: unknown[] }>('runtime.get', { name: 'inst1.example.com' });
    assert.equal(got.format, '2.16');
    assert.deepEqual(await c.call('runtime.validate', { name: 'inst1.example.com' }), { valid: true, format: '2.16' });
    assert.deepEqual(await c.call('runtime.validate', { runtime: got.runtime }), { valid: true, format: '2.16' });
    const list = await c.call<{ files: { name: string; matches: boolean }[] }>('runtime.list', { expect: '2.10' });
    assert.deepEqual(list.files, [{ name: 'inst1.example.com', format: '2.16', matches: false }]);
    // The SCSI disks cannot be expressed in 2.10: refused, naming them.
    await assert.rejects(c.call('runtime.convert', { name: 'inst1.example.com', to: '2.10' }), (e: RpcCallError) => {
      assert.equal(e.code, 2003);
      assert.match(e.message, /disk-9e7c85f6-b6e5-4243/);
      return true;
    });
    assert.deepEqual(await c.call('instance.cleanup', { name: 'inst1.example.com' }), { name: 'inst1.example.com', removed: true });
    assert.equal(await code(c.call('runtime.get', { name: 'inst1.example.com' })), 2004);
    // Methods that need a live QEMU answer with the QMP or runtime error, not a crash
    // (the launch-mode test drives them against real QEMU).
    assert.ok([2004, 3001].includes(await code(c.call('instance.verify', { name: 'inst1.example.com' }))));
    assert.equal(await code(c.call('disk.remove', { name: 'inst1.example.com', uuid: '9e7c85f6-b6e5-4243-b27d-680b78c6d203' })), 2004);
    await c.call('instance.start', { instance: sampleSpec() });
    assert.equal(await code(c.call('hotplug.supported', { name: 'inst1.example.com', kind: 'nic', action: 'add', qmp: `${d.dir}/run/no.qmp` })), 3001);
    assert.equal(await code(c.call('migration.start', { name: 'inst1.example.com', uri: `unix:${d.dir}/run/nowhere.sock`, qmp: `${d.dir}/run/no.qmp` })), 3001);
    await c.call('instance.cleanup', { name: 'inst1.example.com' });
  });

  it('refuses a qmp socket outside the daemon\'s run dir with -32602 naming the param', async () => {
    const name = 'inst1.example.com';
    const outside = async (params: Record<string, unknown>, method = 'hotplug.supported'): Promise<{ path: string; message: string }[]> => {
      try {
        await c.call(method, { name, ...params });
      } catch (e) {
        assert.ok(e instanceof RpcCallError);
        assert.equal(e.code, -32602, e.message);
        return (e.data as { errors: { path: string; message: string }[] }).errors;
      }
      throw new Error('accepted');
    };
    const hp = { kind: 'disk', action: 'add' };
    const [other] = await outside({ ...hp, qmp: `${d.dir}/elsewhere.qmp` });
    assert.equal(other?.path, '/qmp');
    assert.match(other?.message ?? '', /must be a socket under ".*\/run"/);
    assert.equal((await outside({ ...hp, qmp: '/run/systemd/private' }))[0]?.path, '/qmp');
    assert.equal((await outside({ ...hp, qmp: `${d.dir}/run/../sock/rpc.sock` }))[0]?.path, '/qmp', 'no ".." segments');
    assert.equal((await outside({ qmp: '/tmp/x.qmp' }, 'instance.verify'))[0]?.path, '/qmp');
    assert.equal((await outside({ uri: `unix:${d.dir}/run/nowhere.sock`, targetQmp: '/tmp/t.qmp' }, 'migration.start'))[0]?.path, '/targetQmp');
    await assert.rejects(c.call('instance.start', { instance: sampleSpec(), qmp: '/tmp/x.qmp' }), (e: RpcCallError) => e.code === -32602);
    // A symlink inside the run dir that leads out is refused too.
    mkdirSync(join(d.dir, 'run'), { recursive: true });
    symlinkSync(d.socket, join(d.dir, 'run', 'link.qmp'));
    assert.equal((await outside({ ...hp, qmp: `${d.dir}/run/link.qmp` }))[0]?.path, '/qmp');
  });

  it('answers bad payloads with the right error and keeps serving', async () => {
    assert.equal(await code(c.call('no.such.method')), -32601);
    assert.equal(await code(c.call('instance.cleanup', { name: 42 })), -32602);
    await assert.rejects(c.call('instance.plan', { instance: { name: 'x', disks: [{ path: '/d' }], nics: [] } }),
      (e: RpcCallError) => e.code === -32602 && JSON.stringify(e.data).includes('/instance/disks/0/uuid'));
    const ws = await rawSocket(d.socket);
    const reply = await new Promise<{ error: { code: number } }>((resolve) => {
      ws.once('message', (b) => resolve(JSON.parse(b.toString())));
      ws.send('{"jsonrpc": "2.0", "method": ');
    });
    assert.equal(reply.error.code, -32700);
    ws.close();
    // 10 MB in one frame: the connection is closed with 1009 (message too big).
    const big = await rawSocket(d.socket);
    const closeCode = await new Promise<number>((resolve) => {
      big.once('close', (cc) => resolve(cc));
      big.on('error', () => undefined);
      big.send(JSON.stringify({ jsonrpc: '2.0', method: 'rpc.discover', params: { pad: 'x'.repeat(10 * 1024 * 1024) }, id: 1 }));
    });
    assert.equal(closeCode, 1009);
    // A client that vanishes right after sending.
    const rude = await rawSocket(d.socket);
    rude.send(JSON.stringify({ jsonrpc: '2.0', method: 'instance.plan', params: { instance: sampleSpec() }, id: 1 }));
    rude.terminate();
    // Still serving, on the old connection and on a new one.
    await c.call('rpc.discover');
    const fresh = await RpcClient.connect(d.socket);
    await fresh.call('instance.plan', { instance: sampleSpec() });
    await fresh.close();
  });

  it('creates the socket with mode 0660 in a 0750 directory', () => {
    assert.equal(statSync(d.socket).mode & 0o777, 0o660);
    assert.equal(statSync(join(d.dir, 'sock')).mode & 0o777, 0o750);
  });

  it('refuses a connection from another user and accepts one from the socket group', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const script = `const n=require('net');const s=n.connect(${JSON.stringify(d.socket)});s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(3)})`;
    const as = (gid: number): string => spawnSync('setpriv', ['--reuid=65534', `--regid=${gid}`, '--clear-groups', process.execPath, '-e', script], { encoding: 'utf8' }).stdout.trim();
    // Directories opened up, so only the socket's own mode (0660) decides.
    const sockDir = join(d.dir, 'sock');
    chmodSync(d.dir, 0o755);
    chmodSync(sockDir, 0o755);
    try {
      assert.equal(as(65534), 'EACCES');
    } finally {
      chmodSync(sockDir, 0o750);
    }
    // As installed (directory 0750): a member of the socket's group gets in, others don't.
    assert.equal(as(0), 'connected');
    assert.equal(as(65534), 'EACCES');
  });

  it('lets the socket group reach the socket through the directory the daemon created', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith('nogroup:'));
    if (line === undefined) this.skip();
    const gid = Number(line.split(':')[2]);
    const dir = tempDir();
    chmodSync(dir, 0o755); // the test's temp dir, not the daemon's: open it so only the daemon's dir decides
    const g = await spawnDaemon({ dir, env: { GKD_SOCKET_GROUP: 'nogroup' } });
    try {
      const sockDir = statSync(join(dir, 'sock'));
      assert.equal(sockDir.mode & 0o777, 0o750);
      assert.equal(sockDir.gid, gid);
      assert.equal(statSync(g.socket).gid, gid);
      const script = `const n=require('net');const s=n.connect(${JSON.stringify(g.socket)});s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(3)})`;
      const as = (uid: number, group: number): string => spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${group}`, '--clear-groups', process.execPath, '-e', script], { encoding: 'utf8' }).stdout.trim();
      assert.equal(as(65534, gid), 'connected');
      // A directory that already existed keeps its owner and group.
      assert.equal(statSync(dir).gid, 0);
    } finally {
      await g.stop();
    }
  });

  it('never shows the socket at its path before its mode and group are set', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const gid = Number((readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith('nogroup:')) ?? 'x:x:-1').split(':')[2]);
    if (gid < 0) this.skip();
    for (let round = 0; round < 3; round++) {
      const dir = tempDir();
      const sock = join(dir, 'sock', 'rpc.sock');
      // A watcher that stats the path as fast as it can from before the daemon starts, and
      // reports what the first stat that found a socket there saw.
      const watcher = spawn(process.execPath, ['-e', `
        const fs = require('fs'); const end = Date.now() + 30000;
        console.log('watching');
        for (;;) {
          let st; try { st = fs.statSync(${JSON.stringify(sock)}); } catch { if (Date.now() > end) { console.log('timeout'); process.exit(1); } continue; }
          const d = fs.statSync(${JSON.stringify(join(dir, 'sock'))});
          console.log(JSON.stringify({ mode: st.mode & 0o777, gid: st.gid, dirGid: d.gid })); process.exit(0);
        }`], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise((r) => watcher.once('exit', r));
      let out = '';
      watcher.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
      await new Promise((r) => watcher.stdout?.once('data', r));
      const g = await spawnDaemon({ dir, env: { GKD_SOCKET_GROUP: 'nogroup' } });
      try {
        await exited;
        const seen = JSON.parse(out.split('\n')[1] ?? 'null') as { mode: number; gid: number; dirGid: number } | null;
        assert.deepEqual(seen, { mode: 0o660, gid, dirGid: gid }, `round ${round}: ${out}`);
      } finally {
        await g.stop();
      }
    }
  });

  it('removes a staging socket a dead daemon left next to its socket, and leaves none of its own', async () => {
    const dir = tempDir();
    const sockDir = join(dir, 'sock');
    mkdirSync(sockDir, { mode: 0o750 });
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const left = join(sockDir, `.${Number(dead.stdout.trim()).toString(36)}~`);
    // A socket file, as a daemon killed between binding and publishing leaves it.
    const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(left)},()=>console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => holder.stdout?.once('data', r));
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    assert.ok(existsSync(left));
    const g = await spawnDaemon({ dir });
    try {
      // Removed before the daemon listens.
      assert.equal(existsSync(left), false);
      // Its own staging name goes right after the socket is linked into place, which a client may
      // already reach: wait for it (a name that stayed would fail here).
      await untilDaemon(g, 'the daemon\'s own staging socket was not removed', () => readdirSync(sockDir).filter((n) => n.endsWith('~')).length === 0);
      assert.deepEqual(readdirSync(sockDir).filter((n) => n.endsWith('~')), []);
    } finally {
      await g.stop();
    }
  });

  it('refuses to start on a socket a live daemon holds, with its own exit status (3)', () => {
    const r = spawnSync(process.execPath, [MAIN, 'serve', '--socket', d.socket, '--log-level', 'silent'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 3);
    assert.match(r.stderr, /another daemon is serving it/);
  });
});

describe('kvm-devices serve: socket lifecycle', function () {
  this.timeout(60_000);

  it('removes a stale socket left by a dead process and starts', async () => {
    const dir = tempDir();
    const sock = join(dir, 'sock', 'rpc.sock');
    // A listener killed with SIGKILL leaves its socket file behind.
    const holder = spawn(process.execPath, ['-e', `require('fs').mkdirSync(${JSON.stringify(join(dir, 'sock'))});require('net').createServer().listen(${JSON.stringify(sock)},()=>console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => holder.stdout?.once('data', r));
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    assert.ok(existsSync(sock));
    assert.equal(await isLive(sock), false);
    const d = await spawnDaemon({ dir });
    const c = await RpcClient.connect(d.socket);
    await c.call('rpc.discover');
    await c.close();
    assert.equal(await d.stop(), 0);
  });

  it('of many daemons started at once over a stale socket, exactly one serves and the others exit 3; stopping it leaves no socket', async () => {
    for (let round = 0; round < 3; round++) {
      const dir = tempDir();
      const sockDir = join(dir, 'sock');
      const sock = join(sockDir, 'rpc.sock');
      const holder = spawn(process.execPath, ['-e', `require('fs').mkdirSync(${JSON.stringify(sockDir)},{mode:0o750});require('net').createServer().listen(${JSON.stringify(sock)},()=>console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => holder.stdout?.once('data', r));
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
      const n = 6;
      const children = Array.from({ length: n }, () => spawn(process.execPath, [
        MAIN, 'serve', '--socket', sock, '--runtime-dir', join(dir, 'conf'), '--run-dir', join(dir, 'run'), '--log-level', 'silent',
      ], { stdio: 'ignore', env: { ...process.env, GKD_CONFIG: '' } }));
      const exits = children.map((ch) => new Promise<number | null>((r) => ch.once('exit', (code) => r(code))));
      // Every loser exits on its own; wait for n-1 exits (or a deadline), then look.
      const deadline = Date.now() + 20_000;
      while (children.filter((ch) => ch.exitCode !== null).length < n - 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      const running = children.filter((ch) => ch.exitCode === null && ch.signalCode === null);
      const codes = children.filter((ch) => ch.exitCode !== null).map((ch) => ch.exitCode);
      try {
        assert.equal(running.length, 1, `round ${round}: ${running.length} daemons running, exit codes ${codes.join(',')}`);
        assert.deepEqual(codes, Array(n - 1).fill(3), `round ${round}`);
        const c = await RpcClient.connect(sock);
        await c.call('rpc.discover');
        await c.close();
      } finally {
        for (const ch of running) ch.kill('SIGTERM');
        await Promise.all(exits);
      }
      assert.equal(existsSync(sock), false, 'the one daemon removed its socket on SIGTERM');
    }
  });

  it('refuses a path that is not a socket', () => {
    const dir = tempDir();
    const file = join(dir, 'rpc.sock');
    writeFileSync(file, 'precious');
    chmodSync(file, 0o600);
    const r = spawnSync(process.execPath, [MAIN, 'serve', '--socket', file, '--log-level', 'silent'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /not a socket/);
  });

  it('on SIGTERM finishes, logs the shutdown, removes the socket and exits 0', async () => {
    const d = await spawnDaemon();
    const c = await RpcClient.connect(d.socket);
    await c.call('instance.plan', { instance: sampleSpec() });
    assert.equal(await d.stop('SIGTERM'), 0);
    assert.equal(existsSync(d.socket), false);
    const lines = d.log().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const call = lines.find((l) => l.method === 'instance.plan');
    assert.ok(call, 'a log line per call');
    assert.equal(call.outcome, 'ok');
    assert.equal(call.instance, 'inst1.example.com');
    assert.equal(typeof call.ms, 'number');
    assert.equal(typeof call.rid, 'string');
    assert.ok(lines.some((l) => l.msg === 'daemon stopped'));
  });

  it('honours a SIGTERM sent the moment its socket answers, still starting: exits 0 and removes the socket', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = tempDir();
      const sock = join(dir, 'sock', 'rpc.sock');
      writeFileSync(join(dir, 'config.json'), '{}\n');
      const child = spawn(process.execPath, [
        MAIN, 'serve', '--socket', sock, '--runtime-dir', join(dir, 'conf'), '--run-dir', join(dir, 'run'), '--log-level', 'info',
      ], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GKD_CONFIG: join(dir, 'config.json') } });
      let log = '';
      child.stderr?.on('data', (b: Buffer) => { log += b.toString(); });
      const exited = new Promise<[number | null, string | null]>((r) => child.once('exit', (code, signal) => r([code, signal])));
      // As soon as a client could reach it, which may be before the daemon has finished starting.
      for (const deadline = Date.now() + 15_000; !(await isLive(sock, 200));) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `round ${round}: the daemon did not listen: ${log}`);
        await new Promise((r) => setImmediate(r));
      }
      child.kill('SIGTERM');
      assert.deepEqual(await exited, [0, null], `round ${round}: ${log}`);
      assert.equal(existsSync(sock), false, `round ${round}: the socket was left behind`);
    }
  });

  it('on SIGTERM does not wait for a connection that never completed its HTTP upgrade', async () => {
    const d = await spawnDaemon();
    const s = connect(d.socket);
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    s.write('GET / HTT');
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const stopped = d.stop('SIGTERM');
    const timeout = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000).unref());
    const code = await Promise.race([stopped, timeout]);
    if (code === 'hung') d.child.kill('SIGKILL');
    assert.equal(code, 0, `exited in ${Date.now() - t0} ms`);
    assert.equal(existsSync(d.socket), false);
    s.destroy();
  });
});
