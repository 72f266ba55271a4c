/**
 * QmpClient against real QEMU (paused `-S` VMs, TCG). Expected texts and
 * timings are what QEMU 7.2 does on the CI machines.
 */

import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { GkdError } from '../../../plugin/errors';
import { QmpClient, type QmpEvent } from '../../../plugin/qmp';
import { QEMU_BINARY, startPausedQemu, useQemuCleanup } from '../../helpers/qemu';

interface PciDevice {
  bus: number;
  slot: number;
  function: number;
  qdev_id: string;
  id: { vendor: number; device: number };
}

/** virtio-scsi controller at 05.0 with a null-co disk on target 1. */
const SCSI_ARGS = [
  '-device', 'virtio-scsi-pci,id=scsi,bus=pci.0,addr=0x5',
  '-blockdev', 'driver=null-co,node-name=null-a,size=1048576',
  '-device', 'scsi-hd,id=sd-a,drive=null-a,bus=scsi.0,channel=0,scsi-id=1,lun=0',
];

describe('QmpClient on real QEMU', () => {
  useQemuCleanup();

  it('version comes from the greeting and matches the binary', async () => {
    const vm = await startPausedQemu();
    const m = /version (\d+)\.(\d+)\.(\d+)/.exec(execFileSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' }));
    assert.ok(m, 'qemu --version prints a version');
    const { major, minor, micro } = vm.qmp.version;
    assert.deepEqual([major, minor, micro], [Number(m[1]), Number(m[2]), Number(m[3])]);
    const v = await vm.qmp.execute<{ qemu: { major: number; minor: number; micro: number }; package: string }>('query-version');
    assert.deepEqual(v.qemu, { major, minor, micro });
    assert.equal(v.package.trim(), vm.qmp.version.package);
    assert.ok(vm.qmp.capabilities.includes('oob'));
  });

  it('negotiates oob, so QEMU reads pipelined commands ahead; 30 in flight (past its queue of 8) are answered in order', async () => {
    const vm = await startPausedQemu({ extraArgs: SCSI_ARGS });
    assert.equal(vm.qmp.oob, true, 'QEMU 7.2 offers oob on a socket monitor and the client takes it');
    const calls = Array.from({ length: 30 }, (_, i) => {
      if (i % 3 === 0) return vm.qmp.execute<{ status: string }>('query-status').then((r) => `status:${r.status}`);
      if (i % 3 === 1) return vm.qmp.execute<number>('qom-get', { path: '/machine/peripheral/sd-a', property: 'scsi-id' }).then((v) => `scsi-id:${v}`);
      return vm.qmp.execute('qom-get', { path: `/machine/peripheral/none-${i}`, property: 'scsi-id' }).then(() => 'found', (e: GkdError) => `${e.code}:${/none-(\d+)/.exec(e.message)?.[1] ?? '?'}`);
    });
    const got = await Promise.all(calls);
    assert.deepEqual(got, Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? 'status:prelaunch' : i % 3 === 1 ? 'scsi-id:1' : `GKD_QMP_COMMAND:${i}`)));
    const plain = await (async () => {
      await vm.qmp.close();
      return QmpClient.connect(vm.qmpSocket, { oob: false });
    })();
    try {
      assert.equal(plain.oob, false, 'oob: false negotiates without it');
      assert.equal((await plain.execute<{ status: string }>('query-status')).status, 'prelaunch');
    } finally {
      await plain.close();
    }
  });

  it('commands() asks QEMU once per connection; hasCommand() answers from it', async () => {
    const vm = await startPausedQemu();
    const first = await vm.qmp.commands();
    assert.equal(await vm.qmp.commands(), first, 'same cached set');
    for (const c of ['blockdev-add', 'blockdev-del', 'device_add', 'device_del', 'netdev_add', 'query-pci', 'add-fd', 'getfd']) {
      assert.equal(await vm.qmp.hasCommand(c), true, c);
    }
    // Not in 7.2: hotplug capability has to be found another way.
    assert.equal(await vm.qmp.hasCommand('query-hotpluggable-buses'), false);
    const other = await QmpClient.connect(vm.qmpSocket, { connectTimeoutMs: 200 }).catch((e: GkdError) => e);
    // QEMU serves one client per monitor: a second connection is never greeted.
    assert.ok(other instanceof GkdError && other.code === 'GKD_QMP_CONNECT', String(other));
  });

  it('execute("query-pci") shows the i440fx devices and one placed at a fixed slot', async () => {
    const vm = await startPausedQemu({ extraArgs: SCSI_ARGS });
    const [bus0] = await vm.qmp.execute<Array<{ bus: number; devices: PciDevice[] }>>('query-pci');
    assert.ok(bus0);
    const bySlot = new Map(bus0.devices.map((d) => [`${d.slot}.${d.function}`, d]));
    const host = bySlot.get('0.0')?.id;
    assert.deepEqual([host?.vendor, host?.device], [0x8086, 0x1237], 'i440fx host bridge');
    assert.ok(bySlot.has('1.0') && bySlot.has('1.1') && bySlot.has('1.3'), 'PIIX3 ISA, IDE, PM');
    assert.equal(bySlot.get('5.0')?.qdev_id, 'scsi');
  });

  it('execute() rejects with GKD_QMP_COMMAND carrying QEMU\'s class and desc', async () => {
    const vm = await startPausedQemu();
    await assert.rejects(vm.qmp.execute('device_del', { id: 'nope' }), (err: GkdError) => {
      assert.equal(err.code, 'GKD_QMP_COMMAND');
      assert.equal(err.message, `Cannot run QMP command "device_del": Device 'nope' not found`);
      assert.deepEqual(err.data, { command: 'device_del', class: 'DeviceNotFound', desc: "Device 'nope' not found" });
      assert.equal(err.device, 'nope');
      return true;
    });
    await assert.rejects(vm.qmp.execute('no-such-command'), { code: 'GKD_QMP_COMMAND', data: { command: 'no-such-command', class: 'CommandNotFound', desc: 'The command no-such-command has not been found' } });
    assert.deepEqual(await vm.qmp.execute('query-status'), { status: 'prelaunch', singlestep: false, running: false });
  });

  it('expectEvent() catches RESUME, which QEMU sends before the reply to cont, and STOP', async () => {
    const vm = await startPausedQemu();
    const order: string[] = [];
    vm.qmp.on('event', (e: QmpEvent) => order.push(e.event));
    const resumed = vm.qmp.expectEvent('RESUME', undefined, 5000);
    await vm.qmp.execute('cont').then(() => order.push('reply'));
    await resumed;
    assert.deepEqual(order, ['RESUME', 'reply']);
    const stopped = vm.qmp.expectEvent('STOP', undefined, 5000);
    await vm.qmp.execute('stop');
    assert.deepEqual((await stopped).data, {});
    assert.equal((await vm.qmp.execute<{ status: string }>('query-status')).status, 'paused');
  });

  it('device_del of a scsi-hd gives DEVICE_DELETED for its id without the guest, even paused', async () => {
    const vm = await startPausedQemu({ extraArgs: SCSI_ARGS });
    await vm.qmp.execute('blockdev-add', { driver: 'null-co', 'node-name': 'null-b', size: 1048576 });
    await vm.qmp.execute('device_add', { driver: 'scsi-hd', id: 'sd-b', drive: 'null-b', bus: 'scsi.0', channel: 0, 'scsi-id': 2, lun: 0 });
    // Paused, the guest cannot take part: the event comes from QEMU alone (or not within 5 s).
    const gone = vm.qmp.expectEvent('DEVICE_DELETED', (d) => d.device === 'sd-b', 5000);
    await vm.qmp.execute('device_del', { id: 'sd-b' });
    const ev = await gone;
    assert.deepEqual(ev.data, { device: 'sd-b', path: '/machine/peripheral/sd-b' });
    // The blockdev node outlives its device (blockdev-add nodes are not auto-deleted).
    await vm.qmp.execute('blockdev-del', { 'node-name': 'null-b' });
    // waitForEvent() after the reply also works, since the event comes ~0.05 s later.
    await vm.qmp.execute('device_del', { id: 'sd-a' });
    assert.equal((await vm.qmp.waitForEvent('DEVICE_DELETED', (d) => d.device === 'sd-a', 5000)).data.device, 'sd-a');
  });

  it('a QEMU killed with a command in flight rejects it with GKD_QMP_CLOSED', async () => {
    const vm = await startPausedQemu();
    const closed = new Promise<GkdError | undefined>((r) => vm.qmp.on('close', r));
    vm.kill('SIGSTOP'); // QEMU cannot answer now, so the command is surely pending
    const pending = vm.qmp.execute('query-status', undefined, { timeoutMs: 10_000 });
    const checked = assert.rejects(pending, (err: GkdError) => {
      assert.equal(err.code, 'GKD_QMP_CLOSED');
      assert.match(err.message, /^Cannot run QMP command "query-status": QEMU closed the connection/);
      return true;
    });
    await new Promise((r) => setTimeout(r, 20));
    vm.kill('SIGKILL');
    await checked;
    assert.equal((await closed)?.code, 'GKD_QMP_CLOSED');
    assert.equal((await vm.exited).signal, 'SIGKILL');
    await assert.rejects(vm.qmp.execute('query-status'), { code: 'GKD_QMP_CLOSED' });
  });
});
