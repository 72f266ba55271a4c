/**
 * Crash recovery on real QEMU: the real daemon (a child process) is killed
 * with SIGKILL at every step boundary of disk and NIC hot-add and
 * hot-remove and of migration.start on the source (test-only fault
 * points, GKD_FAULT_POINT, see plugin/fault-point.ts), then started again. In every case, within the one
 * reconcile the next call runs first:
 * - instance.verify is clean: the runtime file and QEMU agree, and no block
 *   node or netdev named like ours is left attached to nothing;
 * - a removal that is still pending is listed, never lost;
 * - the operation is not refused forever: asked again, it completes (or, for
 *   a NIC removal on a paused VM whose guest never acknowledges, answers
 *   pending again).
 * The same step boundaries are run again with QEMU killed there instead
 * (GKD_FAULT_KILL_PID): the daemon goes on, QEMU is started again from the
 * runtime file as Ganeti would, the daemon is restarted, and the same must
 * hold. The count of crash points and the longest time to convergence
 * (restart to a clean verify) are printed.
 *
 * The QEMU is paused without an OS: SCSI disks are removed at once, PCI
 * NICs never (no guest answers the eject), which is what the NIC removal
 * cases exercise.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpConnections } from '../../../plugin/hotplug';
import { acceptMigration, findLeaks, verifyInstance, type MigrationContext } from '../../../plugin/migration';
import { buildArgv, planInstance } from '../../../plugin/planner';
import { prepareRunDir } from '../../../plugin/process/host-facts';
import { RpcCallError, RpcClient } from '../../../plugin/rpc';
import { RuntimeStore } from '../../../plugin/runtime';
import type { InstanceSpec } from '../../../plugin/types';
import { startDaemonInstance } from '../../helpers/daemon-guest';
import { localize, makeImage } from '../../helpers/plan-vm';
import { startQemu, useQemuCleanup, type TestQemu } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';
import { userBackends } from '../../helpers/migration-pair';
import { spawnDaemon, type DaemonProcess } from '../rpc/daemon-process';

const NAME = 'crash1.example.com';
const NEW_DISK = uuidN(0xc1);
const NEW_NIC = uuidN(0xc2, '66a8-4e6d-8b7e-ec4f69751396');

interface Rig {
  vm: TestQemu;
  dir: string;
  store: RuntimeStore;
  spec: InstanceSpec;
  image: string;
}

async function rig(): Promise<Rig> {
  const spec = makeSpec({ name: NAME, disks: 2, nics: 2, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', nic_type: 'paravirtual' } });
  const { vm, dir, store } = await startDaemonInstance(spec, { paused: true });
  return { vm, dir, store, spec, image: makeImage(join(dir, 'new.raw')) };
}

/** The daemon's confinement: the test's images live in its temp dir. */
function roots(dir: string): Record<string, string> {
  return { GKD_STORAGE_ROOTS: `${dir}:/dev/` };
}

function daemon(r: Rig, fault?: string): Promise<DaemonProcess> {
  return spawnDaemon({
    dir: r.dir,
    env: { ...roots(r.dir), GKD_UNPLUG_TIMEOUT_MS: '1000', ...(fault === undefined ? {} : { GKD_FAULT_POINT: fault }) },
  });
}

type Op = { method: string; params: Record<string, unknown> };

function ops(r: Rig): Record<string, Op> {
  return {
    'disk-add': { method: 'disk.add', params: { name: NAME, disk: { uuid: NEW_DISK, mode: 'rw', path: r.image } } },
    'nic-add': { method: 'nic.add', params: { name: NAME, nic: { uuid: NEW_NIC, mac: macN(0xc2), backend: { type: 'user' } } } },
    'disk-remove': { method: 'disk.remove', params: { name: NAME, uuid: r.spec.disks[1].uuid } },
    'nic-remove': { method: 'nic.remove', params: { name: NAME, uuid: r.spec.nics[1].uuid } },
  };
}

