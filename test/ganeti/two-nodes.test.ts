/**
 * Ganeti's own live migration between two nodes with the plugin installed
 * on both (`ganeti-lab.sh up2`: node 2 in its own network, UTS and mount
 * namespaces, the sharedfile disk template on a directory both nodes see):
 * `gnt-instance migrate` node1 → node2 → node1 after Ganeti hot-added and
 * hot-removed disks and NICs, with a booted guest that keeps running and
 * keeps its data (its boot id, a file in its RAM, a block written to its
 * disk), the migrate pre hooks of both nodes in the loop, and the plugin's
 * instance.verify clean on the new primary after every move.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestConsole } from '../helpers/guest';
import { gnt, gntTry, guestConsoleOf, HOOKS_DIR, removeInstance, SKIP_GANETI, startGuestInstance, startInstance } from './helpers/lab';
import { callOn, callsSinceOn, ensureTwoNodes, logMarkOn, NODE2, NODES, qemuPidOn, qmpOn, runtimeFileOn } from './helpers/node2';

/** The migrations the suite ran, for its closing list. */
export const migrations: string[] = [];

/** What the guest keeps across a move: its boot, its memory and its disk. */
interface GuestMarks {
  bootId: string;
  ramToken: string;
  diskToken: string;
}

/** Writes a token into the guest's RAM (tmpfs) and one onto its first disk, and reads its boot id. */
async function markGuest(con: GuestConsole, disk: string): Promise<GuestMarks> {
  const ramToken = randomBytes(8).toString('hex');
  const diskToken = randomBytes(8).toString('hex');
  await con.check(`echo ${ramToken} > /tmp/gkd-mark`);
  // One sector at 1 MiB into the disk, synced to the image before the move.
  await con.check(`printf 'gkd:%s\\n' ${diskToken} | dd of=/dev/${disk} bs=512 seek=2048 conv=fsync,notrunc 2>/dev/null`);
  const bootId = (await con.check('cat /proc/sys/kernel/random/boot_id')).trim();
  return { bootId, ramToken, diskToken };
}

/** The guest kept its boot, its RAM and its disk block (read back uncached). */
async function assertGuestKept(con: GuestConsole, disk: string, m: GuestMarks): Promise<void> {
  assert.equal((await con.check('cat /proc/sys/kernel/random/boot_id')).trim(), m.bootId, 'the same boot: the guest was not restarted');
  assert.equal((await con.check('cat /tmp/gkd-mark')).trim(), m.ramToken, 'the guest keeps what it held in RAM');
  const block = await con.check(`dd if=/dev/${disk} bs=512 skip=2048 count=1 iflag=direct 2>/dev/null | head -n 1`);
  assert.equal(block.trim(), `gkd:${m.diskToken}`, 'the guest reads back what it wrote to its disk');
}

/** Where Ganeti says the instance runs. */
async function primaryOf(name: string): Promise<string> {
  return (await gnt('gnt-instance', 'list', '--no-headers', '-o', 'pnode', name)).stdout.trim();
}

/** `gnt-instance migrate` to node `to`; checks Ganeti, both QEMUs, both nodes' hooks and the plugin on the new primary. */
async function migrate(name: string, from: 1 | 2, to: 1 | 2): Promise<void> {
  const marks = [logMarkOn(1), logMarkOn(2)] as const;
  const pidBefore = qemuPidOn(from, name);
  assert.ok(pidBefore !== undefined, `QEMU of ${name} runs on node ${from} before the move`);
  const r = await gnt('gnt-instance', 'migrate', '-f', '-n', NODES[to].name, name);
  migrations.push(`${name}: node${from} -> node${to} (${Math.round(r.ms)} ms)`);
  assert.equal(await primaryOf(name), NODES[to].name);
  assert.ok(qemuPidOn(to, name) !== undefined, `QEMU of ${name} runs on node ${to}`);
  assert.equal(qemuPidOn(from, name), undefined, `no QEMU of ${name} left on node ${from}`);
  // Both nodes' migrate pre hooks asked their daemon; the source's checked drift on the running QEMU.
  const src = callsSinceOn(from, marks[from - 1]).filter((c) => c.method === 'instance.verify');
  assert.ok(src.some((c) => c.instance === name && c.outcome === 'ok'), `the source's hook verified ${name}: ${JSON.stringify(src)}`);
  const tgt = callsSinceOn(to, marks[to - 1]);
  assert.ok(tgt.length > 0, `the target's hook asked its own daemon: ${JSON.stringify(tgt)}`);
  const v = await callOn<{ clean: boolean; differences: unknown[]; notes?: string[] }>(to, 'instance.verify', { name });
  assert.deepEqual(v.differences, [], `instance.verify on node ${to} after the move: ${JSON.stringify(v)}`);
  assert.equal(v.clean, true);
  assert.ok(runtimeFileOn(to, name) !== undefined, `the runtime file travelled to node ${to}`);
}

