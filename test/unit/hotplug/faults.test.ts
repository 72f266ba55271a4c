/**
 * HotplugEngine fault injection against a fake QMP peer.
 *
 * The fake peer (test/helpers/fake-qemu.ts) is used only to inject faults
 * real QEMU cannot be made to show on demand: a blockdev-add or device_add
 * that fails after earlier steps succeeded, a device that lands somewhere
 * else than asked, query-block missing the node, the connection dropping in
 * the middle of the sequence (with QEMU alive or dead), a guest that never
 * releases a device. Everything real QEMU does show is tested on real QEMU
 * (test/qemu/hotplug, test/guest/hotplug.test.ts).
 *
 * Every case: the runtime file is byte-identical to before, the peer saw the
 * inverse of each step that had succeeded (newest first), its device, node
 * and netdev sets are back to what they were, and the error names the
 * failed step and lists what was undone.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GkdError } from '../../../plugin/errors';
import { HotplugEngine, QmpConnections, type PendingEvent, type RemovedEvent } from '../../../plugin/hotplug';
import { planInstance } from '../../../plugin/planner';
import { RuntimeStore } from '../../../plugin/runtime';
import type { InstanceSpec } from '../../../plugin/types';
import { FakeQemu } from '../../helpers/fake-qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';
import { rejectsWithCode } from '../../helpers/gkd-assert';

const NAME = 'inst1.example.com';
const NEW_DISK = uuidN(0xd1);
const NEW_DISK_ID = 'disk-000000d1-b6e5-4243';
const NEW_NIC = uuidN(0xe1);
const NEW_NIC_ID = 'nic-000000e1-b6e5-4243';
const UNPLUG_MS = 150;

interface Rig {
  vm: FakeQemu;
  engine: HotplugEngine;
  store: RuntimeStore;
  spec: InstanceSpec;
  removed: RemovedEvent[];
  /** The runtime file's bytes and the fake VM's sets before the call. */
  file: Buffer;
  state: ReturnType<FakeQemu['state']>;
  /** Mutations the peer saw during the call under test. */
  mutations(): string[];
  unchanged(): void;
}

const rigs: Array<{ vm: FakeQemu; dir: string; connections: QmpConnections }> = [];

async function rig(hvparams: Record<string, unknown>, counts: { disks?: number; nics?: number } = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-hpfault-'));
  const spec = makeSpec({ disks: counts.disks ?? 1, nics: counts.nics ?? 1, hvparams });
  const store = new RuntimeStore(dir);
  const { runtime } = planInstance(spec);
  await store.write(NAME, runtime);
  const vm = await FakeQemu.start(runtime);
  const connections = new QmpConnections({ timeoutMs: 2_000 });
  rigs.push({ vm, dir, connections });
  const removed: RemovedEvent[] = [];
  const engine = new HotplugEngine({ store, connections, qmpSocket: () => vm.path, accel: 'tcg', unplugTimeoutMs: UNPLUG_MS, lockWaitMs: 5_000, onRemoved: (ev) => removed.push(ev) });
  const file = readFileSync(store.path(NAME));
  const state = vm.state();
  const from = vm.log.length;
  return {
    vm,
    engine,
    store,
    spec,
    removed,
    file,
    state,
    mutations: () => vm.mutations().slice(vm.log.slice(0, from).filter((r) => /^(blockdev|device_|netdev_)/.test(r.execute)).length),
    unchanged: () => {
      assert.deepEqual(readFileSync(store.path(NAME)), file, 'runtime file changed');
      assert.deepEqual(vm.state(), state, 'QEMU-side state not rolled back');
    },
  };
}