/** The crash points, per operation (the names plugin/fault-point.ts documents). */
const POINTS: Array<[keyof ReturnType<typeof ops>, string[]]> = [
  ['disk-add', ['journaled', 'backend', 'device', 'verified', 'recorded']],
  ['nic-add', ['journaled', 'backend', 'device', 'verified', 'recorded']],
  ['disk-remove', ['journaled', 'requested', 'gone', 'backend', 'recorded']],
  // A paused VM never acknowledges a PCI unplug: the removal goes pending.
  ['nic-remove', ['journaled', 'requested']],
  ['nic-pending', ['journaled']],
];

/**
 * Calls `method` on daemon `d`, whose fault point `point` kills it during
 * the call: the call dies with the daemon, and the daemon did reach the point.
 */
async function callDyingAt(d: DaemonProcess, point: string, method: string, params: Record<string, unknown>): Promise<void> {
  const c = await RpcClient.connect(d.socket);
  await assert.rejects(c.call(method, params), (e: Error) => {
    assert.match(e.message, /Connection to the daemon closed/, 'the call must die with the daemon');
    return true;
  });
  await c.close().catch(() => undefined);
  await d.stop();
  assert.equal(d.child.signalCode, 'SIGKILL', `the daemon did not reach ${point}: ${d.log().slice(-2000)}`);
}

async function callCode(c: RpcClient, op: Op): Promise<string> {
  try {
    await c.call(op.method, op.params);
    return 'ok';
  } catch (e) {
    if (e instanceof RpcCallError) return String((e.data as { code?: string } | undefined)?.code ?? e.code);
    throw e;
  }
}

