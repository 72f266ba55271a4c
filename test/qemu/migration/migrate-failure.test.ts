/**
 * Migrations that must fail: a target whose layout differs from the source
 * dies while loading ("Unknown savevm section or instance …"). Without the
 * return-path capability QEMU 7.2's running source still reports
 * `completed`; startMigration turns it on, so the failure shows on the
 * source even when no target QMP socket is given, and judges on the target
 * when one is. The source must be left as it was (resumed when it was
 * running) only when nothing else can run the guest: with a target socket
 * that is not the real target, neither side is resumed. Also: the instance
 * lock keeps hotplug and migration apart, and a QMP fault in the progress
 * loop cancels the migration (that fault is injected at the QMP client
 * boundary, over real QEMU on both sides: QEMU cannot be made to fail or
 * time out one `query-migrate` on cue).
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { GkdError } from '../../../plugin/errors';
import { HotplugEngine } from '../../../plugin/hotplug';
import { acceptMigration, startMigration, type MigrationProgress } from '../../../plugin/migration';
import type { QmpClient } from '../../../plugin/qmp';
import { useMigrationLab, startSource, userBackends, type MigrationLab, type SourceVm, type TestNode } from '../../helpers/migration-pair';
import { makeImage } from '../../helpers/plan-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';

const FAST = { migration_bandwidth: 10_000, migration_downtime: 100 };

async function status(qmp: QmpClient): Promise<string> {
  return (await qmp.execute<{ status: string }>('query-status')).status;
}

describe('startMigration() failures', function () {
  this.timeout(60_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let src: TestNode;
  let dst: TestNode;
  useMigrationLab((l) => {
    lab = l;
    src = l.node('src');
    dst = l.node('dst');
  });

  /** A target started by acceptMigration on `node` from the source's runtime, minus its last disk when `short`. */
  async function acceptOn(node: TestNode, s: SourceVm, sock: string, short: boolean): Promise<string> {
    const sent = (await src.store.read(s.name)).upgraded;
    const rt = structuredClone(sent);
    if (short) rt[3].pop();
    const r = await acceptMigration(node.ctx, { name: s.name, runtime: rt, incoming: `unix:${join(lab.root, sock)}`, launch: true, build: { nicBackends: userBackends(sent) } });
    return r.qmp;
  }

  /**
   * src's migration context with the source's QMP `execute` replaced by `wrap(real, command, args…)`:
   * fault injection at the client boundary, over real QEMU on both sides.
   */
  function sourceFaults(s: SourceVm, wrap: (real: (...a: unknown[]) => Promise<unknown>, command: string, ...rest: unknown[]) => Promise<unknown>) {
    const realUse = src.ctx.connections.use.bind(src.ctx.connections);
    return {
      ...src.ctx,
      connections: {
        use<T>(socket: string, fn: (c: QmpClient) => Promise<T>): Promise<T> {
          if (socket !== src.qmpSocket(s.name)) return realUse(socket, fn);
          return realUse(socket, (client) => fn(new Proxy(client, {
            get(t, prop) {
              const v = Reflect.get(t, prop, t) as unknown;
              if (prop !== 'execute') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
              const real = (...a: unknown[]): Promise<unknown> => (t.execute as (...x: unknown[]) => Promise<unknown>).call(t, ...a);
              return (command: string, ...rest: unknown[]) => wrap(real, command, ...rest);
            },
          })));
        },
      },
    };
  }

  type FailureData = {
    source: { status: string; migration: string; resumed: boolean };
    target: { checked: boolean; status?: string; stopped?: boolean };
    ambiguous: boolean;
  };

  /** QEMU's paused states a source that was not running may be left in. */
  const PAUSED = ['prelaunch', 'postmigrate'];

  for (const withTargetQmp of [true, false]) {
    for (const running of [false, true]) {
      it(`reports a target that lacks a device as failed ${withTargetQmp ? 'with' : 'without'} targetQmp, the source ${running ? 'running again' : 'still paused'}`, async () => {
        // A running source needs no guest here: SeaBIOS finds nothing to boot and idles, which is enough for QEMU to migrate as "running".
        const s = await startSource(src, makeSpec({ disks: 2, nics: 1, hvparams: { disk_type: 'paravirtual', ...FAST } }), { paused: !running });
        assert.equal(await status(s.vm.qmp), running ? 'running' : 'prelaunch');
        const targetQmp = await acceptOn(dst, s, 'mig.sock', true);
        const target = dst.launched[0];
        const params = { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, ...(withTargetQmp ? { targetQmp } : {}) };
        let data!: FailureData;
        await assert.rejects(startMigration(src.ctx, params), (e: GkdError) => {
          assert.equal(e.code, 'GKD_MIGRATION_FAILED', e.message);
          data = e.data as FailureData;
          assert.equal(data.ambiguous, false, e.message);
          assert.equal(data.target.checked, withTargetQmp);
          if (withTargetQmp) assert.equal(data.target.status, 'exited');
          assert.match(e.message, /^Cannot migrate instance "inst1\.example\.com" to "unix:.*mig\.sock": source said "(completed|failed)"/);
          assert.match(e.message, withTargetQmp ? /; the target('s incoming migration failed| QEMU exited)/ : /; target not checked \(no target QMP socket given\);/);
          assert.match(e.message, running ? /the source is running again$/ : /the source stays "(prelaunch|postmigrate)"$/);
          // return-path: the source itself saw the failure, never a "completed" without a target.
          if (!withTargetQmp) assert.equal(data.source.migration, 'failed');
          return true;
        });
        // The target really is gone, for the reason QEMU gives.
        await target.exited;
        assert.match(target.stderr(), /Unknown savevm section or instance '0000:00:0d\.0\/virtio-blk'/);
        const after = await status(s.vm.qmp);
        assert.equal(data.source.status, after, 'the error reports the state the source is in');
        if (running) assert.equal(after, 'running');
        else {
          assert.ok(PAUSED.includes(after), after);
          assert.equal(data.source.resumed, false, 'a paused source is never resumed');
        }
      });
    }
  }

  it('resumes neither side when the target socket given is not where the stream went (two running copies otherwise)', async () => {
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual', ...FAST } }), { paused: false });
    // The real target listens on mig.sock; a second waiting QEMU of the same instance on another node is named instead.
    const realQmp = await acceptOn(dst, s, 'mig.sock', false);
    const other = lab.node('other');
    const decoyQmp = await acceptOn(other, s, 'other.sock', false);
    let data!: FailureData;
    await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp: decoyQmp, settleMs: 1_000 }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_FAILED', e.message);
      data = e.data as FailureData;
      assert.equal(data.ambiguous, true);
      assert.match(e.message, /source said "completed"; the target at ".*" is still "inmigrate", so the state may have gone to another QEMU that now runs the guest; it was left as it is; neither side was resumed \(the source is "postmigrate"\): find out which QEMU runs the guest before resuming or stopping either$/);
      return true;
    });
    assert.equal(data.source.resumed, false);
    assert.equal(await status(s.vm.qmp), 'postmigrate', 'the source was not resumed');
    assert.equal(await dst.pool.use(realQmp, status), 'running', 'the real target runs the guest');
    assert.equal(await other.pool.use(decoyQmp, status), 'inmigrate', 'the decoy was not stopped');
  });

  it('cancels the migration and resumes the source when a QMP command fails in the progress loop', async () => {
    // Fault injection at the client boundary: real QEMU on both sides, but the source's third
    // query-migrate fails as a timed-out command would. QEMU cannot be made to time out one command on cue.
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual', migration_bandwidth: 1 } }), { paused: false });
    const targetQmp = await acceptOn(dst, s, 'mig.sock', false);
    let queries = 0;
    const ctx = sourceFaults(s, (real, command, ...rest) => {
      if (command === 'query-migrate' && ++queries === 3) {
        return Promise.reject(new GkdError('GKD_QMP_TIMEOUT', 'QEMU did not answer "query-migrate" within 10000 ms'));
      }
      return real(command, ...rest);
    });
    let data!: FailureData;
    await assert.rejects(startMigration(ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_FAILED', e.message);
      data = e.data as FailureData;
      assert.match(e.message, /source said "cancelled" \(lost track of the migration \(QEMU did not answer "query-migrate" within 10000 ms\); migrate_cancel sent\)/);
      assert.match(e.message, /the source is running again$/);
      assert.equal((e.cause as GkdError).code, 'GKD_QMP_TIMEOUT');
      return true;
    });
    assert.equal(data.ambiguous, false);
    assert.equal((await s.vm.qmp.execute<{ status?: string }>('query-migrate')).status, 'cancelled');
    assert.equal(await status(s.vm.qmp), 'running');
  });

  it('judges a `migrate` left unanswered like a migration it lost track of (cancelled, target checked), not as "refused, source not touched"', async () => {
    // Fault injection at the client boundary, as above: `migrate` reaches QEMU, its answer is taken
    // for lost (a timeout). QEMU has begun sending, so the source was touched.
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual', migration_bandwidth: 1 } }), { paused: false });
    const targetQmp = await acceptOn(dst, s, 'mig.sock', false);
    const ctx = sourceFaults(s, async (real, command, ...rest) => {
      const r = await real(command, ...rest);
      if (command === 'migrate') throw new GkdError('GKD_QMP_TIMEOUT', 'QEMU did not answer "migrate" within 10000 ms');
      return r;
    });
    await assert.rejects(startMigration(ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_FAILED', e.message);
      assert.doesNotMatch(e.message, /QEMU refused to start|source was not touched/);
      assert.match(e.message, /lost track of the migration \(QEMU did not answer "migrate" within 10000 ms\); migrate_cancel sent/);
      assert.equal((e.cause as GkdError).code, 'GKD_QMP_TIMEOUT');
      return true;
    });
    assert.equal(await status(s.vm.qmp), 'running', 'the source runs the guest again');
  });

  it('refuses an unknown migration capability before contacting QEMU', async () => {
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'paravirtual', migration_caps: 'xbzrle:turbo' } }));
    const ctx = { ...src.ctx, connections: { use: (): Promise<never> => Promise.reject(new Error('QEMU was contacted')) } };
    await assert.rejects(startMigration(ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}` }), { code: 'GKD_UNSUPPORTED_VALUE', field: 'hvparams.migration_caps' });
    assert.equal((await s.vm.qmp.execute<{ status?: string }>('query-migrate')).status, undefined);
  });

  it('reports an unreachable target without touching the source', async () => {
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: FAST }), { paused: false });
    await assert.rejects(startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'nobody.sock')}` }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_MIGRATION_FAILED');
      assert.match(e.message, /nobody\.sock/);
      return true;
    });
    assert.equal(await status(s.vm.qmp), 'running');
  });

  it('makes a hotplug during a migration fail at once with GKD_INSTANCE_BUSY, and a migration during a hotplug too', async () => {
    // 1 MiB/s: the paused VM's 0.8 MB of state take most of a second to send.
    const s = await startSource(src, makeSpec({ disks: 1, nics: 1, hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', migration_bandwidth: 1 } }));
    const sent = await src.store.read(s.name);
    const acc = await acceptMigration(dst.ctx, { name: s.name, runtime: sent.value, incoming: `unix:${join(lab.root, 'mig.sock')}`, launch: true, build: { nicBackends: userBackends(sent.upgraded) } });
    const engine = new HotplugEngine({ store: src.store, connections: src.pool, qmpSocket: src.qmpSocket, accel: 'tcg' });
    let active!: () => void;
    const isActive = new Promise<void>((r) => (active = r));
    const migration = startMigration(src.ctx, { name: s.name, uri: `unix:${join(lab.root, 'mig.sock')}`, targetQmp: acc.qmp }, (p: MigrationProgress) => {
      if (p.status === 'active') active();
    });
    await isActive;
    const t0 = Date.now();
    await assert.rejects(engine.addDisk(s.name, { uuid: uuidN(0x3003), mode: 'rw', path: makeImage(join(src.dir, 'late.raw')) }), (e: GkdError) => {
      assert.equal(e.code, 'GKD_INSTANCE_BUSY');
      assert.match(e.message, /a migration is running/);
      return true;
    });
    // Refused at once: waiting would take the engine's 60 s lock wait.
    assert.ok(Date.now() - t0 < 30_000, 'the hotplug did not wait for the migration');
    const done = await migration;
    assert.equal(done.target.confirmed, true);

    // The other way round: a hotplug holds the instance (the engine takes the same lock).
    await src.store.withLock(s.name, async () => {
      await assert.rejects(startMigration(src.ctx, { name: s.name, uri: 'unix:/nonexistent' }), { code: 'GKD_INSTANCE_BUSY' });
    });
  });
});
