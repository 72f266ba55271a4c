/**
 * A daemon shutdown (SIGTERM) with hot-adds queued on one instance behind an
 * operation already running, through the real daemon on real (paused) QEMU:
 * - each queued call's caller gets its answer, GKD_CANCELLED (JSON-RPC code
 *   6005), over its still-open connection, not a connection closed under it;
 * - the running operation keeps the drain behaviour: it finishes within the
 *   shutdown grace and its caller gets its real answer; with a grace shorter
 *   than the operation, it is cut off when the grace ends (its caller sees
 *   the connection close) and the next start reconciles it, while the queued
 *   callers still got their GKD_CANCELLED;
 * - after a restart none of the cancelled adds was applied: neither the
 *   runtime file nor QEMU has their disks, nothing leaked.
 * The running operation is a NIC removal: a paused VM without an OS never
 * acknowledges the PCI unplug, so it runs for the whole unplug timeout and
 * then answers GKD_HOTPLUG_PENDING.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { findLeaks } from '../../../plugin/migration';
import { deviceId } from '../../../plugin/planner';
import { RpcCallError, RpcClient } from '../../../plugin/rpc';
import { Journal } from '../../../plugin/runtime';
import { startDaemonInstance } from '../../helpers/daemon-guest';
import { makeImage } from '../../helpers/plan-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';
import { spawnDaemon, untilDaemon, type DaemonProcess } from './daemon-process';

const NAME = 'shutdown1.example.com';
/**
 * How long the NIC removal runs before it answers pending, ms: long enough for the adds to be queued
 * behind it and the SIGTERM sent on a slow machine, inside the drain case's grace, past the short one.
 */
const UNPLUG_MS = 8000;
/** The drain case's grace, ms: set here rather than left to the default, which must not decide the test. */
const DRAIN_GRACE_MS = 20_000;
/** The hot-adds queued behind it. */
const QUEUED = 3;

/** The stable code of an answer: 'ok', the GKD code with its JSON-RPC code, or what ended the call without one. */
async function answerOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    // The connection closing under a call rejects it too, without a code: no answer came.
    if (e instanceof RpcCallError && !/Connection to the daemon closed/.test(e.message)) return `${String((e.data as { code?: string } | undefined)?.code)} ${e.code}`;
    return `no answer: ${(e as Error).message}`;
  }
}

describe('daemon shutdown with operations queued on an instance (real daemon, real QEMU)', function () {
  this.timeout(120_000);
  useQemuCleanup();
  const daemons: DaemonProcess[] = [];
  const clients: RpcClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    for (const d of daemons.splice(0)) await d.stop();
  });

  for (const graceMs of [undefined, 1000]) {
    const title = graceMs === undefined
      ? `with a grace (${DRAIN_GRACE_MS} ms) longer than the running operation: answers each queued hot-add GKD_CANCELLED before closing its connection, drains the running operation, and applies none of them`
      : `with a grace (${graceMs} ms) shorter than the running operation: the queued hot-adds are still answered GKD_CANCELLED, the running one is cut off, none is applied`;
    it(title, () => queuedAtShutdown(graceMs));
  }

  async function queuedAtShutdown(graceMs: number | undefined): Promise<void> {
    const spec = makeSpec({ name: NAME, disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', nic_type: 'paravirtual' } });
    const { vm, dir, store } = await startDaemonInstance(spec, { paused: true });
    const env = { GKD_STORAGE_ROOTS: `${dir}:/dev/`, GKD_UNPLUG_TIMEOUT_MS: String(UNPLUG_MS) };
    const d1 = await spawnDaemon({ dir, env: { ...env, GKD_SHUTDOWN_GRACE_MS: String(graceMs ?? DRAIN_GRACE_MS) } });
    daemons.push(d1);
    const connect = async (d: DaemonProcess): Promise<RpcClient> => {
      const c = await RpcClient.connect(d.socket);
      clients.push(c);
      return c;
    };

    // The running operation: its journal entry is written inside the instance's turn.
    const journal = new Journal(store.dir);
    const running = answerOf((await connect(d1)).call('nic.remove', { name: NAME, uuid: spec.nics[0].uuid }));
    await untilDaemon(d1, 'the NIC removal never started', async () => (await journal.read(NAME)).some((e) => e.op === 'remove'), 20);

    // Each queued add from a caller of its own; each reaches the daemon before the SIGTERM (a call
    // the daemon already took but not yet queued is cancelled the same way).
    const disks = Array.from({ length: QUEUED }, (_, i) => ({ uuid: uuidN(0xe0 + i), mode: 'rw', path: makeImage(join(dir, `queued${i}.raw`)) }));
    const queued: Array<Promise<string>> = [];
    for (const disk of disks) {
      const c = await connect(d1);
      queued.push(answerOf(c.call('disk.add', { name: NAME, disk })));
      await c.call('runtime.get', { name: NAME });
    }
    assert.equal(await d1.stop('SIGTERM'), 0, d1.log().slice(-3000));

    const answers = await Promise.all(queued);
    assert.deepEqual(answers, disks.map(() => 'GKD_CANCELLED 6005'), `queued adds: ${answers.join(' | ')}\n${d1.log().slice(-3000)}`);
    const lines = d1.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string; method?: string; outcome?: string });
    assert.deepEqual(lines.filter((l) => l.msg === 'call' && l.method === 'disk.add').map((l) => l.outcome), disks.map(() => 'GKD_CANCELLED'));
    const cut = lines.some((l) => l.msg === 'shutdown grace over, aborting calls');
    if (graceMs === undefined) {
      // Already running when the shutdown began: waited for, answered for real.
      assert.equal(await running, 'GKD_HOTPLUG_PENDING 4003');
      assert.equal(cut, false, 'the running removal was cut off instead of drained');
    } else {
      assert.match(await running, /^no answer: Connection to the daemon closed \(1001/);
      assert.equal(cut, true);
    }

    // Restarted: none of the cancelled adds is in the runtime file or in QEMU, nothing leaked.
    const d2 = await spawnDaemon({ dir, env });
    daemons.push(d2);
    const v = await (await connect(d2)).call<{ clean: boolean; differences: unknown[]; leaks: unknown[] }>('instance.verify', { name: NAME });
    assert.deepEqual([v.differences, v.leaks, v.clean], [[], [], true], d2.log().slice(-3000));
    const recorded = new Set((await store.read(NAME)).upgraded[3].map((e) => e[0].uuid));
    assert.deepEqual(disks.filter((disk) => recorded.has(disk.uuid)).map((disk) => disk.uuid), [], 'a cancelled add is recorded');
    const peripherals = new Set((await vm.qmp.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' })).map((p) => p.name));
    assert.deepEqual(disks.map((disk) => deviceId('disk', disk.uuid, 'disk')).filter((id) => peripherals.has(id)), [], 'a cancelled add is in QEMU');
    assert.deepEqual(await findLeaks(vm.qmp), []);
    await vm.stop();
  }
});
