/**
 * The plugin's own migration API across the two nodes, over TCP: the
 * source daemon on node 1 (its QEMU started by Ganeti), a target daemon on
 * node 2 inside node 2's namespaces (own runtime and run dirs, so Ganeti's
 * are untouched), the stream on `tcp:198.51.100.11:PORT` between the two
 * network namespaces.
 *
 * Across nodes the source's daemon cannot reach the target's QMP socket, so
 * migration.start is called without `targetQmp` and judges by the source
 * alone: QEMU runs with the `return-path` capability, so its source says
 * `completed` only once the target acknowledged loading the whole state
 * (a target that fails or dies while loading makes it `failed`, and the
 * source is resumed). The answer says `target.confirmed: false`; whoever
 * runs the move confirms on the target node (its daemon's instance.verify),
 * and a source that completed is left paused, never resumed, so that two
 * copies of the guest cannot run. Shown here: a move confirmed on node 2; a
 * target that dies after completing (source stays paused, node 2's daemon
 * finds no QEMU); a target killed mid-stream (failed, source running again).
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { QmpClient } from '../../plugin/qmp';
import { RpcCallError, RpcClient } from '../../plugin/rpc/client';
import { addInstance, call, ensureGanetiNode, gnt, LAB_SCRIPT, removeInstance, RUNTIME_DIR, SKIP_GANETI } from './helpers/lab';
import { ensureTwoNodes, NODE2_IP, NODE2_ROOT, qmpOn } from './helpers/node2';

/** The target daemon's dirs on node 2: as node 2 sees them, and as this process reaches them. */
const TARGET_DIR = '/var/run/ganeti/kvm-hypervisor/gkd-tcp-target';
const TARGET_DIR_HERE = `${NODE2_ROOT}/run/ganeti/kvm-hypervisor/gkd-tcp-target`;
const PORT = 8150;

