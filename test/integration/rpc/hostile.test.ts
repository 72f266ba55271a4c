/**
 * Hostile input against the real daemon (a child process): values nested
 * far deeper than any real spec, in fields a reply echoes, in batches, in
 * runtime files. Each must be refused with a typed error naming the field,
 * and the daemon must keep serving afterwards.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { RpcClient } from '../../../plugin/rpc';
import { assertDaemonAlive, sampleSpec, spawnDaemon, tempDir, type DaemonProcess } from './daemon-process';

/** JSON text of a value nested `n` arrays deep (built as text: the client's own JSON.stringify would overflow). */
function deepText(n: number): string {
  return '['.repeat(n) + ']'.repeat(n);
}

/** Sends raw frames on one connection and resolves to the parsed replies, in order. */
async function rawCall(socket: string, frame: string): Promise<any> {
  const ws = new WebSocket(`ws+unix://${socket}:/`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  try {
    return await new Promise((resolve, reject) => {
      ws.once('message', (data) => resolve(JSON.parse(String(data))));
      ws.once('close', (code) => reject(new Error(`connection closed (${code}) without a reply`)));
      ws.send(frame);
    });
  } finally {
    ws.close();
  }
}

/** A request frame whose params are `params` with the string "@DEEP@" replaced by a value `depth` deep. */
function frameWithDeep(method: string, params: unknown, depth: number, id: number | string = 1): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, params }).replace('"@DEEP@"', deepText(depth));
}

describe('hostile input (real daemon)', function () {
  this.timeout(60_000);
  let d: DaemonProcess;

  before(async () => {
    d = await spawnDaemon();
  });
  after(async () => {
    await d?.stop();
  });

  const assertAlive = (): Promise<void> => assertDaemonAlive(d);

  const echoed: Array<[string, (deep: string) => Record<string, unknown>, string]> = [
    ['hvparams.x', (x) => ({ instance: { ...sampleSpec(), hvparams: { x } } }), '/instance/hvparams/x'],
    ['an extra disk field', (x) => {
      const s = sampleSpec() as { disks: Record<string, unknown>[] };
      s.disks[0] = { ...s.disks[0], extra: x };
      return { instance: s };
    }, '/instance/disks/0/extra'],
    ['nicparams', (x) => {
      const s = sampleSpec() as { nics: Record<string, unknown>[] };
      s.nics[0] = { ...s.nics[0], nicparams: { mode: 'bridged', link: 'br0', x } };
      return { instance: s };
    }, '/instance/nics/0/nicparams/x'],
  ];
  for (const [what, params, path] of echoed) {
    it(`refuses a 9 KB request nesting ${what} 4,500 deep with -32602 naming it, and keeps serving`, async () => {
      const frame = frameWithDeep('instance.plan', params('@DEEP@'), 4500);
      const reply = await rawCall(d.socket, frame);
      assert.equal(reply.id, 1);
      assert.equal(reply.error?.code, -32602, JSON.stringify(reply).slice(0, 500));
      assert.ok(String(reply.error.data.errors[0].path).startsWith(path), reply.error.data.errors[0].path);
      assert.match(reply.error.data.errors[0].message, /nested deeper than \d+ levels/);
      await assertAlive();
    });
  }

  it('refuses the same inside a batch, answering every member', async () => {
    const one = frameWithDeep('instance.plan', { instance: { ...sampleSpec(), hvparams: { x: '@DEEP@' } } }, 4500, 7);
    const reply = await rawCall(d.socket, `[${one},{"jsonrpc":"2.0","id":8,"method":"rpc.discover"}]`);
    assert.ok(Array.isArray(reply));
    const byId = new Map(reply.map((r: { id: number }) => [r.id, r]));
    assert.equal((byId.get(7) as any).error.code, -32602);
    assert.ok((byId.get(8) as any).result.methods.length > 0);
    await assertAlive();
  });

  for (const [method, params, path] of [
    ['instance.start', { instance: { ...sampleSpec(), hvparams: { x: '@DEEP@' } } }, '/instance/hvparams/x'],
    ['runtime.convert', { runtime: '@DEEP@', to: '2.10' }, '/runtime'],
    ['migration.accept', { name: 'inst1.example.com', runtime: [[], [], { x: '@DEEP@' }, []], incoming: 'defer' }, '/runtime/2/x'],
  ] as const) {
    it(`${method} with a deep value names the field instead of GKD_INTERNAL`, async () => {
      const reply = await rawCall(d.socket, frameWithDeep(method, params, 5000));
      assert.equal(reply.error?.code, -32602, JSON.stringify(reply).slice(0, 500));
      assert.ok(String(reply.error.data.errors[0].path).startsWith(path), reply.error.data.errors[0].path);
      await assertAlive();
    });
  }

  it('a deep runtime file is refused by name; runtime.list still lists every other file, and FIFOs or directories named *.runtime are reported', async () => {
    const c = await RpcClient.connect(d.socket);
    try {
      await c.call('instance.start', { instance: sampleSpec('good1') });
      writeFileSync(join(d.runtimeDir, 'deep1.runtime'), `[${deepText(4600)}, [], {}, []]\n`);
      mkdirSync(join(d.runtimeDir, 'dir1.runtime'));
      assert.equal(spawnSync('mkfifo', [join(d.runtimeDir, 'fifo1.runtime')]).status, 0);
      await assert.rejects(c.call('runtime.get', { name: 'deep1' }), (e: any) => {
        assert.equal(e.data.code, 'GKD_RUNTIME_INVALID');
        assert.match(e.data.field, /^runtime\[0\]\[0\]/);
        return true;
      });
      const list = await c.call<{ files: Array<{ name: string; format?: string; error?: { code: string } }> }>('runtime.list', {});
      const by = new Map(list.files.map((f) => [f.name, f]));
      assert.equal(by.get('good1')?.format, '2.16');
      assert.equal(by.get('deep1')?.error?.code, 'GKD_RUNTIME_INVALID');
      assert.equal(by.get('dir1')?.error?.code, 'GKD_RUNTIME_IO');
      assert.equal(by.get('fifo1')?.error?.code, 'GKD_RUNTIME_IO');
    } finally {
      await c.close();
    }
    await assertAlive();
  });
});

