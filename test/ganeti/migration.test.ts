/**
 * Migration from what Ganeti started: a QEMU that Ganeti 3.0 launched (and
 * hot-plugged a disk and a NIC into, the disk passed as a descriptor) moves
 * to a target that the plugin builds from Ganeti's own runtime file. The
 * target side is a second daemon with its own runtime and run dirs, standing
 * in for another node; both QEMUs run on this machine and the stream goes
 * over a unix socket. The guest keeps running on the target, and
 * instance.verify there is clean.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { QmpClient } from '../../plugin/qmp';
import { RpcClient } from '../../plugin/rpc/client';
import { guestAppend, guestKit } from '../helpers/guest';
import {
  addInstance, call, ensureGanetiNode, ganetiRuntime, gnt, LAB_NS, removeInstance, RUNTIME_DIR, SKIP_GANETI, waitForGuestDriver,
} from './helpers/lab';

const TARGET_DIR = '/var/run/ganeti/kvm-hypervisor/gkd-target';

/** A second daemon, as the target node's, with its own dirs (the node's config file otherwise). */
async function startTargetDaemon(): Promise<{ child: ChildProcess; socket: string; stop(): Promise<void> }> {
  const socket = join(TARGET_DIR, 'rpc.sock');
  const child = spawn('/usr/local/bin/kvm-devices', ['serve', '--socket', socket, '--runtime-dir', join(TARGET_DIR, 'conf'), '--run-dir', TARGET_DIR], {
    stdio: ['ignore', 'ignore', 'inherit'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  for (let i = 0; ; i++) {
    try {
      await (await RpcClient.connect(socket, { connectTimeoutMs: 300 })).close();
      break;
    } catch (e) {
      if (i > 100 || child.exitCode !== null) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    child, socket,
    stop: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0: migrating a QEMU Ganeti started to a target built from its runtime file', function () {
  this.timeout(300_000);
  const NAME = 'gkd-mig.example.com';
  let target: Awaited<ReturnType<typeof startTargetDaemon>> | undefined;
  let targetQemu: ChildProcess | undefined;

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    await removeInstance(NAME);
    rmSync(TARGET_DIR, { recursive: true, force: true });
    for (const d of ['conf', 'pid', 'ctrl']) mkdirSync(join(TARGET_DIR, d), { recursive: true });
    const kit = guestKit();
    const r = await addInstance(NAME, {
      disks: 2, nics: 1, diskSizeMb: 4, memoryMb: 128,
      hv: { disk_type: 'scsi-hd', kernel_path: kit.kernel, initrd_path: kit.initrd, root_path: '/dev/ram0', kernel_args: guestAppend(), serial_console: 'true' },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await gnt('gnt-instance', 'start', NAME);
    await waitForGuestDriver(NAME);
    // Ganeti's own hotplug: the disk arrives in QEMU as /dev/fdset/N.
    await gnt('gnt-instance', 'modify', '--hotplug', '--disk', 'add:size=4M', NAME);
    await gnt('gnt-instance', 'modify', '--hotplug', '--net', 'add:mode=bridged,link=br0', NAME);
    target = await startTargetDaemon();
  });

  after(async () => {
    targetQemu?.kill('SIGKILL');
    await target?.stop();
    await removeInstance(NAME).catch(() => undefined);
    rmSync(TARGET_DIR, { recursive: true, force: true });
  });

  it('migration.accept builds the target from the runtime file Ganeti wrote; migration.start moves the running guest; verify on the target is clean', async () => {
    assert.ok(target !== undefined);
    const runtime = JSON.parse(readFileSync(join(RUNTIME_DIR, `${NAME}.runtime`), 'utf8')) as unknown[];
    const rt = ganetiRuntime(NAME);
    // On this node the NICs get taps of their own inside the lab's namespace.
    const nicBackends = Object.fromEntries(rt[1].map((n, i) => [String(n.uuid), { type: 'tap', ifname: `gkdmig${i}` }]));
    const incoming = `unix:${join(TARGET_DIR, 'incoming.sock')}`;
    const tc = await RpcClient.connect(target.socket, { callTimeoutMs: 60_000 });
    let accepted: { argv: string[]; qmp: string; warnings?: string[] };
    try {
      accepted = await tc.call('migration.accept', { name: NAME, runtime, incoming, nicBackends });
    } finally {
      await tc.close();
    }
    assert.equal(accepted.qmp, join(TARGET_DIR, 'ctrl', `${NAME}.qmp`));
    // Ganeti's machine, as Ganeti built it: no -nodefaults, its SCSI controller without an address.
    assert.ok(!accepted.argv.includes('-nodefaults'), accepted.argv.join(' '));
    assert.ok(accepted.argv.some((a) => /^lsi(53c895a)?,id=scsi$/.test(a)), accepted.argv.join(' '));

    const [cmd, ...args] = accepted.argv;
    targetQemu = spawn('ip', ['netns', 'exec', LAB_NS, cmd as string, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    targetQemu.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    for (let i = 0; ; i++) {
      try {
        await (await QmpClient.connect(accepted.qmp)).close();
        break;
      } catch (e) {
        if (i > 100 || targetQemu.exitCode !== null) throw new Error(`target QEMU did not come up: ${stderr} ${String(e)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    const result = await call<{ status: string; target?: { status?: string } }>('migration.start', {
      name: NAME, uri: incoming, targetQmp: accepted.qmp, timeoutMs: 120_000,
    });
    assert.equal(result.status, 'completed', JSON.stringify(result));

    const q = await QmpClient.connect(accepted.qmp);
    try {
      const st = (await q.execute('query-status')) as { status: string };
      assert.equal(st.status, 'running', `the guest runs on the target (status ${st.status}; migration ${JSON.stringify(result)}; target argv ${accepted.argv.join(' ')}; stderr ${stderr})`);
    } finally {
      await q.close();
    }
    const tv = await RpcClient.connect(target.socket, { callTimeoutMs: 60_000 });
    try {
      const v = await tv.call<{ clean: boolean; differences: unknown[]; notes?: string[] }>('instance.verify', { name: NAME });
      assert.deepEqual(v.differences, [], JSON.stringify(v));
      assert.equal(v.clean, true);
    } finally {
      await tv.close();
    }
    assert.equal(targetQemu.exitCode, null, `target QEMU exited: ${stderr}`);
  });
});
