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
 * hold. At the migration points the source QEMU (source points) or the
 * target QEMU (migration-target:launched) is killed instead, and the
 * surviving daemon's answer and both sides must be what the verdict rules
 * of docs/migration.md describe. Two shutdowns (SIGTERM, short grace) cut a
 * migration and a batch of hot-adds. A journal left for a QEMU that died is
 * dropped, never applied, when instance.start writes the runtime file for a
 * new one; the start-up comparison of runtime
 * files with their QEMUs is checked to report and not repair. The count of
 * crash points and the longest time to convergence (restart to a clean
 * answer) are printed in one line.
 *
 * The QEMU is paused without an OS: SCSI disks are removed at once, PCI
 * NICs never (no guest answers the eject), which is what the NIC removal
 * cases exercise.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpConnections } from '../../../plugin/hotplug';
import { acceptMigration, findLeaks, verifyInstance, type MigrationContext } from '../../../plugin/migration';
import { buildArgv, deviceId, planInstance } from '../../../plugin/planner';
import { prepareRunDir } from '../../../plugin/process/host-facts';
import { RpcCallError, RpcClient } from '../../../plugin/rpc';
import { Journal, RuntimeStore } from '../../../plugin/runtime';
import type { InstanceSpec } from '../../../plugin/types';
import { crashSummary, type Convergence } from '../../helpers/crash-summary';
import { startDaemonInstance } from '../../helpers/daemon-guest';
import { localize, makeImage } from '../../helpers/plan-vm';
import { startQemu, useQemuCleanup, type TestQemu } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';
import { userBackends } from '../../helpers/migration-pair';
import { spawnDaemon, tempDir, type DaemonProcess } from '../rpc/daemon-process';

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

