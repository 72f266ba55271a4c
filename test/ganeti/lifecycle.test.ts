/**
 * Every everyday Ganeti operation succeeds on a real Ganeti 3.0 node with
 * the plugin and its hooks installed, on cluster defaults, and the hooks
 * really ran (the daemon logged their calls, each answered "ok").
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  addInstance, call, daemonCallsSince, ensureGanetiNode, gnt, gntTry, installedHooks,
  logMark, qemuPid, removeInstance, RUNTIME_DIR, SKIP_GANETI, type LoggedCall,
} from './helpers/lab';

const PV = 'gkd-life.example.com';
const SHARED = 'gkd-shared.example.com';
const DISKLESS = 'gkd-diskless.example.com';

/** Runs `op` and returns the daemon calls it caused. */
async function callsDuring(op: () => Promise<unknown>): Promise<LoggedCall[]> {
  const mark = logMark();
  await op();
  // The daemon logs a call when it answers, before the hook exits: nothing to wait for.
  return daemonCallsSince(mark);
}

function assertCalled(calls: LoggedCall[], method: string, instance: string, what: string): void {
  const mine = calls.filter((c) => c.method === method && (c.instance === undefined || c.instance === instance));
  assert.ok(mine.length > 0, `${what}: no ${method} call reached the daemon (calls: ${JSON.stringify(calls)})`);
  for (const c of mine) assert.equal(c.outcome, 'ok', `${what}: ${method} answered ${c.outcome}`);
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 node with the plugin installed: everyday operations', function () {
  this.timeout(300_000);

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    for (const n of [PV, SHARED, DISKLESS, `${PV}.renamed`]) await removeInstance(n);
  });

  after(async function () {
    for (const n of [PV, SHARED, DISKLESS, 'gkd-renamed.example.com']) await removeInstance(n).catch(() => undefined);
  });

  it('install.sh --hooks put every hook of this release into Ganeti\'s hooks dir', () => {
    assert.deepEqual(installedHooks(), [
      'cluster-verify-post', 'disk-grow-post', 'instance-add-pre', 'instance-failover-pre', 'instance-migrate-pre', 'instance-modify-post',
      'instance-modify-pre', 'instance-reboot-pre', 'instance-remove-post', 'instance-start-pre', 'instance-stop-post',
    ]);
  });

  // No OS is installed (--no-install), so Ganeti does not start the instance at add: a start follows.
  it('gnt-instance add (file template, cluster defaults) passes instance-add-pre, then starts', async () => {
    const calls = await callsDuring(async () => {
      const r = await addInstance(PV);
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    });
    assertCalled(calls, 'instance.plan', PV, 'add');
    await gnt('gnt-instance', 'start', PV);
    assert.ok(qemuPid(PV) !== undefined, 'QEMU runs after the start');
  });

  it('gnt-instance add with the sharedfile and diskless templates, then start', async () => {
    const calls = await callsDuring(async () => {
      for (const [name, template] of [[SHARED, 'sharedfile'], [DISKLESS, 'diskless']] as const) {
        const r = await addInstance(name, { template });
        assert.equal(r.code, 0, `${template}: ${r.stdout}${r.stderr}`);
        await gnt('gnt-instance', 'start', name);
        assert.ok(qemuPid(name) !== undefined, `${template}: QEMU runs`);
      }
    });
    assertCalled(calls, 'instance.plan', SHARED, 'sharedfile add');
    assertCalled(calls, 'instance.plan', DISKLESS, 'diskless add');
  });

  it('gnt-instance stop runs the stop post hook, which finds Ganeti removed the runtime file', async () => {
    const calls = await callsDuring(() => gnt('gnt-instance', 'stop', '--timeout=0', PV));
    assertCalled(calls, 'instance.cleanup', PV, 'stop');
    assert.equal(qemuPid(PV), undefined);
    assert.equal(existsSync(join(RUNTIME_DIR, `${PV}.runtime`)), false);
  });

  it('gnt-instance start passes instance-start-pre', async () => {
    const calls = await callsDuring(() => gnt('gnt-instance', 'start', PV));
    assertCalled(calls, 'instance.plan', PV, 'start');
    assert.ok(qemuPid(PV) !== undefined);
  });

  for (const type of ['soft', 'hard', 'full'] as const) {
    it(`gnt-instance reboot --type=${type}`, async () => {
      const before = qemuPid(PV);
      const calls = await callsDuring(() => gnt('gnt-instance', 'reboot', `--type=${type}`, '--shutdown-timeout=0', PV));
      const after = qemuPid(PV);
      assert.ok(after !== undefined, 'QEMU runs after the reboot');
      if (type === 'full') {
        // A full reboot restarts QEMU from a runtime file Ganeti writes anew: checked like a start.
        assert.notEqual(after, before, 'a full reboot starts a new QEMU');
        assertCalled(calls, 'instance.plan', PV, 'full reboot');
      } else {
        assert.equal(calls.filter((c) => c.method === 'instance.plan').length, 0, `a ${type} reboot keeps QEMU: nothing to plan`);
      }
    });
  }

  it('gnt-instance grow-disk on a running instance', async () => {
    await gnt('gnt-instance', 'grow-disk', PV, '0', '4M');
    const r = await gnt('gnt-instance', 'list', '--no-headers', '--units=m', '-o', 'disk.size/0', PV);
    assert.equal(Number.parseFloat(r.stdout.trim()), 8, `disk 0 is now ${r.stdout.trim()}`);
    const v = await call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name: PV });
    assert.deepEqual(v.differences, []);
  });

  it('gnt-instance rename of a stopped instance, then remove', async () => {
    const renamed = 'gkd-renamed.example.com';
    await gnt('gnt-instance', 'stop', '--timeout=0', DISKLESS);
    // -f: without the name check Ganeti asks for a confirmation, which a command without a terminal declines.
    await gnt('gnt-instance', 'rename', '-f', '--no-name-check', '--no-ip-check', DISKLESS, renamed);
    const calls = await callsDuring(() => gnt('gnt-instance', 'remove', '-f', '--shutdown-timeout=0', renamed));
    assertCalled(calls, 'instance.cleanup', renamed, 'remove');
  });

  it('gnt-instance remove of a running instance', async () => {
    const calls = await callsDuring(() => gnt('gnt-instance', 'remove', '-f', '--shutdown-timeout=0', SHARED));
    assertCalled(calls, 'instance.cleanup', SHARED, 'remove');
    assert.equal(qemuPid(SHARED), undefined);
  });

  it('gnt-cluster verify passes with the cluster-verify-post hook', async () => {
    const calls = await callsDuring(async () => {
      const r = await gntTry('gnt-cluster', 'verify');
      // A kernel without magic SysRq makes Ganeti report a missing /proc/sysrq-trigger; nothing else may fail.
      const errors = (r.stdout + r.stderr).split('\n').filter((l) => /ERROR/.test(l) && !/sysrq-trigger|procfs/.test(l));
      assert.deepEqual(errors, [], r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /kvm-devices.*(refused|warning|fail)/i);
    });
    assertCalled(calls, 'runtime.list', '', 'cluster verify');
  });
});
