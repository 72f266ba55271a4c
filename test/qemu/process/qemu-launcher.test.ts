/**
 * launchQemu() and the test helper against real QEMU.
 */

import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GkdError } from '../../../plugin/errors';
import { launchQemu } from '../../../plugin/process';
import { QEMU_BINARY, liveQemuCount, startPausedQemu, startQemu, useQemuCleanup } from '../../helpers/qemu';

const BASE = [QEMU_BINARY, '-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S'];

describe('launchQemu()', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gkd-launch-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('returns a connected client and stop() quits QEMU with rc 0', async () => {
    const q = await launchQemu(BASE, { qmpSocket: join(dir, 'qmp.sock') });
    assert.equal(q.argv.at(-2), '-qmp');
    assert.equal(q.argv.at(-1), `unix:${join(dir, 'qmp.sock')},server=on,wait=off`);
    assert.equal((await q.qmp.execute<{ status: string }>('query-status')).status, 'prelaunch');
    await Promise.all([q.stop(), q.stop()]);
    assert.deepEqual(await q.exited, { code: 0, signal: null });
    assert.equal(q.qmp.closed, true);
  });

  it('uses the -qmp already in argv when it names the socket', async () => {
    const sock = join(dir, 'own.sock');
    const q = await launchQemu([...BASE, '-qmp', `unix:${sock},server=on,wait=off`], { qmpSocket: sock });
    assert.equal(q.argv.filter((a) => a === '-qmp').length, 1);
    await q.stop();
  });

  it('fails with GKD_LAUNCH_FAILED carrying QEMU\'s stderr when QEMU rejects the command line', async () => {
    const started = Date.now();
    const bad = [...BASE, '-device', 'virtio-blk-pci,id=disk-x,bus=pci.7'];
    await assert.rejects(launchQemu(bad, { qmpSocket: join(dir, 'qmp.sock'), timeoutMs: 120_000 }), (err: GkdError) => {
      assert.equal(err.code, 'GKD_LAUNCH_FAILED');
      const line = "qemu-system-x86_64: -device virtio-blk-pci,id=disk-x,bus=pci.7: Bus 'pci.7' not found";
      assert.equal(err.message, `Cannot start QEMU "${QEMU_BINARY}": ${line}`);
      assert.equal(err.data?.stderr, `${line}\n`);
      assert.equal(err.data?.exitCode, 1);
      return true;
    });
    // Failed on QEMU's exit, not after the 120 s wait for QMP.
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
  });

  it('fails with GKD_LAUNCH_FAILED when the binary cannot be run', async () => {
    await assert.rejects(launchQemu([join(dir, 'no-qemu')], { qmpSocket: join(dir, 'qmp.sock') }), {
      code: 'GKD_LAUNCH_FAILED',
      message: new RegExp(`^Cannot start QEMU ".*no-qemu": spawn .*ENOENT$`),
    });
  });

  it('fails with GKD_LAUNCH_FAILED and kills QEMU when QMP never answers in time', async () => {
    // The "socket" named on the command line is QEMU's pid file: it exists but nothing listens.
    const notSocket = join(dir, 'qemu.pid');
    await assert.rejects(launchQemu([...BASE, '-pidfile', notSocket], { qmpSocket: notSocket, timeoutMs: 300 }), (err: GkdError) => {
      assert.equal(err.code, 'GKD_LAUNCH_FAILED');
      assert.match(err.message, /QMP on ".*qemu.pid" did not answer within 300 ms/);
      assert.equal(err.data?.signal, 'SIGKILL');
      return true;
    });
  });
});

describe('test/helpers/qemu', () => {
  describe('with useQemuCleanup()', () => {
    useQemuCleanup();
    let shared: Awaited<ReturnType<typeof startPausedQemu>>;
    before(async () => {
      shared = await startPausedQemu();
    });

    it('startPausedQemu() gives each VM its own temp dir and socket', async () => {
      const vm = await startPausedQemu({ machine: 'q35', extraArgs: ['-device', 'pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x10'] });
      assert.notEqual(vm.dir, shared.dir);
      assert.ok(vm.qmpSocket.startsWith(vm.dir));
      const machine = await vm.qmp.execute<Array<{ name: string; alias?: string; 'is-current'?: boolean }>>('query-machines');
      assert.ok(machine.length > 0);
      assert.equal(liveQemuCount(), 2);
    });

    it('VMs started in a test are gone afterwards; the before() VM is still there', async () => {
      assert.equal(liveQemuCount(), 1);
      assert.equal((await shared.qmp.execute<{ status: string }>('query-status')).status, 'prelaunch');
    });

    it('startQemu() builds argv in the fresh dir and adds -accel tcg when none is named', async () => {
      const vm = await startQemu((d) => [QEMU_BINARY, '-nodefaults', '-display', 'none', '-S', '-pidfile', join(d, 'qemu.pid')]);
      assert.deepEqual(vm.argv.slice(1, 3), ['-accel', 'tcg']);
      assert.ok(existsSync(join(vm.dir, 'qemu.pid')));
      const kvm = await vm.qmp.execute<{ enabled: boolean }>('query-kvm');
      assert.equal(kvm.enabled, false);
      await vm.stop();
      assert.equal(existsSync(vm.dir), false, 'temp dir removed on stop');
    });

    it('startQemu() refuses KVM', async () => {
      await assert.rejects(startQemu([QEMU_BINARY, '-enable-kvm']), /Cannot start QEMU with KVM in tests/);
      await assert.rejects(startQemu([QEMU_BINARY, '-machine', 'pc,accel=kvm:tcg']), /Cannot start QEMU with KVM in tests/);
    });
  });

  describe('after a suite with useQemuCleanup()', () => {
    it('no helper VM is left', () => {
      assert.equal(liveQemuCount(), 0);
    });
  });
});