/** Runs `argv` inside node 2's namespaces (the lab script execs it). */
function onNode2(argv: string[], stdio: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  return spawn('bash', [LAB_SCRIPT, 'node2', ...argv], { stdio: ['ignore', stdio, 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
}

async function waitFor<T>(what: string, fn: () => Promise<T>, ms = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() - t0 > ms) throw new Error(`${what}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

(SKIP_GANETI ? describe.skip : describe)('Two nodes: migration.accept on node 2, migration.start on node 1, over TCP', function () {
  this.timeout(300_000);
  const NAME = 'gkd-mig-tcp.example.com';
  let target: ChildProcess | undefined;
  let targetQemu: ChildProcess | undefined;
  let targetStderr = '';
  const targetSocket = join(TARGET_DIR_HERE, 'rpc.sock');
  const targetQmpHere = join(TARGET_DIR_HERE, 'ctrl', `${NAME}.qmp`);

  async function targetCall<T>(method: string, params: Record<string, unknown>): Promise<T> {
    const c = await RpcClient.connect(targetSocket, { callTimeoutMs: 60_000 });
    try {
      return await c.call<T>(method, params);
    } finally {
      await c.close();
    }
  }

  /** What Ganeti does on a target before it accepts: link the instance's disks there under its runtime's names. */
  function linkDisksOnNode2(runtime: [unknown, unknown, unknown, Array<[unknown, string, unknown]>]): void {
    for (const [, link] of runtime[3]) {
      const here = link.replace(/^\/var\/run\/ganeti\//, `${NODE2_ROOT}/run/ganeti/`);
      rmSync(here, { force: true });
      symlinkSync(realpathSync(link), here);
    }
  }

  /** Accepts on node 2 and starts the target QEMU there, waiting for its QMP socket. */
  async function acceptOnNode2(): Promise<void> {
    const runtime = JSON.parse(readFileSync(join(RUNTIME_DIR, `${NAME}.runtime`), 'utf8')) as [unknown, Array<{ uuid: string }>, unknown, Array<[unknown, string, unknown]>];
    linkDisksOnNode2(runtime);
    const nicBackends = Object.fromEntries(runtime[1].map((n, i) => [n.uuid, { type: 'tap', ifname: `gkdtcp${i}` }]));
    const accepted = await targetCall<{ argv: string[]; qmp: string }>('migration.accept', { name: NAME, runtime, incoming: `tcp:${NODE2_IP}:${PORT}`, nicBackends });
    assert.equal(accepted.qmp, join(TARGET_DIR, 'ctrl', `${NAME}.qmp`));
    targetStderr = '';
    targetQemu = onNode2(accepted.argv);
    targetQemu.stderr?.on('data', (b: Buffer) => (targetStderr += b.toString()));
    await waitFor(`the target QEMU's QMP (${targetStderr})`, async () => (await QmpClient.connect(targetQmpHere)).close());
  }

  async function killTargetQemu(): Promise<void> {
    const q = targetQemu;
    if (q === undefined || q.exitCode !== null || q.signalCode !== null) return;
    const gone = new Promise((r) => q.once('exit', r));
    q.kill('SIGKILL');
    await gone;
  }

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    await ensureTwoNodes();
    await removeInstance(NAME);
    // 1 MiB/s: a stream of a few seconds, long enough to cut in the middle. A cluster-wide hvparam in
    // Ganeti; the runtime file records it at the start, so the cluster gets its default back right after.
    const r = await addInstance(NAME, { template: 'sharedfile', disks: 1, nics: 1, start: false });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await gnt('gnt-cluster', 'modify', '-H', 'kvm:migration_bandwidth=1');
    try {
      await gnt('gnt-instance', 'start', NAME);
    } finally {
      await gnt('gnt-cluster', 'modify', '-H', 'kvm:migration_bandwidth=32');
    }
    // Ganeti's own hotplug: the disk reaches QEMU as a descriptor.
    await gnt('gnt-instance', 'modify', '--hotplug', '--disk', 'add:size=4M', NAME);
    rmSync(TARGET_DIR_HERE, { recursive: true, force: true });
    for (const d of ['conf', 'pid', 'ctrl']) mkdirSync(join(TARGET_DIR_HERE, d), { recursive: true });
    target = onNode2(['/usr/local/bin/kvm-devices', 'serve', '--socket', join(TARGET_DIR, 'rpc.sock'), '--runtime-dir', join(TARGET_DIR, 'conf'), '--run-dir', TARGET_DIR]);
    await waitFor('the target daemon on node 2', async () => (await RpcClient.connect(targetSocket, { connectTimeoutMs: 300 })).close());
  });

  after(async () => {
    await killTargetQemu();
    target?.kill('SIGTERM');
    await removeInstance(NAME).catch(() => undefined);
    rmSync(TARGET_DIR_HERE, { recursive: true, force: true });
  });

  it('moves the running QEMU Ganeti started to node 2: completed, unconfirmed by the source, confirmed by node 2\'s daemon', async () => {
    await acceptOnNode2();
    const r = await call<{ status: string; target: { confirmed: boolean; detail: string } }>('migration.start', { name: NAME, uri: `tcp:${NODE2_IP}:${PORT}`, timeoutMs: 120_000 });
    assert.equal(r.status, 'completed');
    assert.equal(r.target.confirmed, false, 'the source alone cannot confirm a target on another node');
    const src = await qmpOn<{ status: string }>(1, NAME, 'query-status');
    assert.equal(src.status, 'postmigrate', 'the source is left paused');
    const q = await QmpClient.connect(targetQmpHere);
    try {
      assert.equal(((await q.execute('query-status')) as { status: string }).status, 'running', targetStderr);
    } finally {
      await q.close();
    }
    const v = await targetCall<{ clean: boolean; differences: unknown[] }>('instance.verify', { name: NAME });
    assert.deepEqual(v.differences, []);
    assert.equal(v.clean, true);
  });

  it('the target dies after completing: the source stays paused (never two copies), node 2\'s daemon finds no QEMU', async () => {
    await killTargetQemu();
    const e = await targetCall('instance.verify', { name: NAME }).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof RpcCallError, 'instance.verify on node 2 fails');
    assert.equal((e.data as { code?: string }).code, 'GKD_QMP_CONNECT');
    const src = await qmpOn<{ status: string }>(1, NAME, 'query-status');
    assert.equal(src.status, 'postmigrate', 'nothing resumed the source behind the caller\'s back');
    // The caller, now knowing the target is gone, resumes the source itself.
    await qmpOn(1, NAME, 'cont');
    assert.equal((await qmpOn<{ status: string }>(1, NAME, 'query-status')).status, 'running');
    await targetCall('instance.cleanup', { name: NAME });
  });

  it('a target killed in the middle of the stream: GKD_MIGRATION_FAILED, not ambiguous, and the source runs again', async () => {
    await acceptOnNode2();
    const c = await RpcClient.connect(join('/run/ganeti-kvm-devices', 'rpc.sock'), { callTimeoutMs: 120_000 });
    let killed = false;
    c.on('notification', (method: string, params: { status?: string; transferred?: number }) => {
      if (method === 'migration.progress' && params.status === 'active' && (params.transferred ?? 0) > 0 && !killed) {
        killed = true;
        void killTargetQemu();
      }
    });
    let err: unknown;
    try {
      await c.call('migration.start', { name: NAME, uri: `tcp:${NODE2_IP}:${PORT}`, timeoutMs: 120_000 });
    } catch (x) {
      err = x;
    } finally {
      await c.close();
    }
    assert.ok(killed, 'the target was killed during the stream');
    assert.ok(err instanceof RpcCallError, `migration.start fails: ${String(err)}`);
    const d = err.data as { code?: string; ambiguous?: boolean };
    assert.equal(d.code, 'GKD_MIGRATION_FAILED', JSON.stringify(d));
    assert.notEqual(d.ambiguous, true, JSON.stringify(d));
    assert.equal((await qmpOn<{ status: string }>(1, NAME, 'query-status')).status, 'running');
  });
});