/** Resolves once `pred` holds; the fake peer acts on its own timers, so poll the event loop. */
async function until(pred: () => boolean, what: string, ms = 2_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const undone = (e: GkdError): unknown => (e.data as { undone: string[] }).undone;
const failedStep = (e: GkdError): unknown => (e.data as { step: string }).step;

const VIRTIO = { disk_type: 'paravirtual' };
const SCSI = { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' };

describe('HotplugEngine faults (fake QMP peer)', function () {
  this.timeout(10_000);

  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.connections.closeAll();
      await r.vm.stop();
      rmSync(r.dir, { recursive: true, force: true });
    }
  });

  describe('disk.add', () => {
    it('succeeds through the whole sequence when nothing fails (the model is good enough to trust)', async () => {
      const r = await rig(SCSI);
      const res = await r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' });
      assert.deepEqual(res.hvinfo, { driver: 'scsi-hd', id: NEW_DISK_ID, bus: 'scsi.0', channel: 0, 'scsi-id': 1, lun: 0 });
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`]);
      const rt = (await r.store.read(NAME)).upgraded;
      assert.deepEqual(rt[3].map((e) => e[0].uuid), [r.spec.disks[0].uuid, NEW_DISK]);
      // Placed from the runtime file (QEMU's layout is read only when QEMU refuses the address), verified
      // by one read of the chosen target; device_add's success already says the node is attached.
      assert.deepEqual(r.vm.commands(), ['query-status', 'blockdev-add', 'device_add', 'qom-get']);
      assert.deepEqual(r.vm.log.find((x) => x.execute === 'qom-get')?.arguments, { path: `/machine/peripheral/${NEW_DISK_ID}`, property: 'scsi-id' });
      // Closed after the answer, in the instance's turn: by the add itself, not by a later reconcile.
      await r.engine.idle(NAME);
      assert.deepEqual(await r.engine.journal.read(NAME), [], 'the journal entry is closed');
    });

    it('blockdev-add error: nothing to undo, nothing recorded', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('blockdev-add', { error: "Could not open '/x': No such file or directory" });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/x' }), 'GKD_HOTPLUG_FAILED');
      assert.equal(failedStep(e), 'blockdev-add');
      assert.deepEqual(undone(e), []);
      assert.match(e.message, /blockdev-add failed: .*No such file or directory; nothing to undo$/);
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`]);
      r.unchanged();
    });

    for (const [label, hv] of [['virtio-blk', VIRTIO], ['scsi-hd', SCSI]] as const) {
      it(`device_add error (${label}): the block node is deleted`, async () => {
        const r = await rig(hv);
        r.vm.fault('device_add', { error: 'Bus does not support hotplugging' });
        const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_FAILED');
        assert.equal(failedStep(e), 'device_add');
        assert.deepEqual(undone(e), [`blockdev-del ${NEW_DISK_ID}`]);
        assert.match(e.message, /device_add failed: .*Bus does not support hotplugging; undone: blockdev-del disk-000000d1-b6e5-4243$/);
        assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
        r.unchanged();
      });
    }

    it('verify mismatch (QEMU shows another addr): device_del, wait for DEVICE_DELETED, then blockdev-del', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('device_add', { misplace: true });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_VERIFY');
      assert.equal(failedStep(e), 'verify');
      assert.match(e.message, /addr: runtime "0xe", QEMU "0xf"/);
      assert.deepEqual(undone(e), [`device_del ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `device_del ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      r.unchanged();
    });

    it('verify mismatch (SCSI target differs)', async () => {
      const r = await rig(SCSI);
      r.vm.fault('device_add', { misplace: true });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_VERIFY');
      assert.match(e.message, /scsi-id: runtime 1, QEMU 2/);
      assert.deepEqual(undone(e), [`device_del ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      r.unchanged();
    });

    it('reconcile of an add whose device_add answer was never seen: query-block lacking the node takes the device back', async () => {
      const r = await rig(SCSI);
      // What a process that died right after device_add leaves: QEMU has device and node, the journal the intent.
      const hvinfo = { driver: 'scsi-hd', id: NEW_DISK_ID, bus: 'scsi.0', channel: 0, 'scsi-id': 1, lun: 0 };
      r.vm.nodes.add(NEW_DISK_ID);
      r.vm.devices.set(NEW_DISK_ID, { id: NEW_DISK_ID, driver: 'scsi-hd', bus: 'scsi.0', channel: 0, 'scsi-id': 1, lun: 0, drive: NEW_DISK_ID });
      r.vm.hiddenNodes.add(NEW_DISK_ID);
      await r.engine.journal.open(NAME, { op: 'add', step: 'blockdev-add', kind: 'disk', uuid: NEW_DISK, id: NEW_DISK_ID, socket: r.vm.path, hvinfo, entry: { uuid: NEW_DISK } });
      const [o] = await r.engine.reconcile(NAME);
      assert.equal(o.outcome, 'rolled-back', o.detail);
      assert.match(o.detail, /not where planned/);
      assert.deepEqual(r.mutations(), [`device_del ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      assert.deepEqual(await r.engine.journal.read(NAME), []);
      r.unchanged();
    });

    it('an address QEMU refuses (a device not in the runtime file holds it): one live read, placed again, recorded where QEMU has it', async () => {
      const r = await rig(VIRTIO);
      // 0xc and 0xd are the planned disk and NIC; a stranger at 0xe, behind the engine's back.
      r.vm.devices.set('stranger', { id: 'stranger', driver: 'virtio-rng-pci', bus: 'pci.0', slot: 0xe });
      const res = await r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' });
      assert.deepEqual(res.hvinfo, { driver: 'virtio-blk-pci', id: NEW_DISK_ID, bus: 'pci.0', addr: '0xf' });
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`]);
      // The verifying qom-get goes right behind each device_add; after the refused one its answer is ignored.
      assert.deepEqual(r.vm.commands(), ['query-status', 'blockdev-add', 'device_add', 'qom-get', 'query-pci', 'device_add', 'qom-get']);
      assert.equal(r.vm.devices.get(NEW_DISK_ID)?.slot, 0xf);
      const rt = (await r.store.read(NAME)).upgraded;
      assert.deepEqual(rt[3][1][0].hvinfo, res.hvinfo);
      await r.engine.idle(NAME);
      assert.deepEqual(await r.engine.journal.read(NAME), []);
    });

    it('a SCSI target QEMU refuses: the live targets are read and the next free one taken', async () => {
      const r = await rig(SCSI);
      r.vm.devices.set('stranger', { id: 'stranger', driver: 'scsi-hd', bus: 'scsi.0', channel: 0, 'scsi-id': 1, lun: 0 });
      const res = await r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' });
      assert.equal((res.hvinfo as { 'scsi-id': number })['scsi-id'], 2);
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`]);
      assert.equal(r.vm.devices.get(NEW_DISK_ID)?.['scsi-id'], 2);
    });

    it('an address refused twice: the block node is deleted, nothing recorded, one retry only', async () => {
      const r = await rig(VIRTIO);
      r.vm.devices.set('stranger', { id: 'stranger', driver: 'virtio-rng-pci', bus: 'pci.0', slot: 0xe });
      // A second stranger comes right after the live read: the second device_add is refused too.
      r.vm.afterCommand('query-pci', () => r.vm.devices.set('latecomer', { id: 'latecomer', driver: 'virtio-rng-pci', bus: 'pci.0', slot: 0xf }));
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_FAILED');
      assert.equal(failedStep(e), 'device_add');
      assert.deepEqual(undone(e), [`blockdev-del ${NEW_DISK_ID}`]);
      assert.match(e.message, /PCI: slot 15 function 0 not available/);
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      assert.deepEqual(await r.engine.journal.read(NAME), []);
      // Apart from the strangers, QEMU and the file are as before.
      for (const x of ['stranger', 'latecomer']) r.vm.devices.delete(x);
      r.unchanged();
    });

    it('no address left once QEMU refused the first: GKD_CAPACITY, the block node deleted', async () => {
      const r = await rig({ disk_type: 'scsi-hd', scsi_controller_type: 'lsi' }, { disks: 1, nics: 0 });
      // lsi gives a guest targets 0-6 (SCSI_CONTROLLERS); the runtime holds target 0, strangers all others.
      for (let t = 1; t < 7; t++) r.vm.devices.set(`s${t}`, { id: `s${t}`, driver: 'scsi-hd', bus: 'scsi.0', channel: 0, 'scsi-id': t, lun: 0 });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_CAPACITY');
      assert.deepEqual(undone(e), [`blockdev-del ${NEW_DISK_ID}`]);
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      for (let t = 1; t < 7; t++) r.vm.devices.delete(`s${t}`);
      r.unchanged();
    });

    it('an id QEMU already has (not in the runtime file): GKD_DEVICE_EXISTS, the block node deleted', async () => {
      const r = await rig(SCSI);
      r.vm.devices.set(NEW_DISK_ID, { id: NEW_DISK_ID, driver: 'virtio-rng-pci', bus: 'pci.0', slot: 0x1e });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_DEVICE_EXISTS');
      assert.match(e.message, /Duplicate device ID/);
      assert.deepEqual(undone(e), [`blockdev-del ${NEW_DISK_ID}`]);
      assert.deepEqual(await r.engine.journal.read(NAME), []);
      assert.equal(r.vm.devices.get(NEW_DISK_ID)?.driver, 'virtio-rng-pci', 'the stranger is left alone');
      r.vm.devices.delete(NEW_DISK_ID);
      r.unchanged();
    });

    it('verify mismatch with a guest that does not release the device: blockdev-del waits for DEVICE_DELETED', async () => {
      const r = await rig(VIRTIO);
      r.vm.pciUnplug = 'no-guest';
      r.vm.fault('device_add', { misplace: true });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_VERIFY');
      assert.deepEqual(undone(e), [
        `device_del ${NEW_DISK_ID} (requested; the guest has not released it yet)`,
        `blockdev-del ${NEW_DISK_ID} (deferred until the guest releases the device)`,
      ]);
      // While the guest holds it, deleting the node would only fail with "in use".
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `device_del ${NEW_DISK_ID}`]);
      assert.deepEqual(readFileSync(r.store.path(NAME)), r.file);
      r.vm.release(NEW_DISK_ID);
      await until(() => r.mutations().includes(`blockdev-del ${NEW_DISK_ID}`), 'the deferred blockdev-del');
      r.unchanged();
    });

    it('socket closed before device_add is applied: rolls back over a new connection', async () => {
      const r = await rig(SCSI);
      r.vm.fault('device_add', { close: 'before' });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_FAILED');
      assert.equal(failedStep(e), 'device_add');
      assert.equal((e.cause as GkdError).code, 'GKD_QMP_CLOSED');
      // The reply never came, so device_add may have happened: ask QEMU to drop the device too.
      assert.deepEqual(undone(e), [`device_del ${NEW_DISK_ID} (QEMU did not have it: device_add had not taken effect)`, `blockdev-del ${NEW_DISK_ID}`]);
      // The add's connection, then one short connection per inverse (the rollback never holds the monitor).
      assert.equal(r.vm.connections, 3);
      r.unchanged();
    });

    it('socket closed after device_add was applied (reply lost): the device and the node are both removed', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('device_add', { close: 'after' });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_FAILED');
      assert.deepEqual(undone(e), [`device_del ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      assert.deepEqual(r.mutations(), [`blockdev-add ${NEW_DISK_ID}`, `device_add ${NEW_DISK_ID}`, `device_del ${NEW_DISK_ID}`, `blockdev-del ${NEW_DISK_ID}`]);
      r.unchanged();
    });

    it('socket closed after blockdev-add was applied: the node is deleted over a new connection', async () => {
      const r = await rig(SCSI);
      r.vm.fault('blockdev-add', { close: 'after' });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_FAILED');
      assert.equal(failedStep(e), 'blockdev-add');
      assert.deepEqual(undone(e), [`blockdev-del ${NEW_DISK_ID}`]);
      r.unchanged();
    });

    it('socket closed and QEMU gone: every undo is reported as failed, the runtime file is untouched', async () => {
      const r = await rig(SCSI);
      r.vm.fault('device_add', { close: 'before', quit: true });
      const e = await rejectsWithCode(r.engine.addDisk(NAME, { uuid: NEW_DISK, path: '/dev/null' }), 'GKD_HOTPLUG_FAILED');
      const lines = undone(e) as string[];
      assert.equal(lines.length, 2);
      assert.match(lines[0], /^device_del disk-000000d1-b6e5-4243 FAILED: /);
      assert.match(lines[1], /^blockdev-del disk-000000d1-b6e5-4243 FAILED: /);
      assert.match(e.message, /device_add failed: .*undone: device_del .* FAILED: .*; blockdev-del .* FAILED: /);
      assert.deepEqual(readFileSync(r.store.path(NAME)), r.file);
    });
  });

  describe('nic.add', () => {
    it('netdev_add error: nothing to undo', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('netdev_add', { error: "could not open /dev/net/tun: Operation not permitted" });
      const e = await rejectsWithCode(r.engine.addNic(NAME, { uuid: NEW_NIC, mac: macN(9), backend: { type: 'user' } }), 'GKD_HOTPLUG_FAILED');
      assert.equal(failedStep(e), 'netdev_add');
      assert.deepEqual(undone(e), []);
      assert.match(e.message, /netdev_add failed: .*Operation not permitted; nothing to undo$/);
      assert.deepEqual(r.mutations(), [`netdev_add ${NEW_NIC_ID}`]);
      r.unchanged();
    });

    it('device_add error: the netdev is deleted', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('device_add', { error: 'Bus does not support hotplugging' });
      const e = await rejectsWithCode(r.engine.addNic(NAME, { uuid: NEW_NIC, mac: macN(9), backend: { type: 'user' } }), 'GKD_HOTPLUG_FAILED');
      assert.equal(failedStep(e), 'device_add');
      assert.deepEqual(undone(e), [`netdev_del ${NEW_NIC_ID}`]);
      assert.match(e.message, /undone: netdev_del nic-000000e1-b6e5-4243$/);
      assert.deepEqual(r.mutations(), [`netdev_add ${NEW_NIC_ID}`, `device_add ${NEW_NIC_ID}`, `netdev_del ${NEW_NIC_ID}`]);
      r.unchanged();
    });

    it('verify mismatch: device_del, then netdev_del', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('device_add', { misplace: true });
      const e = await rejectsWithCode(r.engine.addNic(NAME, { uuid: NEW_NIC, mac: macN(9), backend: { type: 'user' } }), 'GKD_HOTPLUG_VERIFY');
      assert.deepEqual(undone(e), [`device_del ${NEW_NIC_ID}`, `netdev_del ${NEW_NIC_ID}`]);
      assert.deepEqual(r.mutations(), [`netdev_add ${NEW_NIC_ID}`, `device_add ${NEW_NIC_ID}`, `device_del ${NEW_NIC_ID}`, `netdev_del ${NEW_NIC_ID}`]);
      r.unchanged();
    });

    it('socket closed after netdev_add was applied: the netdev is deleted over a new connection', async () => {
      const r = await rig(VIRTIO);
      r.vm.fault('netdev_add', { close: 'after' });
      const e = await rejectsWithCode(r.engine.addNic(NAME, { uuid: NEW_NIC, mac: macN(9), backend: { type: 'user' } }), 'GKD_HOTPLUG_FAILED');
      assert.deepEqual(undone(e), [`netdev_del ${NEW_NIC_ID}`]);
      r.unchanged();
    });
  });

  describe('queue and cancellation', () => {
    it('refuses more than maxQueued waiting operations on one instance with GKD_OVERLOADED', async () => {
      const r = await rig(VIRTIO);
      const engine = new HotplugEngine({ store: r.store, connections: rigs[rigs.length - 1].connections, qmpSocket: () => r.vm.path, accel: 'tcg', maxQueued: 2, lockWaitMs: 5_000 });
      let letGo!: () => void;
      const held = r.store.withLock(NAME, () => new Promise<void>((resolve) => (letGo = resolve)));
      await until(() => letGo !== undefined, 'the outside hold');
      const a = engine.addNic(NAME, { uuid: uuidN(0xe5), mac: macN(5), backend: { type: 'user' } });
      const b = engine.addNic(NAME, { uuid: uuidN(0xe6), mac: macN(6), backend: { type: 'user' } });
      const e = await rejectsWithCode(engine.addNic(NAME, { uuid: uuidN(0xe7), mac: macN(7), backend: { type: 'user' } }), 'GKD_OVERLOADED');
      assert.match(e.message, /2 are already waiting/);
      letGo();
      await held;
      await Promise.all([a, b]);
      assert.deepEqual(r.mutations().filter((m) => m.startsWith('netdev_add')), ['netdev_add nic-000000e5-b6e5-4243', 'netdev_add nic-000000e6-b6e5-4243']);
    });

    it('does not run an operation whose caller gave up while it waited, and changes nothing', async () => {
      const r = await rig(VIRTIO);
      let letGo!: () => void;
      const held = r.store.withLock(NAME, () => new Promise<void>((resolve) => (letGo = resolve)));
      await until(() => letGo !== undefined, 'the outside hold');
      const abort = new AbortController();
      const p = r.engine.addNic(NAME, { uuid: NEW_NIC, mac: macN(9), backend: { type: 'user' } }, { signal: abort.signal });
      abort.abort(new Error('client disconnected'));
      letGo();
      await held;
      const e = await rejectsWithCode(p, 'GKD_CANCELLED');
      assert.match(e.message, /client disconnected/);
      r.unchanged();
      assert.deepEqual(r.mutations(), []);
    });
  });

  describe('remove', () => {
    it('no DEVICE_DELETED in time: pending, runtime untouched, then finished when the event comes', async () => {
      const r = await rig(VIRTIO, { disks: 2, nics: 0 });
      r.vm.pciUnplug = 'no-guest';
      const uuid = r.spec.disks[1].uuid;
      const id = 'disk-00001001-b6e5-4243';
      const e = await rejectsWithCode(r.engine.removeDisk(NAME, uuid), 'GKD_HOTPLUG_PENDING');
      assert.equal(e.device, id);
      assert.equal((e.data as { status: string }).status, 'pending');
      assert.deepEqual(r.mutations(), [`device_del ${id}`], 'blockdev-del must wait for the device to go');
      assert.deepEqual(readFileSync(r.store.path(NAME)), r.file);
      assert.deepEqual(r.engine.pending(), [{ name: NAME, kind: 'disk', uuid, id }]);
      assert.deepEqual(r.removed, []);

      // Asking again while QEMU is still unplugging stays pending and keeps a single watch.
      await rejectsWithCode(r.engine.removeDisk(NAME, uuid), 'GKD_HOTPLUG_PENDING');
      assert.equal(r.engine.pending().length, 1);

      r.vm.release(id);
      await until(() => r.removed.length === 1, 'onRemoved');
      assert.deepEqual(r.removed, [{ name: NAME, kind: 'disk', uuid, id, warnings: [] }]);
      assert.deepEqual(r.mutations(), [`device_del ${id}`, `device_del ${id}`, `blockdev-del ${id}`]);
      const rt = (await r.store.read(NAME)).upgraded;
      assert.deepEqual(rt[3].map((x) => x[0].uuid), [r.spec.disks[0].uuid]);
      assert.deepEqual(r.vm.state().nodes, ['disk-00001000-b6e5-4243']);
      assert.deepEqual(r.engine.pending(), []);
    });

    it('a removal that completes while a migration holds the instance is recorded once the hold ends', async () => {
      const r = await rig(VIRTIO, { disks: 2, nics: 0 });
      r.vm.pciUnplug = 'no-guest';
      const uuid = r.spec.disks[1].uuid;
      const id = 'disk-00001001-b6e5-4243';
      await rejectsWithCode(r.engine.removeDisk(NAME, uuid), 'GKD_HOTPLUG_PENDING');
      let letGo!: () => void;
      const held = r.store.withLock(NAME, () => new Promise<void>((resolve) => (letGo = resolve)), { exclusive: 'migration' });
      await until(() => letGo !== undefined, 'exclusive hold');
      r.vm.release(id);
      // The first attempt meets GKD_INSTANCE_BUSY; nothing is recorded while the hold lasts.
      await new Promise((res) => setTimeout(res, 100));
      assert.deepEqual(r.removed, []);
      assert.deepEqual(readFileSync(r.store.path(NAME)), r.file);
      letGo();
      await held;
      await until(() => r.removed.length === 1, 'onRemoved after the hold');
      assert.deepEqual((await r.store.read(NAME)).upgraded[3].map((x) => x[0].uuid), [r.spec.disks[0].uuid]);
      assert.deepEqual(r.mutations().filter((m) => m.startsWith('blockdev-del')), [`blockdev-del ${id}`], 'the backend is dropped once');
    });

    it('announces a removal it cannot finish while a migration holds the instance, with the reason', async () => {
      const r = await rig(VIRTIO, { disks: 2, nics: 0 });
      r.vm.pciUnplug = 'no-guest';
      const events: PendingEvent[] = [];
      const engine = new HotplugEngine({
        store: r.store, connections: rigs[rigs.length - 1].connections, qmpSocket: () => r.vm.path, accel: 'tcg', unplugTimeoutMs: UNPLUG_MS, lockWaitMs: 5_000,
        onPending: (ev) => events.push(ev),
      });
      const uuid = r.spec.disks[1].uuid;
      const id = 'disk-00001001-b6e5-4243';
      await rejectsWithCode(engine.removeDisk(NAME, uuid), 'GKD_HOTPLUG_PENDING');
      let letGo!: () => void;
      const held = r.store.withLock(NAME, () => new Promise<void>((resolve) => (letGo = resolve)), { exclusive: 'migration' });
      await until(() => letGo !== undefined, 'exclusive hold');
      // The guest lets go (the fake's release: real QEMU cannot be made to on demand); finishing it meets the hold.
      r.vm.release(id);
      await until(() => events.some((e) => e.reason === 'failing'), 'a failing announcement', 10_000);
      const f = events.find((e) => e.reason === 'failing') as PendingEvent;
      assert.deepEqual({ ...f, attempts: 0, pendingMs: 0, error: { ...f.error, message: '' } }, {
        name: NAME, kind: 'disk', uuid, id, recorded: true, reason: 'failing', attempts: 0, pendingMs: 0, error: { code: 'GKD_INSTANCE_BUSY', message: '' },
      });
      assert.match(f.error?.message ?? '', /a migration is running/);
      letGo();
      await held;
      await until(() => engine.pending().length === 0, 'the removal finished after the hold', 10_000);
      engine.stop();
    });

    it('a NIC whose DEVICE_DELETED never comes stays recorded, its netdev kept', async () => {
      const r = await rig(VIRTIO, { disks: 0, nics: 1 });
      r.vm.pciUnplug = 'no-guest';
      await rejectsWithCode(r.engine.removeNic(NAME, r.spec.nics[0].uuid), 'GKD_HOTPLUG_PENDING');
      assert.deepEqual(r.mutations(), ['device_del nic-00002000-66a8-4e6d']);
      assert.deepEqual(readFileSync(r.store.path(NAME)), r.file);
      assert.deepEqual(r.vm.state().netdevs, r.state.netdevs);
    });

    it('matches DEVICE_DELETED on data.device, not on the backend event that comes first', async () => {
      const r = await rig(VIRTIO, { disks: 0, nics: 1 });
      const res = await r.engine.removeNic(NAME, r.spec.nics[0].uuid);
      assert.equal(res.status, 'removed');
      assert.deepEqual(r.mutations(), ['device_del nic-00002000-66a8-4e6d', 'netdev_del nic-00002000-66a8-4e6d']);
      assert.deepEqual((await r.store.read(NAME)).upgraded[1], []);
    });

    it('device_del refused: nothing changed, and the error says so', async () => {
      const r = await rig(SCSI);
      r.vm.fault('device_del', { error: 'Bus does not support hotplugging' });
      const e = await rejectsWithCode(r.engine.removeDisk(NAME, r.spec.disks[0].uuid), 'GKD_HOTPLUG_FAILED');
      assert.match(e.message, /device_del failed: .*; nothing changed$/);
      r.unchanged();
    });

    it('socket closed during device_del: not claimed as unchanged, runtime keeps the device', async () => {
      const r = await rig(SCSI);
      r.vm.fault('device_del', { close: 'before' });
      const e = await rejectsWithCode(r.engine.removeDisk(NAME, r.spec.disks[0].uuid), 'GKD_HOTPLUG_FAILED');
      assert.match(e.message, /QEMU may have started the unplug; the runtime file keeps the device/);
      assert.deepEqual(readFileSync(r.store.path(NAME)), r.file);
    });
  });
});