/**
 * `gnt-instance migrate` to node 2 is refused by the pre hook, naming the
 * stale link (Ganeti's target would not start), and nothing moves.
 */
async function refusedForStaleLink(name: string): Promise<void> {
  const pid = qemuPidOn(1, name);
  const r = await gntTry('gnt-instance', 'migrate', '-f', '-n', NODE2, name);
  migrations.push(`${name}: node1 -> node2 refused by the pre hook: stale disk link (${Math.round(r.ms)} ms)`);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /target QEMU would not start.*instance-disks\/[^ ]+:\d+, a target links it as/s);
  assert.equal(await primaryOf(name), NODES[1].name);
  assert.equal(qemuPidOn(1, name), pid, 'the same QEMU runs on node 1');
  assert.equal(qemuPidOn(2, name), undefined, 'nothing was started on node 2');
}

/**
 * {@link migrate} of a booted guest: its console on the source closes (the
 * QEMU there goes away) and one on the new primary continues the same guest.
 */
async function migrateGuest(name: string, con: GuestConsole | undefined, from: 1 | 2, to: 1 | 2): Promise<GuestConsole> {
  assert.ok(con !== undefined, 'the guest has a console');
  const ready = con.readiness();
  con.close();
  await migrate(name, from, to);
  return guestConsoleOf(name, { runDir: NODES[to].runDir, ...(ready === undefined ? {} : { ready }) });
}