/** The instance under test, paused; `maxmem` (MiB) sizes what a migration has to send. */
async function rig(maxmem?: number): Promise<Rig> {
  const spec = makeSpec({ name: NAME, disks: 2, nics: 2, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', nic_type: 'paravirtual' } });
  if (maxmem !== undefined) spec.beparams = { ...spec.beparams, maxmem };
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

/** The stable code of a daemon error (`GKD_…`), or its JSON-RPC code when it has none. */
function codeOf(e: unknown): string {
  if (e instanceof RpcCallError) return String((e.data as { code?: string } | undefined)?.code ?? e.code);
  throw e;
}

async function callCode(c: RpcClient, op: Op): Promise<string> {
  try {
    await c.call(op.method, op.params);
    return 'ok';
  } catch (e) {
    return codeOf(e);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

/** Waits (up to `ms`) until `pred` holds; fails naming `what` otherwise. */
async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A migration target of the rig's instance: accepted (runtime file written, argv built) on a node dir of its own. */
interface Target {
  vm: TestQemu;
  ctx: MigrationContext;
  incoming: string;
  /** The target's QMP socket for the daemon (the test talks over a monitor of its own). */
  qmp: string;
  close(): Promise<void>;
}

async function acceptedTarget(r: Rig): Promise<Target> {
  // Started by the test with a monitor of its own, so the target socket stays free for the daemon.
  const dstDir = join(r.dir, 'dst');
  mkdirSync(join(dstDir, 'conf'), { recursive: true });
  prepareRunDir(join(dstDir, 'run'));
  const pool = new QmpConnections();
  const ctx: MigrationContext = { store: new RuntimeStore(join(dstDir, 'conf')), connections: pool, qmpSocket: () => join(r.dir, 'run', 'ctrl', 'target.qmp'), node: { accel: 'tcg', runDir: join(dstDir, 'run') } };
  const sent = (await r.store.read(NAME)).upgraded;
  const incoming = `unix:${join(r.dir, 'run', 'mig.sock')}`;
  const acc = await acceptMigration(ctx, { name: NAME, runtime: sent, incoming, build: { nicBackends: userBackends(sent) } });
  const vm = await startQemu(acc.argv);
  return {
    vm, ctx, incoming, qmp: acc.qmp,
    close: async () => {
      await pool.closeAll();
      await vm.stop();
    },
  };
}

/** Waits until a migration target has left `inmigrate` (it loaded the state, or failed and exited). */
async function settled(vm: TestQemu): Promise<void> {
  await waitUntil(async () => vm.qmp.closed || (await vm.qmp.execute<{ status: string }>('query-status').catch(() => ({ status: 'gone' }))).status !== 'inmigrate', 'the target to leave inmigrate');
}

type StartOutcome = { ok: true; result: { status: string; target: { confirmed: boolean } } } | { ok: false; code: string; error: RpcCallError };

/**
 * The source QEMU died at `boundary` of migration.start, the daemon went on: what it answered must be
 * what the verdict rules of docs/migration.md give for what each side showed, and the target must be
 * in the state that answer describes. The target keeps its runtime file whatever happened (a failed
 * migration's target file is the caller's to remove, instance.cleanup), so no QEMU runs without one.
 */
async function afterSourceDied(boundary: 'journaled' | 'started' | 'completed', outcome: StartOutcome, t: Target): Promise<void> {
  const shown = JSON.stringify(outcome.ok ? outcome.result : { code: outcome.code, message: outcome.error.message, data: outcome.error.data });
  assert.ok(existsSync(t.ctx.store.path(NAME)), 'the target keeps its runtime file');
  if (boundary === 'journaled') {
    // Dead before `migrate`: the migration failed, saying the source's QEMU exited before it started
    // and nothing was sent to the target, which is left waiting (a target still "inmigrate" after a
    // source that sent nothing is left alone); nothing is ambiguous.
    assert.equal(outcome.ok, false, shown);
    if (outcome.ok) return;
    assert.equal(outcome.code, 'GKD_MIGRATION_FAILED', shown);
    assert.match(outcome.error.message, /the source's QEMU exited before the migration started .*the target was sent nothing/, shown);
    const data = outcome.error.data as { source: { status: string; resumed: boolean }; ambiguous: boolean };
    assert.deepEqual([data.source.status, data.source.resumed, data.ambiguous], ['exited', false, false], shown);
    assert.equal((await t.vm.qmp.execute<{ status: string }>('query-status')).status, 'inmigrate');
    assert.equal((await t.vm.qmp.execute<{ status?: string }>('query-migrate')).status, undefined, 'no stream reached the target');
    return;
  }
  if (boundary === 'started') {
    // Dead in the middle of the stream: the final status is unknown, so the guest may have been handed
    // over; the verdict depends on the target. A target whose stream broke exits: then it is safe and
    // says so. A target that never saw the stream stays "inmigrate": then the answer is ambiguous.
    assert.equal(outcome.ok, false, shown);
    if (outcome.ok) return;
    assert.equal(outcome.code, 'GKD_MIGRATION_FAILED', shown);
    const data = outcome.error.data as { source: { migration: string; resumed: boolean }; target: { checked: boolean; status: string }; ambiguous: boolean };
    assert.equal(data.source.migration, 'unknown', shown);
    assert.equal(data.source.resumed, false, 'a dead source is never reported resumed');
    assert.equal(data.target.checked, true, shown);
    if (data.ambiguous) {
      assert.equal(data.target.status, 'inmigrate', shown);
      assert.equal((await t.vm.qmp.execute<{ status: string }>('query-status')).status, 'inmigrate', 'an ambiguous answer leaves the target as it was');
    } else {
      assert.equal(data.target.status, 'exited', shown);
      await t.vm.exited;
    }
    return;
  }
  // Dead after it said completed: the target has the whole state and is judged on its own, as documented
  // (the source is the caller's to stop anyway once a migration succeeded).
  assert.equal(outcome.ok, true, shown);
  assert.ok(outcome.ok && outcome.result.status === 'completed' && outcome.result.target.confirmed, shown);
  await settled(t.vm);
  assert.equal((await verifyInstance(t.ctx, NAME)).clean, true, 'the target agrees with its runtime file');
}

describe('crash recovery (daemon or QEMU killed at every step boundary, real QEMU)', function () {
  this.timeout(120_000);
  useQemuCleanup();
  const results: Convergence[] = [];

  after(() => console.log(`      ${crashSummary(results)}`));

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

  for (const killQemu of [false, true]) {
    for (const boundary of ['journaled', 'started', 'completed'] as const) {
      const point = `migration-source:${boundary}`;
      const title = killQemu
        ? `source QEMU killed at ${point}: the surviving daemon reports what each side showed, the journal closes, no QEMU is left without its runtime file`
        : `killed at ${point}: the restart reports the migration, the journal closes, both sides agree with their files`;
      it(title, async () => {
        const r = await rig();
        const t = await acceptedTarget(r);
        const journal = join(r.dir, 'conf', `.${NAME}.journal`);
        const params = { name: NAME, uri: t.incoming, targetQmp: t.qmp };
        try {
          let outcome: StartOutcome | undefined;
          if (killQemu) {
            const d1 = await spawnDaemon({ dir: r.dir, env: { ...roots(r.dir), GKD_FAULT_POINT: point, GKD_FAULT_KILL_PID: String(r.vm.pid) } });
            const c1 = await RpcClient.connect(d1.socket);
            outcome = await c1.call<{ status: string; target: { confirmed: boolean } }>('migration.start', params).then(
              (result) => ({ ok: true as const, result }),
              (e: RpcCallError) => ({ ok: false as const, code: codeOf(e), error: e }),
            );
            await c1.close();
            await r.vm.exited;
            // The daemon outlived its QEMU and reached a verdict: it closed the entry itself.
            assert.equal(existsSync(journal), false, `the entry is closed with the verdict: ${JSON.stringify(outcome)}`);
            assert.equal(await d1.stop(), 0, d1.log().slice(-2000));
          } else {
            await callDyingAt(await daemon(r, point), point, 'migration.start', params);
          }

          const t0 = Date.now();
          const d2 = await daemon(r);
          const c2 = await RpcClient.connect(d2.socket);
          try {
            if (killQemu) {
              // The source is gone: verify says so (the socket does not answer) instead of calling it clean.
              await assert.rejects(c2.call('instance.verify', { name: NAME }), (e: RpcCallError) => codeOf(e) === 'GKD_QMP_CONNECT');
              await afterSourceDied(boundary, outcome!, t);
            } else {
              const v = await c2.call<{ clean: boolean; differences: unknown[]; leaks: unknown[] }>('instance.verify', { name: NAME });
              assert.deepEqual(v.differences, [], d2.log().slice(-3000));
              assert.equal(v.clean, true);
              if (boundary !== 'journaled') assert.match(d2.log(), /a migration to unix:.* was interrupted; the source's migration status is \\"(active|completed|device)\\"/);
              // QEMU finishes (or never started) the migration on its own: the target is either still
              // waiting or has the guest, and agrees with its runtime file once it has it.
              const srcMig = (await r.vm.qmp.execute<{ status?: string }>('query-migrate')).status;
              if (boundary === 'journaled') assert.equal(srcMig, undefined, 'nothing was started');
              else {
                await settled(t.vm);
                assert.equal((await verifyInstance(t.ctx, NAME)).clean, true, 'target agrees with its runtime file');
              }
            }
            assert.equal(existsSync(journal), false, 'the migration entry was closed');
            results.push({ point: `${killQemu ? 'qemu' : 'daemon'} ${point}`, ms: Date.now() - t0 });
          } finally {
            await c2.close().catch(() => undefined);
            await d2.stop();
          }
        } finally {
          await t.close();
          await r.vm.stop();
        }
      });
    }
  }

  for (const [boundary, launch] of [['written', false], ['launched', true]] as const) {
    const point = `migration-target:${boundary}`;
    it(`daemon killed at ${point}${launch ? ' (launch mode)' : ''}: the retried accept is not refused, the target agrees with its file`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'gkd-crash-target-'));
      const spec = localize(makeSpec({ name: NAME, disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual' } }), dir);
      // The daemon runs only the QEMU binaries its configuration lists (the default one here).
      spec.hvparams = { ...spec.hvparams, kvm_path: '/usr/bin/qemu-system-x86_64' };
      const runtime = planInstance(spec).runtime;
      const params = { name: NAME, runtime, incoming: `unix:${join(dir, 'run', 'mig.sock')}`, nicBackends: userBackends(runtime) };
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

  // The target QEMU at the target's points: at `written` none exists yet (the caller, or launch mode right
  // after the point, starts it), so `launched` is the one point with a target QEMU to kill. The daemon
  // learns its pid from the pid file it gives QEMU (GKD_FAULT_KILL_PIDFILE).
  it('target QEMU killed at migration-target:launched (launch mode): the accept fails leaving nothing, the source stays as it was, the retry migrates', async () => {
    const r = await rig();
    // Inside the source's run dir: the unix: migration socket must lie under both daemons' run dirs.
    const dstDir = join(r.dir, 'run', 'dst');
    const pidFile = join(dstDir, 'run', 'pid', NAME);
    const sent = (await r.store.read(NAME)).upgraded;
    // The daemon runs only the QEMU binaries its configuration lists (the default one here), by full path.
    sent[0][0] = '/usr/bin/qemu-system-x86_64';
    const incoming = `unix:${join(dstDir, 'run', 'mig.sock')}`;
    const params = { name: NAME, runtime: sent, incoming, nicBackends: userBackends(sent) };
    const args = ['--launch', '--accel', 'tcg'];
    const src = await daemon(r);
    const a = await RpcClient.connect(src.socket);
    const d1 = await spawnDaemon({ dir: dstDir, args, env: { ...roots(r.dir), GKD_FAULT_POINT: 'migration-target:launched', GKD_FAULT_KILL_PIDFILE: pidFile } });
    let d2: DaemonProcess | undefined;
    let b: RpcClient | undefined;
    try {
      const b1 = await RpcClient.connect(d1.socket);
      await assert.rejects(b1.call('migration.accept', params), (e: RpcCallError) => {
        assert.notEqual(codeOf(e), 'GKD_MIGRATION_REFUSED', e.message);
        return true;
      });
      await b1.close();
      assert.equal(d1.child.exitCode, null, 'the target daemon outlived its QEMU');
      // Nothing is left on the target: no runtime file (the accept removed it), no journal entry, no QEMU.
      assert.equal(existsSync(join(dstDir, 'conf', `${NAME}.runtime`)), false, 'the failed accept removed its runtime file');
      assert.equal(existsSync(join(dstDir, 'conf', `.${NAME}.journal`)), false, 'the accept entry was closed');
      const killed = Number(readFileSync(pidFile, 'utf8').trim());
      assert.throws(() => process.kill(killed, 0), /ESRCH/, 'the killed target QEMU is gone');

      // The source, asked to migrate to the dead target anyway, fails and stays as it was (paused), verify clean.
      await assert.rejects(a.call('migration.start', { name: NAME, uri: incoming }), (e: RpcCallError) => {
        assert.equal(codeOf(e), 'GKD_MIGRATION_FAILED', e.message);
        assert.equal((e.data as { ambiguous: boolean }).ambiguous, false, e.message);
        return true;
      });
      assert.equal((await r.vm.qmp.execute<{ status: string }>('query-status')).status, 'prelaunch', 'the paused source stays paused');
      assert.equal((await a.call<{ clean: boolean }>('instance.verify', { name: NAME })).clean, true, 'the source verifies clean');

      // The target daemon restarted: its start-up finds nothing to adopt; the retried accept and the migration go through.
      await d1.stop();
      const t0 = Date.now();
      d2 = await spawnDaemon({ dir: dstDir, args, env: roots(r.dir) });
      b = await RpcClient.connect(d2.socket);
      const acc = await b.call<{ launched: boolean }>('migration.accept', params);
      results.push({ point: 'qemu migration-target:launched', ms: Date.now() - t0 });
      assert.equal(acc.launched, true);
      assert.doesNotMatch(d2.log(), /adopted a QEMU/);
      assert.equal((await a.call<{ status: string }>('migration.start', { name: NAME, uri: incoming })).status, 'completed');
      assert.equal((await b.call<{ clean: boolean }>('instance.verify', { name: NAME })).clean, true, 'the target verifies clean');
    } finally {
      await b?.close().catch(() => undefined);
      await a.close().catch(() => undefined);
      // Stopping the target daemon stops the QEMU it launched.
      await d2?.stop();
      await d1.stop();
      await src.stop();
      await r.vm.stop();
    }
  });

  it('daemon stopped (SIGTERM) during migration.start: the entry stays open, the next start reports the interruption and closes it, both sides end as the verdict rules describe', async () => {
    // 1 GiB of guest RAM: even all-zero pages make a stream larger than the socket buffers, so a target
    // that stops reading keeps the migration "active" for as long as the test holds it.
    const r = await rig(1024);
    const t = await acceptedTarget(r);
    const journal = join(r.dir, 'conf', `.${NAME}.journal`);
    try {
      t.vm.kill('SIGSTOP');
      // A short grace: shutdown cuts the migration's connections instead of waiting for it.
      const d1 = await spawnDaemon({ dir: r.dir, env: { ...roots(r.dir), GKD_SHUTDOWN_GRACE_MS: '200' } });
      const c1 = await RpcClient.connect(d1.socket);
      // No targetQmp: the stopped target must not be asked anything (as across nodes).
      const call = c1.call('migration.start', { name: NAME, uri: t.incoming }).then(() => 'answered', (e: Error) => e.message);
      await waitUntil(async () => (await r.vm.qmp.execute<{ status?: string }>('query-migrate')).status === 'active', 'the stream to run');
      assert.ok(existsSync(journal), 'the running migration is journaled');
      assert.equal(await d1.stop('SIGTERM'), 0, d1.log().slice(-2000));
      assert.match(await call, /Connection to the daemon closed|shutting down/, 'the call ends with the daemon, without a verdict');
      await c1.close().catch(() => undefined);
      assert.ok(existsSync(journal), `shutdown cut the migration before its verdict: the entry stays open for the next start\n${d1.log().slice(-2000)}`);
      t.vm.kill('SIGCONT');

      const t0 = Date.now();
      const d2 = await daemon(r);
      try {
        await waitUntil(() => /start-up recovery done/.test(d2.log()), 'the start-up recovery');
        assert.match(d2.log(), /a migration to unix:.* was interrupted; the source's migration status is \\"(active|completed)\\"/);
        assert.equal(existsSync(journal), false, 'the reconcile closed the entry');
        results.push({ point: 'daemon SIGTERM during migration.start', ms: Date.now() - t0 });
        // Nothing was cancelled behind the caller's back: QEMU finishes the stream by itself, and both
        // sides end as a successful migration leaves them: the source "postmigrate" (the caller's to
        // stop), the target with the guest, agreeing with its runtime file.
        await settled(t.vm);
        await waitUntil(async () => (await r.vm.qmp.execute<{ status?: string }>('query-migrate')).status === 'completed', 'the source to complete');
        assert.equal((await r.vm.qmp.execute<{ status: string }>('query-status')).status, 'postmigrate');
        assert.equal((await t.vm.qmp.execute<{ status?: string }>('query-migrate')).status, 'completed');
        assert.equal((await verifyInstance(t.ctx, NAME)).clean, true, 'the target agrees with its runtime file');
      } finally {
        await d2.stop();
      }
    } finally {
      t.vm.kill('SIGCONT');
      await t.close();
      await r.vm.stop();
    }
  });

  it('daemon stopped (SIGTERM) in the middle of a batch of hot-adds: after the restart the runtime file and QEMU agree, nothing leaked, every answer holds', async () => {
    const r = await rig();
    // Where the shutdown lands is not chosen: 14 adds (up to the 16 disks an instance may have) run one
    // at a time, and the SIGTERM goes out when the first has answered, so some are done, one may be
    // between its QMP steps and the rest wait in the queue. A grace of 1 ms makes the shutdown abort what
    // waits and cut the connection of the add under way rather than wait for it. Whatever it hit, the
    // invariant below must hold.
    const disks = Array.from({ length: 14 }, (_, i) => ({ uuid: uuidN(0xd0 + i), mode: 'rw', path: makeImage(join(r.dir, `batch${i}.raw`)) }));
    const d1 = await spawnDaemon({ dir: r.dir, env: { ...roots(r.dir), GKD_SHUTDOWN_GRACE_MS: '1' } });
    const c1 = await RpcClient.connect(d1.socket);
    let firstAnswer!: () => void;
    const answered = new Promise<void>((res) => (firstAnswer = res));
    const answers = disks.map((disk) =>
      c1.call('disk.add', { name: NAME, disk }).then(
        () => 'ok',
        // The connection closing under a call rejects it without a code: no answer came.
        (e: Error) => (e instanceof RpcCallError && !/Connection to the daemon closed/.test(e.message) ? codeOf(e) : 'no answer'),
      ).finally(() => firstAnswer()),
    );
    await answered;
    assert.equal(await d1.stop('SIGTERM'), 0, d1.log().slice(-2000));
    const codes = await Promise.all(answers);
    await c1.close().catch(() => undefined);
    assert.ok(codes.some((c) => c !== 'ok'), `the shutdown came after the whole batch, so it tested nothing: ${codes.join(' ')}`);
    assert.deepEqual([...new Set(codes)].filter((c) => !['ok', 'GKD_CANCELLED', 'GKD_SHUTTING_DOWN', 'no answer'].includes(c)), [], `unexpected answers: ${codes.join(' ')}\n${d1.log().slice(-3000)}`);
    // Every add had reached the daemon (the first was answered), and those waiting in the queue are
    // answered GKD_CANCELLED before the connection closes: only the one under way can go unanswered.
    assert.ok(codes.filter((c) => c === 'no answer').length <= 1, `queued adds left unanswered: ${codes.join(' ')}`);

    const t0 = Date.now();
    const d2 = await daemon(r);
    const c2 = await RpcClient.connect(d2.socket);
    try {
      const v = await c2.call<{ clean: boolean; differences: unknown[]; leaks: unknown[]; pending: unknown[] }>('instance.verify', { name: NAME });
      results.push({ point: 'daemon SIGTERM during a batch of disk.add', ms: Date.now() - t0 });
      assert.deepEqual(v.differences, [], `drift after the shutdown: ${JSON.stringify(v.differences)}\n${d2.log().slice(-3000)}`);
      assert.deepEqual(v.leaks, []);
      assert.deepEqual(v.pending, []);
      assert.equal(v.clean, true);
      assert.deepEqual(await findLeaks(r.vm.qmp), [], 'no block node named like ours dangles in QEMU');
      assert.equal(existsSync(join(r.dir, 'conf', `.${NAME}.journal`)), false, 'no journal entry is left open');
      // Every answer holds: an add reported done is recorded (and, verify being clean, in QEMU); one
      // cancelled before it started left nothing. One whose answer was lost went either way.
      const recorded = new Set((await r.store.read(NAME)).upgraded[3].map((e) => e[0].uuid));
      disks.forEach((disk, i) => {
        if (codes[i] === 'ok') assert.ok(recorded.has(disk.uuid), `add ${i} was answered ok but is not recorded`);
        if (codes[i] === 'GKD_CANCELLED' || codes[i] === 'GKD_SHUTTING_DOWN') assert.ok(!recorded.has(disk.uuid), `add ${i} was answered ${codes[i]} but is recorded`);
      });
      // Nothing is refused forever: each add asked again completes, or finds its disk already there.
      for (const [i, disk] of disks.entries()) {
        assert.equal(await callCode(c2, { method: 'disk.add', params: { name: NAME, disk } }), recorded.has(disk.uuid) ? 'GKD_DEVICE_EXISTS' : 'ok', `retry of add ${i} (first answer ${codes[i]})`);
      }
      assert.equal((await r.store.read(NAME)).upgraded[3].length, 2 + disks.length);
      assert.equal((await c2.call<{ clean: boolean }>('instance.verify', { name: NAME })).clean, true, 'clean after the retries');
    } finally {
      await c2.close().catch(() => undefined);
      await d2.stop();
      await r.vm.stop();
    }
  });

  it('instance.start for a new QEMU drops the dead QEMU\'s journal unapplied: a removal left open and a pending one are not carried over to the new QEMU\'s devices of the same ids', async () => {
    const r = await rig();
    const disk = r.spec.disks[1].uuid;
    const diskId = deviceId('disk', disk, 'disk');
    const nicId = 'nic-00002001-66a8-4e6d';
    const journal = new Journal(r.store.dir);
    const ids = async (): Promise<Array<[string, string | undefined]>> => (await journal.read(NAME)).map((e) => [e.op, e.id]);
    // The daemon that lives on: it watches a NIC removal the paused guest never acknowledges.
    const d = await daemon(r);
    const c = await RpcClient.connect(d.socket);
    let vm: TestQemu | undefined;
    try {
      assert.equal(await callCode(c, ops(r)['nic-remove']), 'GKD_HOTPLUG_PENDING');
      assert.deepEqual((await c.call<{ pending: Array<{ id: string }> }>('instance.verify', { name: NAME })).pending.map((p) => p.id), [nicId]);
      // A second daemon on the same dirs, killed right after its device_del of a disk (SCSI: gone at once).
      const killed = await spawnDaemon({
        dir: tempDir('gkd-crash-start-'),
        args: ['--runtime-dir', join(r.dir, 'conf'), '--run-dir', join(r.dir, 'run')],
        env: { ...roots(r.dir), GKD_UNPLUG_TIMEOUT_MS: '1000', GKD_FAULT_POINT: 'disk-remove:requested' },
      });
      await callDyingAt(killed, 'disk-remove:requested', 'disk.remove', { name: NAME, uuid: disk });
      assert.deepEqual(await ids(), [['pending', nicId], ['remove', diskId]], 'both entries are open');

      // The QEMU dies (a crash, a stop without the hooks); Ganeti starts the instance again, on the
      // same sockets, with the same devices: the new QEMU has a disk and a NIC of those very ids.
      r.vm.kill();
      await r.vm.exited;
      const spec = localize(r.spec, r.dir);
      spec.hvparams = { ...spec.hvparams, kvm_path: '/usr/bin/qemu-system-x86_64' };
      await c.call('instance.start', { instance: spec, replace: true });
      const stored = (await r.store.read(NAME)).upgraded;
      const runDir = join(r.dir, 'run');
      vm = await startQemu(buildArgv(stored, { accel: 'tcg', runDir, qmp: join(runDir, 'ctrl', `${NAME}.qmp`), paused: true, nicBackends: userBackends(stored) }));

      const v = await c.call<{ clean: boolean; differences: unknown[]; leaks: unknown[]; pending: unknown[] }>('instance.verify', { name: NAME });
      const peripherals = (await vm.qmp.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' })).map((p) => p.name);
      assert.ok(peripherals.includes(diskId), `the new QEMU lost disk ${diskId}: ${peripherals.join(' ')}`);
      assert.ok(peripherals.includes(nicId), `the new QEMU lost NIC ${nicId}`);
      assert.deepEqual([v.differences, v.leaks, v.pending, v.clean], [[], [], [], true], d.log().slice(-3000));
      assert.equal(existsSync(journal.path(NAME)), false, 'the journal of the dead QEMU is gone');
      const rt = (await r.store.read(NAME)).upgraded;
      assert.ok(rt[3].some((e) => e[0].uuid === disk), 'the disk is recorded');
      assert.ok(rt[1].some((n) => n.uuid === r.spec.nics[1].uuid), 'the NIC is recorded');
      // The new QEMU, still paused, never acknowledges a NIC unplug: a watch left on the old removal would
      // stay listed. Nothing of it comes back, even after the finisher's first retries.
      await sleep(1000);
      assert.deepEqual((await c.call<{ pending: unknown[] }>('instance.verify', { name: NAME })).pending, []);
      assert.ok((await vm.qmp.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' })).some((p) => p.name === nicId));
      // Said, not silent: one warning names both dropped entries.
      const lines = d.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; method?: string });
      const dropped = lines.filter((l) => /journal of the previous QEMU .* dropped unapplied/.test(l.msg));
      assert.equal(dropped.length, 1, d.log().slice(-3000));
      assert.equal(dropped[0].level, 40, 'logged at warn');
      assert.equal(dropped[0].method, 'instance.start');
      assert.match(dropped[0].msg, new RegExp(`pending nic "${nicId}".*remove disk "${diskId}" \\(step device_del`));
      assert.match(dropped[0].msg, /1 pending removal\(s\) of it no longer watched/);
    } finally {
      await c.close().catch(() => undefined);
      await d.stop();
      await vm?.stop();
      await r.vm.stop();
    }
  });

  it('start-up recovery compares each runtime file with its live QEMU and reports what differs, repairing nothing', async () => {
    const r = await rig();
    const conf = join(r.dir, 'conf');
    const file = join(conf, `${NAME}.runtime`);
    const id = String(((await r.store.read(NAME)).upgraded[3][1][0].hvinfo as { id?: string }).id);
    // Behind the daemon's back: the second disk unplugged (SCSI goes at once), and a block node named
    // like ours added that no device uses (what a crashed add leaves).
    const node = 'disk-000000ee-b6e5-4243';
    await r.vm.qmp.execute('device_del', { id });
    await waitUntil(async () => !(await r.vm.qmp.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' })).some((p) => p.name === id), 'the unplug');
    await r.vm.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': node, file: { driver: 'file', filename: r.image } });
    const leakNames = async (): Promise<string[]> => (await findLeaks(r.vm.qmp)).map((l) => l.name);
    assert.ok((await leakNames()).includes(node), 'the added node is a leak');
    // A second runtime file whose QEMU does not run (no socket): nothing to compare, nothing reported.
    writeFileSync(join(conf, 'ghost.example.com.runtime'), readFileSync(file));
    const before = readFileSync(file, 'utf8');

    const d = await daemon(r);
    try {
      await waitUntil(() => /start-up recovery done/.test(d.log()), 'the start-up recovery');
      const lines = d.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const reports = lines.filter((l) => l.msg === 'runtime file and QEMU differ; not repaired (run instance.verify with repair)');
      assert.deepEqual(reports.map((l) => l.instance), [NAME], d.log());
      assert.match(JSON.stringify(reports[0].differences), new RegExp(`"${id}"`), 'the unplugged disk is named');
      // The unplugged disk's own node is let go by QEMU a moment after the device: it may be listed too.
      const reported = (reports[0].leaks as Array<{ name: string }>).map((l) => l.name);
      assert.ok(reported.includes(node), `the left-over node is named: ${reported.join(' ')}`);
      const done = lines.find((l) => l.msg === 'start-up recovery done');
      assert.equal(done?.instances, 2);
      assert.equal(done?.differing, 1);
      assert.ok(!d.log().includes('ghost.example.com'), 'a runtime file without a live QEMU is not compared');
      // Reported, not repaired: the file is as it was, QEMU still lacks the disk and still has the node.
      assert.equal(readFileSync(file, 'utf8'), before);
      assert.ok((await leakNames()).includes(node));
      assert.ok(!(await r.vm.qmp.execute<Array<{ name: string }>>('qom-list', { path: '/machine/peripheral' })).some((p) => p.name === id));
    } finally {
      await d.stop();
      await r.vm.stop();
    }
  });

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