describe('a promise rejection nothing handles (real daemon)', function () {
  this.timeout(60_000);

  it('is logged as an error and the daemon keeps serving, on open connections too', async () => {
    // Artificial on purpose: no request is known to cause one; a preloaded helper rejects on SIGUSR2.
    const preload = join(__dirname, '..', '..', 'helpers', 'reject-on-signal.js');
    const d = await spawnDaemon({ env: { NODE_OPTIONS: `--require ${preload}` } });
    const c = await RpcClient.connect(d.socket);
    try {
      d.child.kill('SIGUSR2');
      const logged = (): Record<string, any> | undefined =>
        d.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((l) => l.msg === 'unhandled promise rejection');
      for (let i = 0; i < 200 && logged() === undefined && d.child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      const line = logged();
      assert.ok(line, `no log line for the rejection; daemon exit code ${d.child.exitCode}: ${d.log().slice(-2000)}`);
      assert.equal(line.level, 50, 'logged at level error');
      assert.match(line.err.message, /a rejection nothing handles/);
      const r = await c.call<{ methods: unknown[] }>('rpc.discover');
      assert.ok(r.methods.length > 0, 'the connection open across the rejection is still served');
      await assertDaemonAlive(d);
    } finally {
      await c.close();
      await d.stop();
    }
  });
});

describe('privilege: what a caller may make the daemon run or open (real daemon)', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let c: RpcClient;
  let marker: string;
  let script: string;

  before(async () => {
    // The node's own config file may list other binaries: pin the allow-list this test is about.
    d = await spawnDaemon({ env: { GKD_QEMU_BINARIES: '/usr/bin/qemu-system-x86_64' } });
    c = await RpcClient.connect(d.socket);
    marker = join(d.dir, 'ran-as-daemon');
    script = join(d.dir, 'not-qemu.sh');
    writeFileSync(script, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
  });
  after(async () => {
    await c?.close();
    await d?.stop();
  });

  it('instance.plan never runs a kvm_path outside qemuBinaries, refusing it by field', async () => {
    const spec = { ...sampleSpec(), hvparams: { kvm_path: script } };
    await assert.rejects(c.call('instance.plan', { instance: spec }), (e: any) => {
      assert.equal(e.data.code, 'GKD_UNSUPPORTED_VALUE');
      assert.equal(e.data.field, 'hvparams.kvm_path');
      return true;
    });
    await assert.rejects(c.call('instance.start', { instance: spec }), (e: any) => e.data.field === 'hvparams.kvm_path');
    assert.equal(existsSync(marker), false, 'the binary was executed');
    assert.equal(existsSync(join(d.runtimeDir, 'inst1.example.com.runtime')), false);
  });

  it('distinct and overlong kvm_paths are refused by field, not run, cached or answered GKD_INTERNAL', async () => {
    for (let i = 0; i < 50; i++) {
      const kvm_path = `/usr/bin/qemu-${i}-${'x'.repeat(i === 0 ? 5000 : 10)}`;
      await assert.rejects(c.call('instance.plan', { instance: { ...sampleSpec(), hvparams: { kvm_path } } }), (e: any) =>
        e.data?.code === 'GKD_UNSUPPORTED_VALUE' && e.data.field === 'hvparams.kvm_path' && e.message.length < 1000);
    }
  });

  it('maps Ganeti\'s default kvm_path /usr/bin/kvm onto the configured binary', async () => {
    const plan = await c.call<{ argv: string[]; runtime: unknown[][] }>('instance.plan', { instance: { ...sampleSpec(), hvparams: { kvm_path: '/usr/bin/kvm' } } });
    assert.equal(plan.argv[0], '/usr/bin/qemu-system-x86_64');
    assert.equal(plan.runtime[0][0], '/usr/bin/kvm', 'the runtime keeps the instance\'s kvm_path');
  });

  for (const [what, path, message] of [
    ['a host file', '/etc/hostname', /storage roots/],
    ['a relative path', '../../../etc/hostname', /absolute/],
    ['a NUL byte', '/var/run/ganeti/instance-disks/inst1:0\u0000x', /NUL/],
  ] as const) {
    it(`disk.add and instance.plan refuse ${what} as a disk path, naming the field`, async () => {
      await assert.rejects(c.call('disk.add', { name: 'inst1.example.com', disk: { uuid: '2e7c85f6-b6e5-4243-b27d-680b78c6d205', path } }), (e: any) => {
        assert.equal(e.code, -32602, e.message);
        assert.equal(e.data.errors[0].path, '/disk/path');
        return true;
      });
      const spec = sampleSpec() as { disks: Array<Record<string, unknown>> };
      spec.disks[1].path = path;
      await assert.rejects(c.call('instance.plan', { instance: spec }), (e: any) => {
        assert.equal(e.code, -32602, e.message);
        assert.equal(e.data.errors[0].path, '/instance/disks/1/path');
        assert.match(e.data.errors[0].message, message);
        return true;
      });
    });
  }

  it('instance.verify refuses a repair spec whose disk is a host file, before touching QEMU', async () => {
    const disk = { uuid: '2e7c85f6-b6e5-4243-b27d-680b78c6d205', path: '/etc/hostname' };
    await assert.rejects(c.call('instance.verify', { name: 'inst1.example.com', repair: { known: { disks: [disk] } } }), (e: any) =>
      e.code === -32602 && e.data.errors[0].path === '/repair/known/disks/0/path');
  });

  it('migration.accept refuses an incoming runtime whose disk is a host file, naming the runtime field', async () => {
    const plan = await c.call<{ runtime: any[] }>('instance.plan', { instance: sampleSpec() });
    const runtime = plan.runtime;
    runtime[3][0][1] = '/etc/hostname';
    await assert.rejects(c.call('migration.accept', { name: 'inst1.example.com', runtime, incoming: 'defer' }), (e: any) => {
      assert.equal(e.data.code, 'GKD_MIGRATION_REFUSED');
      assert.equal(e.data.field, 'runtime[3][0][1]');
      return true;
    });
    assert.equal(existsSync(join(d.runtimeDir, 'inst1.example.com.runtime')), false);
  });

  for (const k of ['kernel_path', 'initrd_path'] as const) {
    it(`instance.plan and instance.start refuse hvparams.${k} outside kernelRoots with -32602 naming it, and plan one under them`, async () => {
      const hv = (sampleSpec() as { hvparams: Record<string, unknown> }).hvparams;
      // Under the default kernel root /boot/; the file need not exist for planning.
      const inside = { ...hv, kernel_path: '/boot/vmlinuz-gkd-test', initrd_path: '/boot/initrd-gkd-test' };
      for (const method of ['instance.plan', 'instance.start']) {
        await assert.rejects(c.call(method, { instance: { ...sampleSpec(), hvparams: { ...inside, [k]: '/etc/hostname' } } }), (e: any) => {
          assert.equal(e.code, -32602, e.message);
          assert.equal(e.data.errors[0].path, `/instance/hvparams/${k}`);
          assert.match(e.data.errors[0].message, /must lie under one of the kernel roots "\/boot\/"/);
          return true;
        });
      }
      assert.equal(existsSync(join(d.runtimeDir, 'inst1.example.com.runtime')), false, 'instance.start wrote a runtime file');
      const plan = await c.call<{ argv: string[] }>('instance.plan', { instance: { ...sampleSpec(), hvparams: inside } });
      assert.ok(plan.argv.includes(inside[k]));
    });
  }

  for (const option of ['-kernel', '--kernel', '-initrd']) {
    it(`migration.accept refuses an incoming kvm_cmd whose ${option} lies outside kernelRoots, naming its place`, async () => {
      const plan = await c.call<{ runtime: any[] }>('instance.plan', { instance: sampleSpec() });
      const runtime = plan.runtime;
      const at = runtime[0].length + 1;
      runtime[0].push(option, '/etc/hostname');
      await assert.rejects(c.call('migration.accept', { name: 'inst1.example.com', runtime, incoming: 'defer' }), (e: any) => {
        assert.equal(e.data.code, 'GKD_MIGRATION_REFUSED');
        assert.equal(e.data.field, `runtime[0][${at}]`);
        assert.match(e.message, /kernel roots/);
        return true;
      });
      assert.equal(existsSync(join(d.runtimeDir, 'inst1.example.com.runtime')), false);
    });
  }

  // kvm_extra options naming host files or programs: each in kvm_extra (instance.start) and in an incoming kvm_cmd (migration.accept).
  const hostileExtra: Array<[string[], RegExp]> = [
    [['-drive', 'file=/etc/shadow,if=none,id=x'], /file= "\/etc\/shadow" must lie under one of the storage roots/],
    [['-chardev', 'file,id=x,path=/etc/x'], /path= "\/etc\/x" must lie under one of the storage roots/],
    [['-netdev', 'tap,id=n,script=/tmp/x'], /script= makes QEMU run that program as root/],
    [['-incoming', 'exec:true'], /exec: makes QEMU run a command/],
  ];
  for (const [args, message] of hostileExtra) {
    const extra = args.join(' ');
    it(`instance.start refuses kvm_extra "${extra}" with -32602 naming /instance/hvparams/kvm_extra, writing nothing`, async () => {
      const spec = sampleSpec() as { hvparams: Record<string, unknown> };
      spec.hvparams = { ...spec.hvparams, kvm_extra: `-device virtio-rng-pci,id=rng0 ${extra}` };
      await assert.rejects(c.call('instance.start', { instance: spec }), (e: any) => {
        assert.equal(e.code, -32602, e.message);
        assert.equal(e.data.errors[0].path, '/instance/hvparams/kvm_extra');
        assert.match(e.data.errors[0].message, message);
        assert.ok(e.data.errors[0].message.includes(args[0]), e.data.errors[0].message);
        return true;
      });
      assert.deepEqual(existsSync(d.runtimeDir) ? readdirSync(d.runtimeDir) : [], [], 'instance.start wrote into the runtime dir');
      // Planning stays side-effect free and answers as before (Ganeti's hooks ask it about Ganeti's own kvm_extra).
      await c.call('instance.plan', { instance: spec });
    });

    it(`migration.accept refuses an incoming kvm_cmd with "${extra}", naming its index, writing nothing`, async () => {
      const plan = await c.call<{ runtime: any[] }>('instance.plan', { instance: sampleSpec() });
      const runtime = plan.runtime;
      const at = runtime[0].length + 1;
      runtime[0].push(...args);
      await assert.rejects(c.call('migration.accept', { name: 'inst1.example.com', runtime, incoming: 'defer' }), (e: any) => {
        assert.equal(e.data.code, 'GKD_MIGRATION_REFUSED');
        assert.equal(e.data.field, `runtime[0][${at}]`);
        assert.match(e.message, message);
        return true;
      });
      assert.deepEqual(existsSync(d.runtimeDir) ? readdirSync(d.runtimeDir) : [], [], 'migration.accept wrote into the runtime dir');
    });
  }

  it('migration.accept takes its own planned kvm_cmd, a socket under the run dir included', async () => {
    // Without disks: the sample's disk paths do not exist here, which accept checks as well.
    const plan = await c.call<{ runtime: any[] }>('instance.plan', { instance: { ...sampleSpec(), disks: [] } });
    plan.runtime[0].push('-chardev', `socket,id=qga0,path=${join(d.dir, 'run', 'ctrl', 'inst1.qga')},server=on,wait=off`);
    const r = await c.call<{ argv: string[] }>('migration.accept', { name: 'inst1.example.com', runtime: plan.runtime, incoming: 'defer' });
    assert.ok(r.argv.includes('-incoming'));
    await c.call('instance.cleanup', { name: 'inst1.example.com' });
  });

  it('migration.start refuses an exec: URI with -32602 naming /uri, running nothing', async () => {
    await assert.rejects(c.call('migration.start', { name: 'inst1.example.com', uri: `exec:touch ${marker}` }), (e: any) =>
      e.code === -32602 && e.data.errors[0].path === '/uri');
    assert.equal(existsSync(marker), false);
  });

  it('in launch mode, a refused kvm_extra starts no QEMU: the file it names is never created', async () => {
    const l = await spawnDaemon({ args: ['--launch', '--accel', 'tcg'], env: { GKD_QEMU_BINARIES: '/usr/bin/qemu-system-x86_64' } });
    const cl = await RpcClient.connect(l.socket);
    try {
      const target = join(l.dir, 'written-by-qemu');
      const spec = { name: 'hostile1', beparams: { maxmem: 64 }, disks: [], nics: [], hvparams: { kvm_extra: `-chardev file,id=x,path=${target} -device isa-serial,chardev=x` } };
      await assert.rejects(cl.call('instance.start', { instance: spec }), (e: any) => e.code === -32602 && e.data.errors[0].path === '/instance/hvparams/kvm_extra');
      assert.equal(existsSync(target), false, 'QEMU was started and created the file');
      assert.equal(existsSync(join(l.runtimeDir, 'hostile1.runtime')), false);
      // The same file under a storage root starts.
      const inside = join(l.dir, 'storage', 'console.log');
      mkdirSync(join(l.dir, 'storage'));
      const l2 = await spawnDaemon({ args: ['--launch', '--accel', 'tcg'], env: { GKD_QEMU_BINARIES: '/usr/bin/qemu-system-x86_64', GKD_STORAGE_ROOTS: `${join(l.dir, 'storage')}:/dev/` } });
      const cl2 = await RpcClient.connect(l2.socket);
      try {
        const ok = { ...spec, hvparams: { kvm_extra: `-chardev file,id=x,path=${inside} -device isa-serial,chardev=x` } };
        const started = await cl2.call<{ launched: boolean }>('instance.start', { instance: ok });
        assert.equal(started.launched, true);
        assert.equal(existsSync(inside), true, 'QEMU opened the chardev file under the storage root');
      } finally {
        await cl2.close();
        await l2.stop();
      }
    } finally {
      await cl.close();
      await l.stop();
    }
  });

  it('with storage roots configured, a link in one root leading into another is accepted and one leading out is refused', async () => {
    const links = join(d.dir, 'links');
    const files = join(d.dir, 'files');
    mkdirSync(links);
    mkdirSync(files);
    writeFileSync(join(files, 'disk0'), '');
    symlinkSync(join(files, 'disk0'), join(links, 'i:0'));
    symlinkSync('/etc/hostname', join(links, 'i:1'));
    const e2 = await spawnDaemon({ env: { GKD_STORAGE_ROOTS: `${links}:${files}` } });
    const c2 = await RpcClient.connect(e2.socket);
    try {
      const spec = sampleSpec() as { disks: Array<Record<string, unknown>> };
      spec.disks[0].path = join(links, 'i:0');
      spec.disks[1].path = join(files, 'disk0');
      await c2.call('instance.plan', { instance: spec });
      spec.disks[1].path = join(links, 'i:1');
      await assert.rejects(c2.call('instance.plan', { instance: spec }), (e: any) =>
        e.code === -32602 && e.data.errors[0].path === '/instance/disks/1/path' && /symlink to "\/etc\/hostname"/.test(e.data.errors[0].message));
    } finally {
      await c2.close();
      await e2.stop();
    }
  });
});

describe('privilege: where a migration makes a root QEMU bind or connect (real daemon)', function () {
  this.timeout(120_000);
  /** In launch mode: a refused address that got through would reach a real QEMU, which binds or connects there. */
  let l: DaemonProcess;
  let c: RpcClient;
  let runDir: string;
  const small = (name: string): Record<string, unknown> => ({ name, beparams: { maxmem: 64 }, disks: [], nics: [] });
  const refusedIncoming = (why: RegExp) => (e: any): boolean => {
    assert.equal(e.data?.code, 'GKD_MIGRATION_REFUSED', e.message);
    assert.equal(e.data.field, 'incoming');
    assert.match(e.message, why);
    return true;
  };
  const refusedUri = (why: RegExp) => (e: any): boolean => {
    assert.equal(e.code, -32602, e.message);
    assert.equal(e.data.errors[0].path, '/uri');
    assert.match(e.data.errors[0].message, why);
    return true;
  };

  before(async () => {
    // The runtime dir inside the run dir, as Ganeti lays them out: a socket there would replace a runtime file.
    const dir = tempDir();
    l = await spawnDaemon({ dir, runtimeDir: join(dir, 'run', 'conf'), args: ['--launch', '--accel', 'tcg'], env: { GKD_QEMU_BINARIES: '/usr/bin/qemu-system-x86_64' } });
    c = await RpcClient.connect(l.socket);
    runDir = join(l.dir, 'run');
    mkdirSync(runDir, { recursive: true });
  });
  after(async () => {
    await c?.close();
    // Stopping the daemon stops the QEMUs it launched.
    await l?.stop();
  });

  /** Nothing written or started for `name`: no runtime file, no pid file of a QEMU. */
  const assertNothingFor = (name: string): void => {
    assert.equal(existsSync(join(l.runtimeDir, `${name}.runtime`)), false, 'a runtime file was written');
    assert.equal(existsSync(join(runDir, 'pid', name)), false, 'a QEMU was started');
  };

  it('migration.accept refuses unix:/etc/passwd naming incoming, writing nothing (without launch mode)', async () => {
    // Without launch mode: were the check missing, the argv would only be built, never run against /etc/passwd.
    const d = await spawnDaemon({ env: { GKD_QEMU_BINARIES: '/usr/bin/qemu-system-x86_64' } });
    const cd = await RpcClient.connect(d.socket);
    try {
      const { runtime } = await cd.call<{ runtime: unknown }>('instance.plan', { instance: small('mig0') });
      await assert.rejects(cd.call('migration.accept', { name: 'mig0', runtime, incoming: 'unix:/etc/passwd' }), refusedIncoming(/"\/etc\/passwd" must lie under one of the run dir/));
      assert.equal(existsSync(join(d.runtimeDir, 'mig0.runtime')), false);
      assert.ok(existsSync('/etc/passwd'));
    } finally {
      await cd.close();
      await d.stop();
    }
  });

  it('migration.accept (launch mode) refuses a unix: address in the runtime dir, relative, outside the run dir, through a symlink out, or naming a file: nothing started, each file still there', async () => {
    const { runtime } = await c.call<{ runtime: unknown }>('instance.plan', { instance: small('mig1') });
    mkdirSync(l.runtimeDir, { recursive: true });
    const victimRuntime = join(l.runtimeDir, 'x.runtime');
    writeFileSync(victimRuntime, 'kept');
    const outsideDir = join(l.dir, 'outside');
    mkdirSync(outsideDir);
    const outsideFile = join(outsideDir, 'victim');
    writeFileSync(outsideFile, 'kept');
    symlinkSync(outsideDir, join(runDir, 'escape'));
    const inRunDir = join(runDir, 'not-a-socket');
    writeFileSync(inRunDir, 'kept');
    const cases: Array<[string, RegExp]> = [
      [`unix:${victimRuntime}`, /must not lie in ".*\/run\/conf"/],
      ['unix:mig1.sock', /must be an absolute path/],
      [`unix:${outsideFile}`, /must lie under one of the run dir/],
      [`unix:${join(runDir, 'escape', 'victim')}`, /leads through a symlink to ".*\/outside\/victim"/],
      [`unix:${inRunDir}`, /names an existing file, which QEMU would delete/],
    ];
    for (const [incoming, why] of cases) {
      await assert.rejects(c.call('migration.accept', { name: 'mig1', runtime, incoming }), refusedIncoming(why), incoming);
      assertNothingFor('mig1');
    }
    for (const f of [victimRuntime, outsideFile, inRunDir]) assert.equal(readFileSync(f, 'utf8'), 'kept', f);
    assert.equal(existsSync(join(process.cwd(), 'mig1.sock')), false, 'QEMU bound a relative path');
    // The same instance accepted at a socket under the run dir: QEMU starts and listens there.
    const r = await c.call<{ launched: boolean }>('migration.accept', { name: 'mig1', runtime, incoming: `unix:${join(runDir, 'mig1.sock')}` });
    assert.equal(r.launched, true);
    assert.ok(lstatSync(join(runDir, 'mig1.sock')).isSocket());
  });

  it('a monitor outside the control dirs (where migration.start could pour a stream into it) is refused in kvm_extra and in an incoming kvm_cmd', async () => {
    const monitor = ['-chardev', `socket,id=m,path=${join(runDir, 'mon.sock')},server=on,wait=off`, '-mon', 'chardev=m,mode=control'];
    const spec = { ...small('mon1'), hvparams: { kvm_extra: monitor.join(' ') } };
    await assert.rejects(c.call('instance.start', { instance: spec }), (e: any) => {
      assert.equal(e.code, -32602, e.message);
      assert.equal(e.data.errors[0].path, '/instance/hvparams/kvm_extra');
      assert.match(e.data.errors[0].message, /control socket dirs/);
      return true;
    });
    assertNothingFor('mon1');
    const { runtime } = await c.call<{ runtime: any[] }>('instance.plan', { instance: small('mon1') });
    const at = runtime[0].length + 1;
    runtime[0].push(...monitor);
    await assert.rejects(c.call('migration.accept', { name: 'mon1', runtime, incoming: `unix:${join(runDir, 'mon1-mig.sock')}` }), (e: any) => {
      assert.equal(e.data?.code, 'GKD_MIGRATION_REFUSED', e.message);
      assert.equal(e.data.field, `runtime[0][${at}]`);
      assert.match(e.message, /control socket dirs/);
      return true;
    });
    assertNothingFor('mon1');
    assert.equal(existsSync(join(runDir, 'mon.sock')), false, 'QEMU served the monitor');
  });

  it('migration.start refuses a unix: uri to another instance\'s QMP socket or outside the run dir naming /uri; neither socket hears from QEMU', async () => {
    await c.call('instance.start', { instance: small('src1') });
    await c.call('instance.start', { instance: small('other1') });
    const otherQmp = join(runDir, 'ctrl', 'other1.qmp');
    assert.ok(lstatSync(otherQmp).isSocket(), 'the other instance serves its QMP socket');
    // A listener of the test's own outside the run dir: any connection to it is QEMU's stream.
    const outside = join(l.dir, 'outside.sock');
    let connections = 0;
    const server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => server.listen(outside, resolve));
    try {
      await assert.rejects(c.call('migration.start', { name: 'src1', uri: `unix:${otherQmp}` }), refusedUri(/is an instance's QMP socket/));
      await assert.rejects(c.call('migration.start', { name: 'src1', uri: `unix:${outside}` }), refusedUri(/must lie under one of the run dir/));
      await assert.rejects(c.call('migration.start', { name: 'src1', uri: `unix:${join(runDir, 'ctrl', 'other1.serial')}` }), refusedUri(/monitor and serial sockets/));
      await assert.rejects(c.call('migration.start', { name: 'src1', uri: 'file:/tmp/gkd-migration-dump' }), refusedUri(/must be "tcp:HOST:PORT" or "unix:\/PATH"/));
      assert.equal(connections, 0, 'QEMU connected to the socket outside the run dir');
      assert.equal(existsSync('/tmp/gkd-migration-dump'), false);
      // Both instances as they were: the source did not migrate, the other's QMP still answers.
      for (const name of ['src1', 'other1']) {
        const v = await c.call<{ clean: boolean }>('instance.verify', { name });
        assert.equal(v.clean, true, name);
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