/** The guest's disks (`vd*` or `sd*`) and NICs, once they reach the expected counts (hotplug events take a moment). */
async function guestSees(con: GuestConsole, disks: number, nics: number, kind: 'vd' | 'sd' = 'vd'): Promise<{ disks: string[]; nics: string[] }> {
  const t0 = Date.now();
  const re = new RegExp(`^${kind}[a-z]+$`);
  for (;;) {
    const st = await con.state();
    const seen = { disks: st.block.filter((b) => re.test(b)), nics: st.net.map((n) => n.name).filter((n) => n !== 'lo') };
    if ((seen.disks.length === disks && seen.nics.length === nics) || Date.now() - t0 > 15_000) return seen;
    await new Promise((r) => setTimeout(r, 200));
  }
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 on two nodes: gnt-instance migrate with the plugin on both', function () {
  this.timeout(600_000);

  before(async function () {
    this.timeout(1_200_000);
    await ensureTwoNodes();
    const nodes = (await gnt('gnt-node', 'list', '--no-headers', '-o', 'name')).stdout.trim().split('\n');
    assert.deepEqual(nodes, [NODES[1].name, NODE2]);
  });

  after(() => {
    if (migrations.length > 0) process.stdout.write(`      migrations run:\n${migrations.map((m) => `        ${m}\n`).join('')}`);
  });

  describe('paravirtual disks, three NICs, booted guest', () => {
    const NAME = 'gkd-mig-virtio.example.com';
    let con: GuestConsole | undefined;
    let marks: GuestMarks;

    before(async function () {
      this.timeout(600_000);
      con = await startGuestInstance(NAME, { template: 'sharedfile', disks: 1, nics: 3, diskSizeMb: 8 });
      marks = await markGuest(con, 'vda');
    });

    after(async () => {
      con?.close();
      await removeInstance(NAME).catch(() => undefined);
    });

    it('Ganeti hot-adds a disk and a NIC on node 1; the guest sees them', async () => {
      assert.ok(con !== undefined);
      for (const args of [['--disk', 'add:size=4M'], ['--net', 'add:mode=bridged,link=br0']]) {
        const r = await gnt('gnt-instance', 'modify', '--hotplug', ...args, NAME);
        assert.match(r.stdout + r.stderr, /hotplug:done/);
      }
      const seen = await guestSees(con, 2, 4);
      assert.deepEqual([seen.disks.length, seen.nics.length], [2, 4], JSON.stringify(seen));
    });

    it('migrates node1 → node2: the guest keeps running with its data, verify is clean on node 2', async () => {
      con = await migrateGuest(NAME, con, 1, 2);
      await assertGuestKept(con, 'vda', marks);
      const seen = await guestSees(con, 2, 4);
      assert.deepEqual([seen.disks.length, seen.nics.length], [2, 4]);
    });

    it('Ganeti hot-removes the added disk and a NIC on node 2; verify stays clean there', async () => {
      assert.ok(con !== undefined);
      for (const args of [['--disk', '1:remove'], ['--net', '3:remove']]) {
        const r = await gnt('gnt-instance', 'modify', '--hotplug', ...args, NAME);
        assert.match(r.stdout + r.stderr, /hotplug:done/);
      }
      const seen = await guestSees(con, 1, 3);
      assert.deepEqual([seen.disks.length, seen.nics.length], [1, 3], JSON.stringify(seen));
      const v = await callOn<{ differences: unknown[] }>(2, 'instance.verify', { name: NAME });
      assert.deepEqual(v.differences, []);
    });

    it('migrates back node2 → node1: the guest still has its boot, RAM and disk data', async () => {
      con = await migrateGuest(NAME, con, 2, 1);
      await assertGuestKept(con, 'vda', marks);
      await gntTry('gnt-instance', 'list', NAME);
    });
  });

  describe('scsi-hd on virtio-scsi-pci, two NICs, booted guest', () => {
    const NAME = 'gkd-mig-vscsi.example.com';
    let con: GuestConsole | undefined;
    let marks: GuestMarks;

    before(async function () {
      this.timeout(600_000);
      con = await startGuestInstance(NAME, {
        template: 'sharedfile', disks: 2, nics: 2, diskSizeMb: 8, hv: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' },
      });
      await guestSees(con, 2, 2, 'sd');
      marks = await markGuest(con, 'sda');
    });

    after(async () => {
      con?.close();
      await removeInstance(NAME).catch(() => undefined);
    });

    it('Ganeti hot-adds a SCSI disk and a NIC, then removes the first added disk; the guest follows', async () => {
      assert.ok(con !== undefined);
      for (const args of [['--disk', 'add:size=4M'], ['--net', 'add:mode=bridged,link=br0'], ['--disk', 'add:size=4M'], ['--disk', '2:remove']]) {
        const r = await gnt('gnt-instance', 'modify', '--hotplug', ...args, NAME);
        assert.match(r.stdout + r.stderr, /hotplug:done/);
      }
      const seen = await guestSees(con, 3, 3, 'sd');
      assert.deepEqual([seen.disks.length, seen.nics.length], [3, 3], JSON.stringify(seen));
    });

    it('the migrate pre hook refuses the move Ganeti\'s target could not start (a stale disk link), and the repair relinks it', async () => {
      await refusedForStaleLink(NAME);
      const pid = qemuPidOn(1, NAME);
      const r = await callOn<{ relinked?: string[]; clean: boolean }>(1, 'instance.verify', { name: NAME, repair: true });
      assert.equal(r.relinked?.length, 1, JSON.stringify(r));
      assert.equal(r.clean, true);
      assert.equal(qemuPidOn(1, NAME), pid, 'the guest kept running through the repair');
    });

    it('migrates node1 → node2 → node1; the guest keeps its data and sees every disk after each move', async () => {
      for (const [from, to] of [[1, 2], [2, 1]] as const) {
        con = await migrateGuest(NAME, con, from, to);
        await assertGuestKept(con, 'sda', marks);
        const seen = await guestSees(con, 3, 3, 'sd');
        assert.deepEqual([seen.disks.length, seen.nics.length], [3, 3]);
      }
    });
  });

  describe('scsi-hd on the default lsi controller, no guest OS', () => {
    const NAME = 'gkd-mig-lsi.example.com';

    before(async function () {
      this.timeout(300_000);
      await startInstance(NAME, { template: 'sharedfile', disks: 2, nics: 2, hv: { disk_type: 'scsi-hd' } });
    });

    after(async () => {
      await removeInstance(NAME).catch(() => undefined);
    });

    it('hot-add disk and NIC, hot-remove a disk before it (SCSI needs no guest): without the plugin\'s hook, Ganeti\'s own migration fails at the target', async () => {
      for (const args of [['--disk', 'add:size=4M'], ['--net', 'add:mode=bridged,link=br0'], ['--disk', '1:remove']]) {
        const r = await gnt('gnt-instance', 'modify', '--hotplug', ...args, NAME);
        assert.match(r.stdout + r.stderr, /hotplug:done/);
      }
      // The oracle: Ganeti alone, the plugin's migrate pre hook moved aside for this one run.
      const hook = join(HOOKS_DIR, 'instance-migrate-pre.d', 'kvm-devices');
      const aside = `${hook}.aside`;
      renameSync(hook, aside);
      let r;
      try {
        r = await gntTry('gnt-instance', 'migrate', '-f', '-n', NODE2, NAME);
      } finally {
        renameSync(aside, hook);
      }
      migrations.push(`${NAME}: node1 -> node2 without the plugin's hook: exit ${r.code} (Ganeti's target did not start)`);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, /Failed to accept instance/);
      assert.equal(await primaryOf(NAME), NODES[1].name);
      assert.ok(qemuPidOn(1, NAME) !== undefined, 'Ganeti left it running on node 1');
    });

    it('with the hook the same move is refused before anything moves; after the repair node1 → node2 → node1 with verify clean each time', async () => {
      await refusedForStaleLink(NAME);
      const r = await callOn<{ relinked?: string[] }>(1, 'instance.verify', { name: NAME, repair: true });
      assert.equal(r.relinked?.length, 1, JSON.stringify(r));
      await migrate(NAME, 1, 2);
      await migrate(NAME, 2, 1);
      const devices = await qmpOn<Array<{ name: string; type: string }>>(1, NAME, 'qom-list', { path: '/machine/peripheral' });
      assert.ok(devices.some((d) => d.type === 'child<lsi53c895a>'), `the lsi controller is there: ${JSON.stringify(devices)}`);
    });

    it('a migration the pre hook refuses (a device added behind Ganeti\'s back on the source) leaves the instance running on the source, untouched', async () => {
      await qmpOn(1, NAME, 'device_add', { driver: 'virtio-rng-pci', id: 'rogue0' });
      const pid = qemuPidOn(1, NAME);
      const mark = logMarkOn(1);
      const r = await gntTry('gnt-instance', 'migrate', '-f', '-n', NODE2, NAME);
      migrations.push(`${NAME}: node1 -> node2 refused by the pre hook (${Math.round(r.ms)} ms)`);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, /rogue0/, 'the refusal names the device');
      assert.ok(callsSinceOn(1, mark).some((c) => c.method === 'instance.verify' && c.instance === NAME));
      assert.equal(await primaryOf(NAME), NODES[1].name);
      assert.equal(qemuPidOn(1, NAME), pid, 'the same QEMU still runs the instance on node 1');
      assert.equal(qemuPidOn(2, NAME), undefined, 'nothing was started on node 2');
      assert.equal(runtimeFileOn(2, NAME), undefined);
      const st = await qmpOn<{ status: string }>(1, NAME, 'query-status');
      assert.equal(st.status, 'running');
    });

    it('failover of the stopped instance to node 2, then it starts there and only there', async () => {
      await gnt('gnt-instance', 'shutdown', '--timeout=0', NAME);
      const r = await gnt('gnt-instance', 'failover', '-f', '-n', NODE2, NAME);
      migrations.push(`${NAME}: failover (stopped) node1 -> node2 (${Math.round(r.ms)} ms)`);
      assert.equal(await primaryOf(NAME), NODE2);
      await gnt('gnt-instance', 'start', NAME);
      assert.ok(qemuPidOn(2, NAME) !== undefined);
      assert.equal(qemuPidOn(1, NAME), undefined);
      const v = await callOn<{ differences: unknown[] }>(2, 'instance.verify', { name: NAME });
      assert.deepEqual(v.differences, []);
      assert.equal(runtimeFileOn(1, NAME), undefined, 'node 1 keeps no runtime file of it');
    });

    it('a migration interrupted by killing the target QEMU, then gnt-instance migrate --cleanup: running on exactly one node, and the plugin agrees', async () => {
      const pid = qemuPidOn(2, NAME);
      assert.ok(pid !== undefined);
      const run = gntTry('gnt-instance', 'migrate', '-f', '-n', NODES[1].name, NAME);
      // Kill the target QEMU on node 1 as soon as Ganeti has started it.
      let killed: number | undefined;
      for (let i = 0; i < 600 && killed === undefined; i++) {
        const t = qemuPidOn(1, NAME);
        if (t !== undefined) {
          process.kill(t, 'SIGKILL');
          killed = t;
        } else await new Promise((res) => setTimeout(res, 50));
      }
      const r = await run;
      assert.ok(killed !== undefined, `the target QEMU appeared on node 1 (migrate: ${r.stdout}${r.stderr})`);
      migrations.push(`${NAME}: node2 -> node1 interrupted (target QEMU killed), exit ${r.code}`);
      const c = await gntTry('gnt-instance', 'migrate', '--cleanup', '-f', NAME);
      migrations.push(`${NAME}: migrate --cleanup, exit ${c.code} (${Math.round(c.ms)} ms)`);
      const where = await primaryOf(NAME);
      const on = ([1, 2] as const).filter((n) => qemuPidOn(n, NAME) !== undefined);
      assert.equal(on.length, 1, `QEMU runs on exactly one node: ${JSON.stringify(on)}`);
      assert.equal(NODES[on[0] as 1 | 2].name, where, 'where Ganeti says');
      assert.equal(qemuPidOn(2, NAME), pid, 'the source QEMU survived the failed migration');
      const n = on[0] as 1 | 2;
      const v = await callOn<{ differences: unknown[] }>(n, 'instance.verify', { name: NAME });
      assert.deepEqual(v.differences, []);
      const other = n === 1 ? 2 : 1;
      const list = await callOn<{ files: Array<{ name: string }> }>(other, 'runtime.list', {});
      assert.ok(!list.files.some((f) => f.name === NAME), `node ${other}'s plugin lists no runtime file of ${NAME}`);
    });
  });

  describe('runtime formats across nodes', () => {
    const NAME = 'gkd-mig-format.example.com';
    let saved: string | undefined;

    before(async function () {
      this.timeout(300_000);
      await startInstance(NAME, { template: 'sharedfile', disks: 1, nics: 1 });
      saved = existsSync(NODES[2].config) ? readFileSync(NODES[2].config, 'utf8') : undefined;
    });

    after(async () => {
      if (saved === undefined) rmSync(NODES[2].config, { force: true });
      else writeFileSync(NODES[2].config, saved);
      await removeInstance(NAME).catch(() => undefined);
    });

    it('node 2\'s plugin configured for another format: the master\'s pre hook refuses before anything moves, naming both', async () => {
      const cfg = saved === undefined ? {} : (JSON.parse(saved) as Record<string, unknown>);
      writeFileSync(NODES[2].config, JSON.stringify({ ...cfg, ganetiFormat: '2.10' }));
      const pid = qemuPidOn(1, NAME);
      const r = await gntTry('gnt-instance', 'migrate', '-f', '-n', NODE2, NAME);
      migrations.push(`${NAME}: node1 -> node2 refused: node 2 configured for format 2.10 (${Math.round(r.ms)} ms)`);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, /node1\.example\.com is configured for runtime format 2\.16, on node2\.example\.com is configured for runtime format 2\.10/);
      assert.equal(await primaryOf(NAME), NODES[1].name);
      assert.equal(qemuPidOn(1, NAME), pid);
      assert.equal(qemuPidOn(2, NAME), undefined);
    });

    it('with the formats equal again the same migration goes through', async () => {
      if (saved === undefined) rmSync(NODES[2].config, { force: true });
      else writeFileSync(NODES[2].config, saved);
      await migrate(NAME, 1, 2);
    });
  });
});
