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
import type { GuestConsole } from '../helpers/guest';
import { gnt, gntTry, guestConsoleOf, removeInstance, SKIP_GANETI, startGuestInstance } from './helpers/lab';
import { callOn, callsSinceOn, ensureTwoNodes, logMarkOn, NODE2, NODES, qemuPidOn, runtimeFileOn } from './helpers/node2';

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

/** The guest's virtio disks and NICs, once they reach the expected counts (hotplug events take a moment). */
async function guestSees(con: GuestConsole, disks: number, nics: number): Promise<{ disks: string[]; nics: string[] }> {
  const t0 = Date.now();
  for (;;) {
    const st = await con.state();
    const seen = { disks: st.block.filter((b) => /^vd[a-z]+$/.test(b)), nics: st.net.map((n) => n.name).filter((n) => n !== 'lo') };
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
      assert.ok(con !== undefined);
      const ready = con.readiness();
      con.close();
      con = undefined;
      await migrate(NAME, 1, 2);
      con = await guestConsoleOf(NAME, { runDir: NODES[2].runDir, ...(ready === undefined ? {} : { ready }) });
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
      assert.ok(con !== undefined);
      const ready = con.readiness();
      con.close();
      con = undefined;
      await migrate(NAME, 2, 1);
      con = await guestConsoleOf(NAME, { ...(ready === undefined ? {} : { ready }) });
      await assertGuestKept(con, 'vda', marks);
      await gntTry('gnt-instance', 'list', NAME);
    });
  });
});