describe('crash recovery (daemon or QEMU killed at every step boundary, real QEMU)', function () {
  this.timeout(120_000);
  useQemuCleanup();
  const results: Array<{ point: string; ms: number }> = [];

  after(() => {
    if (results.length === 0) return;
    const worst = results.reduce((a, b) => (b.ms > a.ms ? b : a));
    console.log(`      ${results.length} crash points injected; longest time to convergence ${worst.ms} ms (${worst.point})`);
  });

  for (const killQemu of [false, true]) {
    for (const [opName, boundaries] of POINTS) {
      for (const boundary of boundaries) {
        const point = `${opName}:${boundary}`;
        const label = killQemu ? `QEMU killed at ${point}, restarted from the runtime file, daemon restarted` : `daemon killed at ${point}`;
        it(`${label}: one reconcile brings QEMU and the runtime file back in agreement`, async () => {
          const r = await rig();
          let vm = r.vm;
          const op = ops(r)[opName === 'nic-pending' ? 'nic-remove' : opName];
          const d1 = await spawnDaemon({
            dir: r.dir,
            env: { ...roots(r.dir), GKD_UNPLUG_TIMEOUT_MS: '1000', GKD_FAULT_POINT: point, ...(killQemu ? { GKD_FAULT_KILL_PID: String(vm.pid) } : {}) },
          });
          if (killQemu) {
            const c1 = await RpcClient.connect(d1.socket);
            // The daemon survives; the call ends however the dead QEMU lets it (an error, or done).
            await c1.call(op.method, op.params).catch(() => undefined);
            await c1.close();
            await vm.exited;
            await d1.stop();
            assert.notEqual(d1.child.signalCode, 'SIGKILL');
            // As Ganeti would: a new QEMU from the runtime file, on the same sockets.
            const stored = (await r.store.read(NAME)).upgraded;
            const runDir = join(r.dir, 'run');
            vm = await startQemu(buildArgv(stored, { accel: 'tcg', runDir, qmp: join(runDir, 'ctrl', `${NAME}.qmp`), paused: true, nicBackends: userBackends(stored) }));
          } else {
            await callDyingAt(d1, point, op.method, op.params);
          }

          const t0 = Date.now();
          const d2 = await daemon(r);
          const c2 = await RpcClient.connect(d2.socket);
          try {
            // After a daemon kill its lock is still there: the repair must take it over (its holder is gone)
            // and answer for real. `differences` and `leaks` are what was found before any repair, so
            // anything the reconcile left behind still fails the test.
            const v = await c2.call<{ clean: boolean; differences: unknown[]; leaks: unknown[]; pending: Array<{ id: string }> }>('instance.verify', { name: NAME, ...(killQemu ? {} : { repair: true }) });
            const ms = Date.now() - t0;
            assert.deepEqual(v.differences, [], `drift after ${label}: ${JSON.stringify(v.differences)}\n${d2.log().slice(-3000)}`);
            assert.deepEqual(v.leaks, [], `leaks after ${label}`);
            assert.equal(v.clean, true);
            // What QEMU has, seen on the test's own monitor: nothing named like ours dangles.
            assert.deepEqual(await findLeaks(vm.qmp), []);
            results.push({ point: `${killQemu ? 'qemu' : 'daemon'} ${point}`, ms });

            const rt = (await r.store.read(NAME)).upgraded;
            if (opName === 'disk-add' || opName === 'nic-add') {
              const uuid = opName === 'disk-add' ? NEW_DISK : NEW_NIC;
              const has = (opName === 'disk-add' ? rt[3].map((e) => e[0].uuid) : rt[1].map((n) => n.uuid)).includes(uuid);
              // Rolled forward (recorded) or back (absent); either way the add can be asked again and settles.
              const again = await callCode(c2, op);
              assert.equal(again, has ? 'GKD_DEVICE_EXISTS' : 'ok', `retry of ${opName} after ${label}`);
            } else if (opName === 'disk-remove') {
              const has = rt[3].some((e) => e[0].uuid === r.spec.disks[1].uuid);
              if (has) assert.equal(await callCode(c2, op), 'ok', `retry of the removal after ${label}`);
              assert.equal((await r.store.read(NAME)).upgraded[3].length, 1);
            } else {
              // The NIC is still in QEMU (no guest lets go) and still recorded; its removal is pending, not lost.
              assert.ok(v.pending.some((p) => p.id === 'nic-00002001-66a8-4e6d'), `pending removal lost after ${label}: ${JSON.stringify(v.pending)}`);
              assert.equal(await callCode(c2, op), 'GKD_HOTPLUG_PENDING');
            }
            const v2 = await c2.call<{ clean: boolean }>('instance.verify', { name: NAME });
            assert.equal(v2.clean, true, 'clean after the retry');
          } finally {
            await c2.close().catch(() => undefined);
            await d2.stop();
            await vm.stop();
            await r.vm.stop();
          }
        });
      }
    }
  }

  for (const boundary of ['journaled', 'started', 'completed']) {
    const point = `migration-source:${boundary}`;
    it(`killed at ${point}: the restart reports the migration, the journal closes, both sides agree with their files`, async () => {
      const r = await rig();
      // The target: accepted (runtime file written, argv built) on a node of its own, started by the
      // test with a monitor of its own so the target socket stays free for the daemon.
      const dstDir = join(r.dir, 'dst');
      mkdirSync(join(dstDir, 'conf'), { recursive: true });
      prepareRunDir(join(dstDir, 'run'));
      const dstPool = new QmpConnections();
      const dstCtx: MigrationContext = { store: new RuntimeStore(join(dstDir, 'conf')), connections: dstPool, qmpSocket: () => join(r.dir, 'run', 'ctrl', 'target.qmp'), node: { accel: 'tcg', runDir: join(dstDir, 'run') } };
      const sent = (await r.store.read(NAME)).upgraded;
      const incoming = `unix:${join(r.dir, 'mig.sock')}`;
      const acc = await acceptMigration(dstCtx, { name: NAME, runtime: sent, incoming, build: { nicBackends: userBackends(sent) } });
      const target = await startQemu(acc.argv);
      try {
        await callDyingAt(await daemon(r, point), point, 'migration.start', { name: NAME, uri: incoming, targetQmp: acc.qmp });

        const t0 = Date.now();
        const d2 = await daemon(r);
        const c2 = await RpcClient.connect(d2.socket);
        try {
          const v = await c2.call<{ clean: boolean; differences: unknown[]; leaks: unknown[] }>('instance.verify', { name: NAME });
          results.push({ point, ms: Date.now() - t0 });
          assert.deepEqual(v.differences, [], d2.log().slice(-3000));
          assert.equal(v.clean, true);
          assert.equal(existsSync(join(r.dir, 'conf', `.${NAME}.journal`)), false, 'the migration entry was closed');
          if (boundary !== 'journaled') assert.match(d2.log(), /a migration to unix:.* was interrupted; the source's migration status is \\"(active|completed|device)\\"/);
          // QEMU finishes (or never started) the migration on its own: the target is either still
          // waiting or has the guest, and agrees with its runtime file once it has it.
          const srcMig = (await r.vm.qmp.execute<{ status?: string }>('query-migrate')).status;
          if (boundary === 'journaled') assert.equal(srcMig, undefined, 'nothing was started');
          else {
            for (let i = 0; i < 100 && (await target.qmp.execute<{ status: string }>('query-status')).status === 'inmigrate'; i++) await new Promise((res) => setTimeout(res, 50));
            assert.equal((await verifyInstance(dstCtx, NAME)).clean, true, 'target agrees with its runtime file');
          }
        } finally {
          await c2.close().catch(() => undefined);
          await d2.stop();
        }
      } finally {
        await dstPool.closeAll();
        await target.stop();
        await r.vm.stop();
      }
    });
  }

  for (const [boundary, launch] of [['written', false], ['launched', true]] as const) {
    const point = `migration-target:${boundary}`;
    it(`daemon killed at ${point}${launch ? ' (launch mode)' : ''}: the retried accept is not refused, the target agrees with its file`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'gkd-crash-target-'));
      const spec = localize(makeSpec({ name: NAME, disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual' } }), dir);
      // The daemon runs only the QEMU binaries its configuration lists (the default one here).
      spec.hvparams = { ...spec.hvparams, kvm_path: '/usr/bin/qemu-system-x86_64' };
      const runtime = planInstance(spec).runtime;
      const params = { name: NAME, runtime, incoming: `unix:${join(dir, 'mig.sock')}`, nicBackends: userBackends(runtime) };
      const args = launch ? ['--launch', '--accel', 'tcg'] : ['--accel', 'tcg'];
      await callDyingAt(await spawnDaemon({ dir, args, env: { ...roots(dir), GKD_FAULT_POINT: point } }), point, 'migration.accept', params);
      assert.ok(existsSync(join(dir, 'conf', `${NAME}.runtime`)), 'the dead accept left its runtime file');

      const t0 = Date.now();
      const d2 = await spawnDaemon({ dir, args, env: roots(dir) });
      const c2 = await RpcClient.connect(d2.socket);
      try {
        if (launch) {
          // The target QEMU outlived the daemon: adopted, its runtime file kept, and it agrees with it.
          const v = await c2.call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name: NAME });
          results.push({ point, ms: Date.now() - t0 });
          assert.deepEqual(v.differences, [], d2.log().slice(-3000));
          assert.equal(v.clean, true);
          assert.match(d2.log(), /adopted a QEMU/);
          // A second accept is refused: the daemon runs the (adopted) target.
          await assert.rejects(c2.call('migration.accept', params), (e: RpcCallError) => e.code === 5004 && /already runs it/.test(e.message));
        } else {
          // Nothing runs the file the dead accept wrote: the retry reconciles it away and is accepted.
          const r = await c2.call<{ argv: string[] }>('migration.accept', params);
          results.push({ point, ms: Date.now() - t0 });
          assert.ok(r.argv.includes('-incoming'));
          assert.match(d2.log(), /no QEMU serves the target; the runtime file it wrote was removed/);
        }
        assert.equal(existsSync(join(dir, 'conf', `.${NAME}.journal`)), false, 'the journal entry was closed');
      } finally {
        await c2.close().catch(() => undefined);
        await d2.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('the rig itself: without a fault point every operation completes and nothing is killed', async () => {
    const r = await rig();
    const d = await daemon(r);
    const c = await RpcClient.connect(d.socket);
    try {
      for (const k of ['disk-add', 'nic-add', 'disk-remove'] as const) assert.equal(await callCode(c, ops(r)[k]), 'ok', k);
      assert.equal(await callCode(c, ops(r)['nic-remove']), 'GKD_HOTPLUG_PENDING');
      assert.equal((await c.call<{ clean: boolean }>('instance.verify', { name: NAME })).clean, true);
    } finally {
      await c.close();
      await d.stop();
      assert.equal(d.child.signalCode, null);
    }
  });
});

