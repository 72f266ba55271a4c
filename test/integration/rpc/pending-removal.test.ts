/**
 * A removal the guest does not finish, through the real daemon on real QEMU
 * (paused, no OS: a virtio-blk disk's PCI unplug is never acknowledged, so
 * its removal stays pending for good):
 * - it is announced, not silent: a `device.pending` notification to every
 *   client and a warning in the daemon's log, once the guest has held the
 *   device for another unplug timeout, with back-off rather than per poll;
 * - migration.start refuses (GKD_MIGRATION_REFUSED naming the device,
 *   `data.pending`) before anything moves: the runtime file the target
 *   would take over still lists the device, and nothing would finish its
 *   removal after the handover.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deviceId } from '../../../plugin/planner';
import { RpcCallError, RpcClient } from '../../../plugin/rpc';
import { Journal } from '../../../plugin/runtime';
import { startDaemonInstance, useRigCleanup, type DaemonInstance } from '../../helpers/daemon-guest';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec } from '../../helpers/specs';
import { spawnDaemon, untilDaemon, type DaemonProcess } from './daemon-process';

const NAME = 'pending1.example.com';
/** The daemon's unplug timeout here, ms: the removal answers pending after it, and is announced after another. */
const UNPLUG_MS = 300;

interface Rig extends DaemonInstance {
  d: DaemonProcess;
  c: RpcClient;
  /** Notifications the client received, in order. */
  notes: Array<{ method: string; params: Record<string, unknown> }>;
  uuid: string;
  id: string;
}

const rigs: Rig[] = [];

/** Two virtio-blk disks; the second one's removal is asked for and answered pending. */
async function pendingRig(): Promise<Rig> {
  const spec = makeSpec({ name: NAME, disks: 2, nics: 0, hvparams: { disk_type: 'paravirtual' } });
  const i = await startDaemonInstance(spec, { paused: true });
  // At debug level every attempt of the finisher is logged, announced or not.
  const d = await spawnDaemon({ dir: i.dir, args: ['--log-level', 'debug'], env: { GKD_STORAGE_ROOTS: `${i.dir}:/dev/`, GKD_UNPLUG_TIMEOUT_MS: String(UNPLUG_MS) } });
  const c = await RpcClient.connect(d.socket);
  const notes: Rig['notes'] = [];
  c.on('notification', (method: string, params: Record<string, unknown>) => notes.push({ method, params }));
  const uuid = spec.disks[1].uuid;
  const r: Rig = { ...i, d, c, notes, uuid, id: deviceId('disk', uuid, 'disk') };
  rigs.push(r);
  await assert.rejects(c.call('disk.remove', { name: NAME, uuid }), (e: RpcCallError) => {
    assert.equal((e.data as { code?: string }).code, 'GKD_HOTPLUG_PENDING', e.message);
    return true;
  });
  return r;
}


describe('a pending removal that is not finished (real daemon, real QEMU)', function () {
  this.timeout(90_000);
  useQemuCleanup();
  useRigCleanup(rigs);

  it('is announced with a device.pending notification and a warning, not once per poll', async () => {
    const r = await pendingRig();
    const pendingNotes = (): Array<Record<string, unknown>> => r.notes.filter((n) => n.method === 'device.pending').map((n) => n.params);
    await untilDaemon(r.d, 'device.pending never came', () => pendingNotes().length > 0);
    const [first] = pendingNotes();
    assert.deepEqual({ ...first, attempts: undefined, pendingMs: undefined }, {
      name: NAME, kind: 'disk', uuid: r.uuid, id: r.id, recorded: true, reason: 'waiting', attempts: undefined, pendingMs: undefined,
    });
    assert.ok(Number(first.attempts) >= 1);
    // Announced only once the guest held the device for another unplug timeout.
    assert.ok(Number(first.pendingMs) >= UNPLUG_MS, `announced after ${String(first.pendingMs)} ms`);
    // Every attempt of the finisher leaves a line (debug when not announced): after five, count the warnings.
    const lines = (): Array<{ level: number; msg: string }> => r.d.log().split('\n').filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; device?: string; msg: string }).filter((l) => l.device === r.id && l.msg.startsWith('pending removal'));
    await untilDaemon(r.d, 'five attempts never came', () => lines().length >= 5);
    const seen = lines();
    const warnings = seen.filter((l) => l.level === 40);
    assert.ok(warnings.length >= 1, 'no warning logged');
    assert.ok(warnings.every((w) => /the guest still has not released the device/.test(w.msg)), JSON.stringify(warnings));
    assert.ok(warnings.length < seen.length, `a warning on every attempt (${warnings.length} of ${seen.length})`);
    // Every warning went out as a notification too.
    await untilDaemon(r.d, 'a notification per warning never came', () => pendingNotes().length >= warnings.length);
    assert.equal(pendingNotes().length, warnings.length);
    const v = await r.c.call<{ pending: Array<{ id: string }> }>('instance.verify', { name: NAME });
    assert.deepEqual(v.pending.map((p) => p.id), [r.id]);
  });

  it('makes migration.start refuse before anything moves, naming the device and what to do', async () => {
    const r = await pendingRig();
    const file = readFileSync(r.store.path(NAME));
    await assert.rejects(r.c.call('migration.start', { name: NAME, uri: `unix:${join(r.dir, 'run', 'target.sock')}` }), (e: RpcCallError) => {
      const data = e.data as { code?: string; device?: string; pending?: unknown };
      assert.equal(data.code, 'GKD_MIGRATION_REFUSED', e.message);
      assert.equal(data.device, r.id);
      assert.deepEqual(data.pending, [{ kind: 'disk', id: r.id, uuid: r.uuid, recorded: true }]);
      assert.match(e.message, new RegExp(`removal of disk "${r.id}" is still pending`));
      assert.match(e.message, /Wait for the guest to release it .* and retry; nothing was moved/);
      return true;
    });
    // Nothing moved: QEMU never started a migration, the runtime file and the pending entry are as they were.
    assert.equal((await r.vm.qmp.execute<{ status?: string }>('query-migrate')).status, undefined);
    assert.deepEqual(readFileSync(r.store.path(NAME)), file);
    assert.deepEqual((await new Journal(r.store.dir).read(NAME)).map((e) => [e.op, e.id]), [['pending', r.id]]);
  });
});
