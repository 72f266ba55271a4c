import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { accessSync, chmodSync, chownSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { RpcClient } from '../../../plugin/rpc';
import { GANETI_ADD_ENV, GANETI_ENV } from './ganeti-env';
import { ROOT, sampleSpec, spawnDaemon, tempDir, type DaemonProcess } from './daemon-process';

/** Ganeti's hook script naming rule (a ".sh" suffix is skipped). */
const HOOK_NAME_RE = /^[a-zA-Z0-9_-]+$/;
const GANETI_PATH = '/sbin:/bin:/usr/sbin:/usr/bin';

function runInstall(env: Record<string, string>, args: string[], prefix: string[] = []): { status: number | null; out: string } {
  const [cmd, ...rest] = [...prefix, join(ROOT, 'install.sh'), ...args] as [string, ...string[]];
  const r = spawnSync(cmd, rest, { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

function install(env: Record<string, string>, args: string[]): string {
  const r = runInstall(env, args);
  assert.equal(r.status, 0, `install.sh ${args.join(' ')} failed: ${r.out}`);
  return r.out;
}

/** Every file under `dir`, relative. */
function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const n of readdirSync(join(dir, rel))) {
    const p = join(rel, n);
    if (statSync(join(dir, p)).isDirectory()) out.push(...walk(dir, p));
    else out.push(p);
  }
  return out;
}

function uuid(i: number): string {
  return `${String(i).padStart(8, '0')}-1111-4222-8333-444455556666`;
}

describe('Ganeti hooks and install.sh', function () {
  this.timeout(180_000);
  let d: DaemonProcess;
  let tmp: string;
  let hooksDir: string;
  let configFile: string;

  const setConfig = (extra: Record<string, unknown> = {}): void =>
    writeFileSync(configFile, JSON.stringify({ socket: d.socket, runtimeDir: d.runtimeDir, logLevel: 'silent', ...extra }));

  /** The hook environment Ganeti gives hook `name`: PATH plus GANETI_*. */
  function hookEnv(name: string, env: Record<string, string | undefined>): Record<string, string> {
    const [hpath, phase] = [name.replace(/-(pre|post)$/, ''), name.endsWith('-pre') ? 'pre' : 'post'];
    const full: Record<string, string> = { PATH: GANETI_PATH };
    for (const [k, v] of Object.entries({ ...GANETI_ENV, GANETI_HOOKS_PATH: hpath, GANETI_HOOKS_PHASE: phase, ...env })) {
      if (v !== undefined) full[k] = v;
    }
    for (const k of Object.keys(full)) assert.ok(k === 'PATH' || k.startsWith('GANETI_'));
    return full;
  }

  /**
   * Runs hook `name` as Ganeti does (env reset to PATH + GANETI_*, cwd /, stdin /dev/null) one way:
   * the installed script (curl to the daemon's hook endpoint), or the old `kvm-devices hook NAME`.
   */
  function runHookVia(via: 'script' | 'cli', name: string, env: Record<string, string | undefined> = {}, path = GANETI_PATH): { status: number | null; out: string } {
    const [cmd, args] = via === 'script' ? [join(hooksDir, `${name}.d`, 'kvm-devices'), []] : [join(tmp, 'usr', 'bin', 'kvm-devices'), ['hook', name]];
    const r = spawnSync(cmd, args, { env: { ...hookEnv(name, env), PATH: path }, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  /** Runs a hook without side effects both ways: they must say and exit the same. */
  function runHook(name: string, env: Record<string, string | undefined> = {}): { status: number | null; out: string } {
    const script = runHookVia('script', name, env);
    const cli = runHookVia('cli', name, env);
    assert.deepEqual(script, cli, `${name}: the script and kvm-devices hook disagree`);
    return script;
  }

  before(async () => {
    tmp = tempDir('gkd-inst-');
    d = await spawnDaemon();
    hooksDir = join(tmp, 'hooks');
    install({ PREFIX: join(tmp, 'usr'), SYSCONFDIR: join(tmp, 'etc'), DESTDIR: '' }, ['--hooks', hooksDir, '--no-systemd']);
    mkdirSync(join(tmp, 'etc', 'ganeti-kvm-devices'), { recursive: true });
    configFile = join(tmp, 'etc', 'ganeti-kvm-devices', 'config.json');
    setConfig();
  });
  after(async () => {
    await d?.stop();
  });

  it('installs the hooks as <hpath>-<phase>.d/<name>, executable, with names Ganeti runs', () => {
    const files = walk(hooksDir);
    assert.deepEqual(files.map((f) => f.split('/')[0]).sort(), readdirSync(join(ROOT, 'hooks')).map((h) => `${h}.d`).sort());
    for (const f of files) {
      const [dir, name] = f.split('/');
      assert.match(dir ?? '', /^[a-z]+(-[a-z]+)*-(pre|post)\.d$/);
      assert.match(name ?? '', HOOK_NAME_RE);
      accessSync(join(hooksDir, f), constants.X_OK);
      assert.ok(!readFileSync(join(hooksDir, f), 'utf8').includes('@KVM_DEVICES@'), 'command path pinned');
    }
  });

  it('install.sh --help prints its usage and nothing of the script itself', () => {
    const r = runInstall({}, ['--help']);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /--hooks/);
    assert.match(r.out, /--uninstall/);
    assert.doesNotMatch(r.out, /set -eu|^#!/m, r.out);
  });

  it('the installed kvm-devices prints its version', () => {
    const r = spawnSync(join(tmp, 'usr', 'bin', 'kvm-devices'), ['--version'], { encoding: 'utf8', env: { PATH: GANETI_PATH } });
    assert.equal(r.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('instance-start-pre and instance-add-pre pass an instance that fits', () => {
    for (const h of ['instance-start-pre', 'instance-add-pre']) {
      const r = runHook(h);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /ok: inst1\.example\.com: 2 disk\(s\) and 1 NIC\(s\) fit/);
    }
  });

  it('instance-add-pre passes a gnt-instance add with disks (Ganeti exports DISK<n>_UUID empty at add time)', () => {
    const r = runHook('instance-add-pre', GANETI_ADD_ENV);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /ok: inst1\.example\.com: 2 disk\(s\) and 1 NIC\(s\) fit/);
    // instance-start needs the real UUIDs; without them it cannot judge, says so and lets Ganeti start.
    const start = runHook('instance-start-pre', { GANETI_INSTANCE_DISK0_UUID: '' });
    assert.equal(start.status, 0, start.out);
    assert.match(start.out, /GANETI_INSTANCE_DISK0_UUID is not set \(this pre hook only refuses what QEMU would refuse: passing\)/);
  });

  /** The hook environment of `n` scsi-hd disks on an lsi controller. */
  const lsiDisks = (n: number): Record<string, string> => {
    const env: Record<string, string> = { GANETI_INSTANCE_HV_scsi_controller_type: 'lsi', GANETI_INSTANCE_DISK_COUNT: String(n) };
    for (let i = 0; i < n; i++) {
      env[`GANETI_INSTANCE_DISK${i}_UUID`] = uuid(i);
      env[`GANETI_INSTANCE_DISK${i}_SIZE`] = '1024';
      env[`GANETI_INSTANCE_DISK${i}_MODE`] = 'rw';
    }
    return env;
  };

  it('8 SCSI disks on lsi (QEMU starts them, the guest sees 7): a new instance is refused, an existing one starts with a warning', () => {
    const add = runHook('instance-add-pre', lsiDisks(8));
    assert.equal(add.status, 1, add.out);
    assert.match(add.out, /refused: .*lsi.*7 usable targets.*GKD_CAPACITY/);
    const start = runHook('instance-start-pre', lsiDisks(8));
    assert.equal(start.status, 0, start.out);
    assert.match(start.out, /ok: inst1\.example\.com: WARNING: Cannot place 8 SCSI disks on "lsi".*the start goes ahead/);
  });

  it('a kvm_path the daemon does not run (not in qemuBinaries) is reported, and Ganeti still starts the instance', () => {
    const start = runHook('instance-start-pre', { GANETI_INSTANCE_HV_kvm_path: '/opt/other/qemu-system-x86_64' });
    assert.equal(start.status, 0, start.out);
    assert.match(start.out, /ok: inst1\.example\.com: WARNING: Cannot use hvparams\.kvm_path .*qemuBinaries.*the start goes ahead/);
  });

  it('9 SCSI disks on lsi (QEMU refuses scsi-id 8) are refused at start too', () => {
    const r = runHook('instance-start-pre', lsiDisks(9));
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /refused: .*lsi.*GKD_CAPACITY/);
  });

  it('instance-modify-pre passes the new NIC set when it fits and refuses 9 NICs', () => {
    const two = { GANETI_INSTANCE_NIC_COUNT: '2', GANETI_INSTANCE_NIC1_UUID: uuid(1), GANETI_INSTANCE_NIC1_MAC: 'aa:00:00:00:00:01', GANETI_INSTANCE_NIC1_MODE: 'bridged', GANETI_INSTANCE_NIC1_LINK: 'br1' };
    const ok = runHook('instance-modify-pre', two);
    assert.equal(ok.status, 0, ok.out);
    assert.match(ok.out, /2 NIC\(s\) fit\n/);
    const isa = runHook('instance-modify-pre', { GANETI_INSTANCE_HV_nic_type: 'ne2k_isa' });
    assert.equal(isa.status, 0, isa.out);
    assert.match(isa.out, /not hot-pluggable, applies at the next restart: nic-003fc157-66a8-4e6d \(ne2k_isa\)/);
    const nine: Record<string, string> = { GANETI_INSTANCE_NIC_COUNT: '9' };
    for (let i = 0; i < 9; i++) {
      nine[`GANETI_INSTANCE_NIC${i}_UUID`] = uuid(i);
      nine[`GANETI_INSTANCE_NIC${i}_MAC`] = `aa:00:00:00:00:0${i}`;
    }
    const r = runHook('instance-modify-pre', nine);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /refused: /);
  });

  it('instance-modify-pre refuses only NIC problems: another refused setting is a note, exit 0', () => {
    const cdrom = { GANETI_INSTANCE_HV_cdrom_image_path: '/srv/iso/install.iso' };
    const ok = runHook('instance-modify-pre', cdrom);
    assert.equal(ok.status, 0, ok.out);
    assert.match(ok.out, /ok: inst1\.example\.com: 1 NIC\(s\) fit; not about the NICs, refused at the next start: .*cdrom_image_path/);
    // The NICs are still checked behind the unrelated problem.
    const badMac = runHook('instance-modify-pre', { ...cdrom, GANETI_INSTANCE_NIC0_MAC: 'not-a-mac' });
    assert.equal(badMac.status, 1, badMac.out);
    assert.match(badMac.out, /refused: .*nics/);
    const badDisk = runHook('instance-modify-pre', { GANETI_INSTANCE_DISK1_UUID: 'NOT-A-UUID' });
    assert.equal(badDisk.status, 0, badDisk.out);
    assert.match(badDisk.out, /1 NIC\(s\) fit; not about the NICs/);
  });

  it('instance-migrate-pre / instance-failover-pre check the runtime file against the node format', async () => {
    assert.match(runHook('instance-migrate-pre').out, /no runtime file on this node/);
    const c = await RpcClient.connect(d.socket);
    await c.call('instance.start', { instance: sampleSpec() });
    await c.close();
    for (const h of ['instance-migrate-pre', 'instance-failover-pre']) {
      const r = runHook(h);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /runtime format 2\.16 is readable as 2\.16/);
    }
    // A node still on Ganeti 2.10 cannot express the SCSI disks.
    setConfig({ ganetiFormat: '2.10' });
    try {
      const r = runHook('instance-migrate-pre');
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, /refused: .*disk-9e7c85f6-b6e5-4243.*GKD_RUNTIME_LOSSY/);
      const v = runHook('cluster-verify-post');
      assert.equal(v.status, 1, v.out);
      assert.match(v.out, /1 of 1 runtime file\(s\).*not in format 2\.10[\s\S]*inst1\.example\.com: format 2\.16/);
    } finally {
      setConfig();
    }
    assert.equal(runHook('cluster-verify-post').status, 0);
  });

  it('instance-stop-post and instance-remove-post clean up, idempotently (script, then the CLI)', async () => {
    for (const via of ['script', 'cli'] as const) {
      const c = await RpcClient.connect(d.socket);
      await c.call('instance.start', { instance: sampleSpec() }).catch(() => undefined);
      await c.close();
      const stop = runHookVia(via, 'instance-stop-post');
      assert.equal(stop.status, 0, stop.out);
      assert.match(stop.out, /runtime file removed/);
      const remove = runHookVia(via, 'instance-remove-post');
      assert.equal(remove.status, 0, remove.out);
      assert.match(remove.out, /no runtime file on this node/);
    }
  });

  it('skips instances of other hypervisors', () => {
    const r = runHook('instance-start-pre', { GANETI_INSTANCE_HYPERVISOR: 'xen-pvm' });
    assert.equal(r.status, 0);
    assert.match(r.out, /nothing to check/);
  });

  it('with the daemon unreachable, add/modify/migrate pre hooks fail closed, start and post hooks pass', () => {
    setConfig({ socket: join(tmp, 'nobody-here.sock') });
    try {
      for (const h of ['instance-add-pre', 'instance-modify-pre', 'instance-migrate-pre', 'instance-failover-pre']) {
        const pre = runHook(h);
        assert.equal(pre.status, 1, `${h}: ${pre.out}`);
        assert.match(pre.out, /daemon unreachable.*failing closed/);
      }
      for (const h of ['instance-start-pre', 'instance-reboot-pre']) {
        const pre = runHook(h, { GANETI_REBOOT_TYPE: 'full' });
        assert.equal(pre.status, 0, `${h}: ${pre.out}`);
        assert.match(pre.out, /daemon unreachable.*passing/);
      }
      const post = runHook('instance-stop-post');
      assert.equal(post.status, 0);
      assert.match(post.out, /daemon unreachable.*failing open/);
    } finally {
      setConfig();
    }
  });

  it('without curl on PATH the script runs kvm-devices hook, with the same verdict', () => {
    // A PATH with what the script and the installed command use, curl left out.
    const bin = join(tmp, 'no-curl-bin');
    mkdirSync(bin);
    for (const c of ['sh', 'env', 'grep', 'sed', 'cat', 'id', 'dirname', 'readlink']) {
      const where = spawnSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' }).stdout.trim();
      symlinkSync(where, join(bin, c));
    }
    const served = (): number => d.log().split('\n').filter((l) => l.includes('"msg":"hook"')).length;
    const before = served();
    const r = runHookVia('script', 'instance-add-pre', lsiDisks(9), bin);
    assert.deepEqual(r, runHookVia('cli', 'instance-add-pre', lsiDisks(9)));
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /refused: .*GKD_CAPACITY/);
    assert.equal(served(), before, 'the hook endpoint was not used');
    assert.ok(served() > 0, 'the endpoint served the earlier script runs');
  });

  it('a call the daemon cannot finish within hookTimeoutMs: the same refusal both ways (QEMU socket that never greets)', async () => {
    const c = await RpcClient.connect(d.socket);
    await c.call('instance.start', { instance: sampleSpec() }).catch(() => undefined);
    await c.close();
    // A QMP socket that accepts and never says a word: instance.verify waits (QMP's own budget is 5 s).
    mkdirSync(join(d.dir, 'run', 'ctrl'), { recursive: true });
    const mute = createServer(() => undefined);
    await new Promise<void>((resolve) => mute.listen(join(d.dir, 'run', 'ctrl', 'inst1.example.com.qmp'), resolve));
    setConfig({ hookTimeoutMs: 700 });
    try {
      for (const via of ['script', 'cli'] as const) {
        const r = runHookVia(via, 'instance-migrate-pre');
        assert.equal(r.status, 1, `${via}: ${r.out}`);
        assert.match(r.out, /refused: Cannot get an answer from the daemon: no reply to "instance\.verify" within 700 ms \(pre hook: failing closed\)/, via);
      }
    } finally {
      setConfig();
      await new Promise((r) => mute.close(r));
    }
  });

  it('a stopped daemon (SIGSTOP): pre hooks that guard fail closed, start and post hooks pass, both ways', () => {
    setConfig({ hookTimeoutMs: 700 });
    d.child.kill('SIGSTOP');
    try {
      const add = runHookVia('script', 'instance-add-pre');
      assert.equal(add.status, 1, add.out);
      assert.match(add.out, /refused: Cannot get an answer from the daemon: no answer to hook "instance-add-pre" within 5700 ms \(pre hook: failing closed\)/);
      const addCli = runHookVia('cli', 'instance-add-pre');
      assert.equal(addCli.status, 1, addCli.out);
      assert.match(addCli.out, /refused: daemon unreachable: .*handshake.* \(pre hook: failing closed\)/i);
      for (const via of ['script', 'cli'] as const) {
        const start = runHookVia(via, 'instance-start-pre');
        assert.equal(start.status, 0, `${via}: ${start.out}`);
        assert.match(start.out, /ok: .* \(this pre hook only refuses what QEMU would refuse: passing\)/);
        const post = runHookVia(via, 'cluster-verify-post');
        assert.equal(post.status, 0, `${via}: ${post.out}`);
        assert.match(post.out, /ok: .* \(post hook: failing open\)/);
      }
    } finally {
      d.child.kill('SIGCONT');
      setConfig();
    }
  });

  it('the hook endpoint answers a bad request with a typed error naming the field, a good one with the exit status and line of the CLI', async () => {
    const post = (path: string, body: string): Promise<{ status: number; text: string }> => new Promise((resolve, reject) => {
      const req = request({ socketPath: d.socket, path, method: 'POST' }, (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
    const bad = await post('/hook/instance-start-pre', 'GANETI_A=1\0GANETI_A=2\0');
    assert.equal(bad.status, 400);
    assert.deepEqual(JSON.parse(bad.text), { code: 'GKD_HOOK_REQUEST_INVALID', field: 'GANETI_A', httpStatus: 400, message: 'Cannot read the hook environment: GANETI_A is given twice' });
    const named = await post('/hook/instance-start-pre', 'GKD_CONFIG=/etc/shadow\0');
    assert.equal(named.status, 400);
    assert.equal(JSON.parse(named.text).field, 'GKD_CONFIG_TEXT');
    const unknown = await post('/hook/no-such-hook', '');
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.text).field, 'path');
    // The same environment through the endpoint and the CLI: the same line.
    const body = Object.entries(hookEnv('instance-start-pre', {})).map(([k, v]) => `${k}=${v}\0`).join('') +
      `GKD_CONFIG=${configFile}\0GKD_CONFIG_TEXT=${readFileSync(configFile, 'utf8')}\0`;
    const ok = await post('/hook/instance-start-pre', body);
    assert.equal(ok.status, 200);
    assert.equal(ok.text, `0\n${runHookVia('cli', 'instance-start-pre').out}`);
  });

  it('--uninstall removes everything the PREFIX install put there', () => {
    install({ PREFIX: join(tmp, 'usr'), SYSCONFDIR: join(tmp, 'etc'), DESTDIR: '' }, ['--uninstall']);
    // It created usr/ and the hooks dir, so those go too.
    assert.equal(existsSync(join(tmp, 'usr')), false);
    assert.equal(existsSync(hooksDir), false);
    assert.ok(existsSync(configFile), "the operator's config file is not ours");
  });

  it('installs into a DESTDIR (idempotently), runs from there, and --uninstall leaves nothing', () => {
    const dest = join(tmp, 'dest');
    mkdirSync(dest);
    const env = { DESTDIR: dest, PREFIX: '/usr/local' };
    install(env, ['--hooks']);
    const first = readFileSync(join(dest, 'usr/local/lib/ganeti-kvm-devices/MANIFEST'), 'utf8');
    install(env, ['--hooks']);
    assert.equal(readFileSync(join(dest, 'usr/local/lib/ganeti-kvm-devices/MANIFEST'), 'utf8'), first);
    const r = spawnSync(join(dest, 'usr/local/bin/kvm-devices'), ['--version'], { encoding: 'utf8' });
    assert.match(r.stdout, /^\d+\.\d+\.\d+/);
    const hook = readFileSync(join(dest, 'etc/ganeti/hooks/instance-start-pre.d/kvm-devices'), 'utf8');
    assert.match(hook, /^CLIENT='\/usr\/local\/lib\/ganeti-kvm-devices\/hook-client\.sh'$/m);
    const client = readFileSync(join(dest, 'usr/local/lib/ganeti-kvm-devices/hook-client.sh'), 'utf8');
    assert.match(client, /^KVM_DEVICES='\/usr\/local\/bin\/kvm-devices'$/m);
    assert.match(client, /^SYSCONFDIR='\/etc'$/m);
    const unit = readFileSync(join(dest, 'etc/systemd/system/ganeti-kvm-devices.service'), 'utf8');
    // 3: another daemon serves the socket (kvm-devices serve's own exit status); restarting cannot help.
    assert.match(unit, /^RestartPreventExitStatus=2 3$/m);
    install(env, ['--uninstall']);
    assert.deepEqual(readdirSync(dest), []);
  });

  it('a failed install still records what it installed, and --uninstall removes it', () => {
    const base = join(tmp, 'failing');
    mkdirSync(base);
    writeFileSync(join(base, 'not-a-dir'), '');
    const prefix = join(base, 'usr');
    // The hooks go last: the code and the command are in place when their directory cannot be made.
    const r = runInstall({ PREFIX: prefix, SYSCONFDIR: join(base, 'etc'), DESTDIR: '' }, ['--hooks', join(base, 'not-a-dir', 'hooks'), '--no-systemd']);
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /install failed .*--uninstall" removes it/);
    const manifest = readFileSync(join(prefix, 'lib/ganeti-kvm-devices/MANIFEST'), 'utf8');
    assert.match(manifest, /^f .*\/bin\/kvm-devices$/m);
    for (const line of manifest.split('\n').filter((l) => l.startsWith('f '))) assert.ok(existsSync(line.slice(2)), `${line} listed but absent`);
    for (const f of walk(prefix)) assert.ok(manifest.includes(`f ${join(prefix, f)}\n`), `${f} installed but not listed`);
    install({ PREFIX: prefix, SYSCONFDIR: join(base, 'etc'), DESTDIR: '' }, ['--uninstall']);
    assert.equal(existsSync(prefix), false);
  });

  it('refuses before installing anything when SYSTEMDUNITDIR cannot be written (without --no-systemd)', function () {
    const base = join(tmp, 'nounit');
    mkdirSync(base);
    writeFileSync(join(base, 'not-a-dir'), '');
    const env = { PREFIX: join(base, 'usr'), SYSCONFDIR: join(base, 'etc'), DESTDIR: '' };
    const r = runInstall({ ...env, SYSTEMDUNITDIR: join(base, 'not-a-dir', 'system') }, []);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /cannot write the systemd unit into .*not-a-dir\/system .*--no-systemd; nothing was installed/);
    assert.equal(existsSync(join(base, 'usr')), false);
    if (process.getuid?.() !== 0) return;
    // A user who may write PREFIX but not the unit directory.
    const units = join(base, 'units');
    mkdirSync(units, { mode: 0o755 });
    const mine = join(base, 'mine');
    mkdirSync(mine);
    chownSync(mine, 65534, 65534);
    chmodSync(tmp, 0o755);
    chmodSync(base, 0o755);
    const asNobody = runInstall({ PREFIX: join(mine, 'usr'), SYSCONFDIR: join(mine, 'etc'), DESTDIR: '', SYSTEMDUNITDIR: units, HOME: mine }, [],
      ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
    assert.equal(asNobody.status, 1, asNobody.out);
    assert.match(asNobody.out, /cannot write the systemd unit into .*units .*is not a writable directory/);
    assert.deepEqual(readdirSync(mine), []);
  });
});
