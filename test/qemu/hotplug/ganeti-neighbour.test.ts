/**
 * The plugin is a good neighbour on Ganeti's QMP socket. QEMU's `-qmp`
 * serves one client at a time, and Ganeti's own client gives up after 5 s
 * ("Timeout while receiving a QMP message"). So while each plugin operation
 * runs on the very socket Ganeti uses, an independent client (standing in
 * for Ganeti: connect, greeting, qmp_capabilities, one command, close) must
 * get its greeting and its answer well within those 5 s, again and again.
 *
 * The 5 s is Ganeti's functional limit, not a performance target: the
 * assertion is that no wait reaches it. The longest wait seen is printed.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { QmpConnections } from '../../../plugin/hotplug';
import { acceptMigration, startMigration, verifyInstance, type MigrationContext } from '../../../plugin/migration';
import { QmpClient } from '../../../plugin/qmp';
import { startHotplugVm } from '../../helpers/hotplug-vm';
import { startSource, useMigrationLab, userBackends, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec } from '../../helpers/specs';
import { rejectsWithCode } from '../../helpers/gkd-assert';

/** Ganeti's QMP client timeout. */
const GANETI_LIMIT_MS = 5_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A second, independent QMP client that keeps connecting to `sock`, asking one thing and leaving. */
function ganetiLike(sock: string): { stop(): Promise<{ rounds: number; maxWaitMs: number }> } {
  let running = true;
  let rounds = 0;
  let maxWaitMs = 0;
  const loop = (async () => {
    while (running) {
      const t0 = Date.now();
      // A budget far above Ganeti's, so a wait that would have failed Ganeti is measured, not cut short.
      const c = await QmpClient.connect(sock, { connectTimeoutMs: 20_000, timeoutMs: 20_000 });
      await c.execute('query-status');
      await c.close();
      maxWaitMs = Math.max(maxWaitMs, Date.now() - t0);
      rounds++;
      await sleep(30);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { rounds, maxWaitMs };
    },
  };
}

/** Runs `op` while a Ganeti-like client hammers `sock`; asserts every one of its waits stayed under Ganeti's limit. */
async function whileGanetiCalls<T>(label: string, sock: string, op: () => Promise<T>, minRounds = 5): Promise<T> {
  const g = ganetiLike(sock);
  let result: T;
  try {
    result = await op();
  } finally {
    const { rounds, maxWaitMs } = await g.stop();
    console.log(`      ${label}: ${rounds} Ganeti-like calls, longest wait ${maxWaitMs} ms`);
    assert.ok(maxWaitMs < GANETI_LIMIT_MS, `${label}: a Ganeti-like client waited ${maxWaitMs} ms (Ganeti gives up at ${GANETI_LIMIT_MS})`);
    assert.ok(rounds >= minRounds, `${label}: only ${rounds} calls got through during the operation`);
  }
  return result;
}

describe('a good neighbour on the QMP socket Ganeti uses', function () {
  this.timeout(120_000);
  useQemuCleanup();

  it('instance.verify, a disk removal the guest never acknowledges, and its pending finish leave Ganeti its monitor', async () => {
    // Paused, no guest: a virtio-blk unplug is never acknowledged. The unplug wait is longer than
    // Ganeti's limit, so holding the monitor through it would fail Ganeti.
    const h = await startHotplugVm(makeSpec({ disks: 2, nics: 1 }), { engine: { unplugTimeoutMs: 6_000 } });
    const sock = join(h.vm.dir, 'engine.qmp');
    const ctx: MigrationContext = { store: h.store, connections: h.connections, qmpSocket: () => sock };
    try {
      await whileGanetiCalls('instance.verify (repeated for 2 s)', sock, async () => {
        const end = Date.now() + 2_000;
        let n = 0;
        while (Date.now() < end) {
          assert.equal((await verifyInstance(ctx, h.name)).clean, true);
          assert.equal((await verifyInstance(ctx, h.name, { repair: true })).clean, true);
          n++;
        }
        assert.ok(n > 2);
      });

      const uuid = h.plan.runtime[3][1][0].uuid as string;
      await whileGanetiCalls('disk.remove waiting 6 s for a guest that never releases', sock, () => rejectsWithCode(h.engine.removeDisk(h.name, uuid), 'GKD_HOTPLUG_PENDING'));
      assert.equal(h.connections.isOpen(sock), false, 'no connection kept after the pending answer');

      await whileGanetiCalls('the pending removal being finished in the background (4 s)', sock, async () => {
        await sleep(4_000);
        assert.equal(h.engine.pending().length, 1, 'still pending: the guest never released it');
      });
    } finally {
      h.engine.stop();
      await h.close();
    }
  });

  describe('migration', () => {
    let lab!: MigrationLab;
    let src!: TestNode;
    let dst!: TestNode;
    useMigrationLab((l) => {
      lab = l;
      src = l.node('src');
      dst = l.node('dst');
    });

    it('the drift check of migration.start, refused or passed, and a short migration leave Ganeti its monitor', async () => {
      const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual', migration_bandwidth: 10_000, migration_downtime: 100 } }));
      const sock = src.qmpSocket(s.name);
      // Drift (the file puts the disk at another slot): every migration.start is refused after its check.
      const sent = (await src.store.read(s.name)).upgraded;
      const drifted = structuredClone(sent);
      (drifted[3][0][0].hvinfo as { addr: string }).addr = '0x1e';
      await src.store.write(s.name, drifted);
      await whileGanetiCalls('migration.start drift check (refused, repeated for 2 s)', sock, async () => {
        const end = Date.now() + 2_000;
        while (Date.now() < end) await rejectsWithCode(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'never.sock')}` }), 'GKD_DRIFT');
      });
      await src.store.write(s.name, sent);

      const acc = await acceptMigration(dst.ctx, { name: s.name, runtime: sent, incoming: `unix:${join(lab.root, 'mig.sock')}`, launch: true, build: { nicBackends: userBackends(sent) } });
      const res = await whileGanetiCalls(
        'migration.start (check, migrate, verdict)',
        sock,
        () => startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp: acc.qmp }),
        1,
      );
      assert.equal(res.status, 'completed');
      assert.equal((src.pool as QmpConnections).isOpen(sock), false, 'the source connection is closed after the verdict');
    });
  });
});
