/**
 * What Ganeti 3.0 gives its hooks, asked of Ganeti itself: the hook
 * scripts and the README ("Ganeti 3.0 facts this relies on") rely on these,
 * so a script of this test's own, installed next to the plugin's, records
 * the environment of every run and the test reads it back.
 */
import { strict as assert } from 'node:assert';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureGanetiNode, gnt, HOOKS_DIR, removeInstance, SKIP_GANETI, startInstance } from './helpers/lab';

const NAME = 'gkd-hookenv.example.com';
const DUMP_DIR = '/run/gkd-hook-env';
/** Ganeti runs only hook files named [A-Za-z0-9_-]+, in name order: this one runs after the plugin's. */
const SCRIPT = 'zz-gkd-env-dump';
const HPATHS = ['instance-add', 'instance-start', 'instance-stop', 'instance-reboot', 'instance-modify'];

interface Run {
  hook: string;
  env: Record<string, string>;
}

/** Every run recorded since the last clear, in the order they ran. */
function runs(): Run[] {
  if (!existsSync(DUMP_DIR)) return [];
  return readdirSync(DUMP_DIR).sort().map((f) => {
    const env: Record<string, string> = {};
    for (const line of readFileSync(join(DUMP_DIR, f), 'utf8').split('\0')) {
      const i = line.indexOf('=');
      if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
    }
    return { hook: `${env.GANETI_HOOKS_PATH}-${env.GANETI_HOOKS_PHASE}`, env };
  }).filter((r) => r.env.GANETI_INSTANCE_NAME === NAME);
}

function clear(): void {
  rmSync(DUMP_DIR, { recursive: true, force: true });
  mkdirSync(DUMP_DIR, { recursive: true });
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0: the hook environment the hooks rely on', function () {
  this.timeout(300_000);

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    await removeInstance(NAME);
    clear();
    // The recorder: env -0, one file per run, named so that runs sort in order.
    for (const h of HPATHS) {
      for (const phase of ['pre', 'post']) {
        const dir = join(HOOKS_DIR, `${h}-${phase}.d`);
        mkdirSync(dir, { recursive: true });
        const file = join(dir, SCRIPT);
        writeFileSync(file, `#!/bin/sh\nenv -0 > "${DUMP_DIR}/$(date +%s%N)-$$"\nexit 0\n`);
        chmodSync(file, 0o755);
      }
    }
  });

  after(async () => {
    for (const h of HPATHS) for (const phase of ['pre', 'post']) rmSync(join(HOOKS_DIR, `${h}-${phase}.d`, SCRIPT), { force: true });
    rmSync(DUMP_DIR, { recursive: true, force: true });
    await removeInstance(NAME).catch(() => undefined);
  });

  it('gnt-instance add: no GANETI_INSTANCE_UUID; the add hooks see the disks with empty UUIDs (pre and post); the post hook gets the result as GANETI_POST_INSTANCE_*', async () => {
    await startInstance(NAME, { disks: 2, nics: 1, diskSizeMb: 1 });
    const all = runs();
    const pre = all.find((r) => r.hook === 'instance-add-pre');
    const post = all.find((r) => r.hook === 'instance-add-post');
    assert.ok(pre !== undefined && post !== undefined, `add hooks ran: ${all.map((r) => r.hook).join(', ')}`);
    for (const r of all) assert.equal(r.env.GANETI_INSTANCE_UUID, undefined, `${r.hook} has no GANETI_INSTANCE_UUID`);
    assert.equal(pre.env.GANETI_INSTANCE_DISK_COUNT, '2');
    assert.equal(pre.env.GANETI_INSTANCE_DISK0_UUID, '', 'instance-add-pre: disk 0 has no UUID yet');
    assert.equal(pre.env.GANETI_INSTANCE_DISK1_UUID, '', 'instance-add-pre: disk 1 has no UUID yet');
    assert.equal(pre.env.GANETI_INSTANCE_NIC_COUNT, '1');
    assert.equal(pre.env.GANETI_INSTANCE_HYPERVISOR, 'kvm');
    assert.equal(post.env.GANETI_POST_INSTANCE_NAME, NAME);
    assert.equal(post.env.GANETI_POST_INSTANCE_DISK_COUNT, '2');
    // Ganeti builds the add's environment from the request both times: no disk UUID after the add either.
    assert.equal(post.env.GANETI_POST_INSTANCE_DISK0_UUID, '', 'instance-add-post: the disks still have no UUID in the hook environment');
  });

  it('gnt-instance reboot (soft, hard, full) runs the instance-reboot hooks only, never the start or stop hooks', async () => {
    for (const type of ['soft', 'hard', 'full']) {
      clear();
      await gnt('gnt-instance', 'reboot', `--type=${type}`, '--shutdown-timeout=0', NAME);
      const hooks = [...new Set(runs().map((r) => r.hook))].sort();
      assert.deepEqual(hooks, ['instance-reboot-post', 'instance-reboot-pre'], `reboot --type=${type}`);
      assert.equal(runs().find((r) => r.hook === 'instance-reboot-pre')?.env.GANETI_REBOOT_TYPE, type);
    }
  });

  it('gnt-instance modify --hotplug --disk add: instance-modify-pre sees the old disk list, instance-modify-post the new one as GANETI_POST_INSTANCE_*', async () => {
    clear();
    await gnt('gnt-instance', 'modify', '--hotplug', '--disk', 'add:size=1M', NAME);
    const pre = runs().find((r) => r.hook === 'instance-modify-pre');
    const post = runs().find((r) => r.hook === 'instance-modify-post');
    assert.ok(pre !== undefined && post !== undefined);
    assert.equal(pre.env.GANETI_INSTANCE_DISK_COUNT, '2', 'the pre hook sees the disks before the add');
    // The post hook gets the pre hook's environment again, and the state after as GANETI_POST_*.
    assert.equal(post.env.GANETI_INSTANCE_DISK_COUNT, '2');
    assert.equal(post.env.GANETI_POST_INSTANCE_DISK_COUNT, '3', 'the post hook sees the added disk as GANETI_POST_*');
  });
});
