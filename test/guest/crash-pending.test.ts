/**
 * Pending removals survive a daemon crash. A booted guest releases a
 * virtio-blk disk some time after device_del; the real daemon (child
 * process) answers GKD_HOTPLUG_PENDING under a 1 ms unplug wait and is
 * killed (test-only fault points) when it has just recorded the removal as
 * pending, right after its background finisher deleted the block node, or
 * right after it dropped the runtime entry. The restarted daemon finishes
 * the removal in its first reconcile: QEMU, the runtime file and the guest
 * agree, no block node is left, nothing is listed pending.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findLeaks } from '../../plugin/migration';
import { RpcCallError, RpcClient } from '../../plugin/rpc';
import { crashSummary, type Convergence } from '../helpers/crash-summary';
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

  for (const point of ['disk-pending:journaled', 'disk-finish:backend', 'disk-finish:recorded']) {
    it(`daemon killed at ${point}: the restarted daemon finishes the removal, none is lost`, async () => {
      const kit = guestKit();
      const spec = makeSpec({ name: NAME, disks: 2, nics: 0, hvparams: { disk_type: 'paravirtual', ...guestHvparams(kit), reboot_behavior: 'exit' } });
      spec.beparams = { ...spec.beparams, maxmem: 256 };
      const { vm, dir, store, con } = await startDaemonGuest(spec);
      try {
        await con.waitReady(60_000);
        const roots = { GKD_STORAGE_ROOTS: `${dir}:/dev/`, GKD_KERNEL_ROOTS: `${dirname(kit.kernel)}/` };
        const d1 = await spawnDaemon({ dir, env: { ...roots, GKD_UNPLUG_TIMEOUT_MS: '1', GKD_FAULT_POINT: point } });
        const c1 = await RpcClient.connect(d1.socket);
        const uuid = spec.disks[1].uuid;
        await assert.rejects(c1.call('disk.remove', { name: NAME, uuid }), (e: Error) => {
          if (point === 'disk-pending:journaled') assert.match(e.message, /Connection to the daemon closed/);
          else assert.equal((e as RpcCallError).code, 4003, e.message);
          return true;
        });
        // The background finisher reaches its fault point once the guest lets go.
        for (let i = 0; i < 300 && d1.child.exitCode === null && d1.child.signalCode === null; i++) await new Promise((r) => setTimeout(r, 100));
        await c1.close().catch(() => undefined);
        assert.equal(d1.child.signalCode, 'SIGKILL', `the daemon did not reach ${point}: ${d1.log().slice(-2000)}`);
        assert.ok(existsSync(join(dir, 'conf', `.${NAME}.journal`)), 'the pending removal is in the journal');

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
          assert.deepEqual((await store.read(NAME)).upgraded[3].map((e) => e[0].uuid), [spec.disks[0].uuid]);
          assert.equal(existsSync(join(dir, 'conf', `.${NAME}.journal`)), false, 'the journal entry was closed');
          const st = await con.state();
          assert.deepEqual(st.block.sort(), ['vda'], 'the guest has only the first disk');
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
