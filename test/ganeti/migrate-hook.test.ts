/**
 * The drift-checked migration pre hooks on a real Ganeti 3.0 instance: clean
 * after Ganeti's own hotplugs (a disk passed as a descriptor, a NIC), refused
 * with the device named after a device_add behind Ganeti's back, let through
 * with a warning when the instance carries the bypass tag, and passed for a
 * stopped instance. The single-node lab cannot run `gnt-instance migrate`
 * itself (there is no second node), so the installed hook script is run as
 * ganeti-noded runs it: environment reset to PATH and the GANETI_* variables.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ALLOW_DRIFT_TAG } from '../../plugin/cli/hook-table';
import { ensureGanetiNode, gnt, HOOKS_DIR, qmpOnce, removeInstance, SKIP_GANETI, startInstance } from './helpers/lab';

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0: instance-migrate-pre and instance-failover-pre check drift', function () {
  this.timeout(300_000);
  const NAME = 'gkd-drift.example.com';

  /** Runs the installed hook with the environment Ganeti gives it for NAME. */
  async function runHook(hook: 'instance-migrate-pre' | 'instance-failover-pre'): Promise<{ status: number | null; out: string }> {
    const tags = (await gnt('gnt-instance', 'list', '--no-headers', '-o', 'tags', NAME)).stdout.trim().split(',').filter((t) => t !== '');
    const r = spawnSync(join(HOOKS_DIR, `${hook}.d`, 'kvm-devices'), [], {
      cwd: '/', encoding: 'utf8',
      env: {
        PATH: '/sbin:/bin:/usr/sbin:/usr/bin', GANETI_HOOKS_PATH: hook.replace(/-pre$/, ''), GANETI_HOOKS_PHASE: 'pre',
        GANETI_INSTANCE_NAME: NAME, GANETI_INSTANCE_HYPERVISOR: 'kvm', GANETI_INSTANCE_TAGS: tags.join(' '),
      },
    });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    await startInstance(NAME, { disks: 1, nics: 1, diskSizeMb: 4 });
  });

  after(async () => {
    await removeInstance(NAME).catch(() => undefined);
  });

  it('passes a running instance Ganeti hot-plugged a disk and a NIC into', async () => {
    await gnt('gnt-instance', 'modify', '--hotplug', '--disk', 'add:size=4M', NAME);
    await gnt('gnt-instance', 'modify', '--hotplug', '--net', 'add:mode=bridged,link=br0', NAME);
    for (const hook of ['instance-migrate-pre', 'instance-failover-pre'] as const) {
      const r = await runHook(hook);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /ok: .*QEMU and the runtime file agree/);
    }
  });

  it('refuses, naming the device, after a device_add behind Ganeti\'s back; the bypass tag lets it through with a warning', async () => {
    await qmpOnce(NAME, 'device_add', { driver: 'virtio-rng-pci', id: 'rogue0' });
    const r = await runHook('instance-migrate-pre');
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /refused: .*QEMU and the runtime file disagree.*rogue0/);
    assert.match(r.out, new RegExp(`gnt-instance add-tags ${NAME.replace(/\./g, '\\.')} ${ALLOW_DRIFT_TAG}`));

    await gnt('gnt-instance', 'add-tags', NAME, ALLOW_DRIFT_TAG);
    const bypass = await runHook('instance-migrate-pre');
    assert.equal(bypass.status, 0, bypass.out);
    assert.match(bypass.out, /WARNING: going ahead despite drift .*rogue0/);
    await gnt('gnt-instance', 'remove-tags', NAME, ALLOW_DRIFT_TAG);
  });

  it('passes the failover of a stopped instance (no QEMU to drift from)', async () => {
    await gnt('gnt-instance', 'stop', '--timeout=0', NAME);
    const r = await runHook('instance-failover-pre');
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /nothing to check|no QEMU runs it here/);
  });
});
