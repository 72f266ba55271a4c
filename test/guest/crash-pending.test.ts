/**
 * Removals survive a daemon crash. A booted guest releases a virtio disk
 * or NIC some time after device_del; the real daemon (child process) is
 * killed (test-only fault points) at each step boundary of the removal:
 * after device_del, once QEMU reported the device gone, after the backend
 * was deleted, after the runtime entry was dropped; and, with a 1 ms unplug
 * wait so that it answers GKD_HOTPLUG_PENDING, when it has just recorded
 * the removal as pending, right after its background finisher deleted the
 * backend, or right after it dropped the runtime entry. The restarted
 * daemon finishes the removal in its first reconcile: QEMU, the runtime
 * file and the guest agree, no block node or netdev is left, nothing is
 * listed pending.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findLeaks } from '../../plugin/migration';
import { RpcCallError, RpcClient } from '../../plugin/rpc';
import { crashSummary, type Convergence } from '../helpers/crash-summary';
import { DeviceDeletedLog } from '../helpers/device-deleted';
import { guestHvparams, guestKit } from '../helpers/guest';
import { startDaemonGuest } from '../helpers/daemon-guest';
import { useQemuCleanup } from '../helpers/qemu';
import { makeSpec } from '../helpers/specs';
import { spawnDaemon } from '../integration/rpc/daemon-process';

const NAME = 'crash2.example.com';

describe('crash recovery of pending removals (booted guest, real daemon)', function () {
  this.timeout(180_000);
  useQemuCleanup();
  const results: Convergence[] = [];

  after(() => console.log(`      ${crashSummary(results)}`));

  // The removal's own boundaries need the guest to answer within the call; the pending ones a 1 ms wait.
  const POINTS: Array<[kind: 'disk' | 'nic', boundary: string]> = [];
  for (const kind of ['disk', 'nic'] as const) {
    for (const b of ['remove:requested', 'remove:gone', 'remove:backend', 'remove:recorded', 'pending:journaled', 'finish:backend', 'finish:recorded']) POINTS.push([kind, b]);
  }

  for (const [kind, boundary] of POINTS) {
    const point = `${kind}-${boundary}`;
    const pendingPath = !boundary.startsWith('remove:');
    it(`daemon killed at ${point}: the restarted daemon finishes the removal, none is lost`, async () => {
      const kit = guestKit();
      const spec = makeSpec({ name: NAME, disks: kind === 'disk' ? 2 : 1, nics: kind === 'nic' ? 2 : 0, hvparams: { disk_type: 'paravirtual', nic_type: 'paravirtual', ...guestHvparams(kit), reboot_behavior: 'exit' } });
      spec.beparams = { ...spec.beparams, maxmem: 256 };
      const { vm, dir, store, con } = await startDaemonGuest(spec);
      try {
        await con.waitReady(60_000);
        const roots = { GKD_STORAGE_ROOTS: `${dir}:/dev/`, GKD_KERNEL_ROOTS: `${dirname(kit.kernel)}/` };
        const d1 = await spawnDaemon({ dir, env: { ...roots, GKD_UNPLUG_TIMEOUT_MS: pendingPath ? '1' : '60000', GKD_FAULT_POINT: point } });
        const c1 = await RpcClient.connect(d1.socket);
        const uuid = kind === 'disk' ? spec.disks[1].uuid : spec.nics[1].uuid;
        const rt0 = (await store.read(NAME)).upgraded;
        const devId = String((kind === 'disk' ? rt0[3][1][0].hvinfo : rt0[1][1].hvinfo)?.id);
        const deleted = new DeviceDeletedLog(vm.qmp);
        await assert.rejects(c1.call(`${kind}.remove`, { name: NAME, uuid }), (e: Error) => {
          if (!pendingPath || boundary === 'pending:journaled') assert.match(e.message, /Connection to the daemon closed/);
          else assert.equal((e as RpcCallError).code, 4003, e.message);
          return true;
        });
        // The background finisher reaches its fault point once the guest lets go.
        for (let i = 0; i < 300 && d1.child.exitCode === null && d1.child.signalCode === null; i++) await new Promise((r) => setTimeout(r, 100));
        await c1.close().catch(() => undefined);
        assert.equal(d1.child.signalCode, 'SIGKILL', `the daemon did not reach ${point}: ${d1.log().slice(-2000)}`);
        assert.ok(existsSync(join(dir, 'conf', `.${NAME}.journal`)), 'the removal is in the journal');
        // Every boundary comes after device_del; at the first ones the guest may not have let go yet,
        // and the restarted daemon's reconcile waits only a moment for it. Started once the guest has,
        // its first reconcile must finish the removal.
        await deleted.waitFor(devId, 60_000);

        const t0 = Date.now();
        const d2 = await spawnDaemon({ dir, env: roots });
        const c2 = await RpcClient.connect(d2.socket);
        try {
          const v = await c2.call<{ clean: boolean; differences: unknown[]; leaks: unknown[]; pending: unknown[] }>('instance.verify', { name: NAME });
          results.push({ point: `daemon ${point}`, ms: Date.now() - t0 });
          assert.deepEqual(v.differences, [], d2.log().slice(-3000));
          assert.deepEqual(v.pending, []);
          assert.equal(v.clean, true);
          assert.deepEqual(await findLeaks(vm.qmp), []);
          const rt = (await store.read(NAME)).upgraded;
          if (kind === 'disk') assert.deepEqual(rt[3].map((e) => e[0].uuid), [spec.disks[0].uuid]);
          else assert.deepEqual(rt[1].map((n) => n.uuid), [spec.nics[0].uuid]);
          assert.equal(existsSync(join(dir, 'conf', `.${NAME}.journal`)), false, 'the journal entry was closed');
          const st = await con.state();
          if (kind === 'disk') assert.deepEqual(st.block.sort(), ['vda'], 'the guest has only the first disk');
          else assert.deepEqual(st.net.map((n) => n.mac.toLowerCase()), [spec.nics[0].mac.toLowerCase()], 'the guest has only the first NIC');
        } finally {
          await c2.close().catch(() => undefined);
          await d2.stop();
        }
      } finally {
        con.close();
        await vm.stop();
      }
    });
  }
});
