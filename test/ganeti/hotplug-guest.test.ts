/**
 * Ganeti's own hotplug (`gnt-instance modify --hotplug`) with the plugin
 * installed, on an instance that boots a real guest kernel (the guest kit,
 * given to Ganeti as kernel_path/initrd_path): disks and NICs are added and
 * removed, each reported done by Ganeti, and after each step the plugin's
 * instance.verify finds the runtime file and QEMU in agreement (Ganeti's
 * fd-passed disks included). A guest is needed for removals: only a running
 * OS answers QEMU's PCI unplug request.
 */
import { strict as assert } from 'node:assert';
import type { GuestConsole } from '../helpers/guest';
import {
  call, callError, daemonCallsSince, ensureGanetiNode, ganetiRuntime, gnt, logMark, qmpOnce, removeInstance, SKIP_GANETI, startGuestInstance, startInstance,
} from './helpers/lab';

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 hotplug with the plugin installed, booted guest', function () {
  this.timeout(300_000);
  const NAME = 'gkd-guest.example.com';
  let con: GuestConsole | undefined;

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    con = await startGuestInstance(NAME, { disks: 1, nics: 1, diskSizeMb: 4 });
    const ready = await con.waitReady();
    process.stdout.write(`        guest up after ${ready.elapsedMs} ms (kernel ${ready.kernel})\n`);
  });

  after(async () => {
    con?.close();
    await removeInstance(NAME).catch(() => undefined);
  });

  // [what, gnt-instance modify args, disks and NICs Ganeti then records and the guest then has]
  const steps: Array<[string, string[], number, number]> = [
    ['disk add', ['--disk', 'add:size=4M'], 2, 1],
    ['NIC add', ['--net', 'add:mode=bridged,link=br0'], 2, 2],
    ['second disk add', ['--disk', 'add:size=4M'], 3, 2],
    ['disk remove', ['--disk', '1:remove'], 2, 2],
    ['NIC remove', ['--net', '1:remove'], 2, 1],
  ];

  /** The guest's virtio disks and NICs, once they reach the expected counts (hotplug events take a moment). */
  async function guestSees(disks: number, nics: number): Promise<{ disks: string[]; nics: string[] }> {
    assert.ok(con !== undefined);
    const t0 = Date.now();
    for (;;) {
      const st = await con.state();
      const seen = { disks: st.block.filter((b) => /^vd[a-z]+$/.test(b)), nics: st.net.map((n) => n.name).filter((n) => n !== 'lo') };
      if ((seen.disks.length === disks && seen.nics.length === nics) || Date.now() - t0 > 10_000) return seen;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  for (const [what, args, disks, nics] of steps) {
    it(`gnt-instance modify --hotplug: ${what}, reported done; instance.verify clean`, async () => {
      const mark = logMark();
      const r = await gnt('gnt-instance', 'modify', '--hotplug', ...args, NAME);
      const out = r.stdout + r.stderr;
      assert.match(out, /hotplug:done/, out);
      assert.doesNotMatch(out, /hotplug:failed|Timeout|WARNING/i, out);
      // Ganeti ran the modify hooks, and each asked the daemon.
      const calls = daemonCallsSince(mark).filter((c) => c.method === 'instance.plan');
      assert.ok(calls.length >= 2, `pre and post hooks: ${JSON.stringify(calls)}`);
      for (const c of calls) assert.equal(c.outcome, 'ok');
      const rt = ganetiRuntime(NAME);
      assert.equal(rt[3].length, disks);
      assert.equal(rt[1].length, nics);
      const seen = await guestSees(disks, nics);
      assert.equal(seen.disks.length, disks, `the guest's disks: ${seen.disks.join(' ')}`);
      assert.equal(seen.nics.length, nics, `the guest's NICs: ${seen.nics.join(' ')}`);
      const v = await call<{ clean: boolean; differences: unknown[]; notes?: string[] }>('instance.verify', { name: NAME });
      assert.deepEqual(v.differences, [], `${what}: ${JSON.stringify(v)}`);
      assert.equal(v.clean, true);
    });
  }

  it('instance.verify with repair on the hot-plugged instance only relinks the disk Ganeti left under its old index, and writes no /dev/fdset path', async () => {
    // Disk 1 of three was removed: Ganeti's runtime file still names the last disk NAME:2 although it is
    // disk 1 now, which a migration target would not find (see two-nodes.test.ts).
    const before = ganetiRuntime(NAME);
    const link = (i: number): string => `/var/run/ganeti/instance-disks/${NAME}:${i}`;
    assert.deepEqual(before[3].map(([, p]) => p), [link(0), link(2)]);
    const plain = await call<{ clean: boolean; staleLinks?: Array<{ index: number; path: string; expected: string }> }>('instance.verify', { name: NAME });
    assert.equal(plain.clean, true);
    assert.deepEqual(plain.staleLinks?.map((s) => [s.index, s.path, s.expected]), [[1, link(2), link(1)]]);
    const v = await call<{ clean: boolean; repaired: boolean; relinked?: string[] }>('instance.verify', { name: NAME, repair: true });
    assert.equal(v.clean, true);
    assert.equal(v.repaired, true);
    assert.equal(v.relinked?.length, 1);
    const after = ganetiRuntime(NAME);
    assert.deepEqual(after[3].map(([, p]) => p), [link(0), link(1)]);
    // Nothing else changed.
    after[3][1][1] = link(2);
    assert.equal(JSON.stringify(after), JSON.stringify(before));
    assert.doesNotMatch(JSON.stringify(after), /\/dev\/fdset/);
    const again = await call<{ clean: boolean; repaired: boolean; staleLinks?: unknown[] }>('instance.verify', { name: NAME, repair: true });
    assert.equal(again.repaired, false, 'a second repair finds nothing to do');
    assert.equal(again.staleLinks, undefined);
  });

  it('gnt-instance grow-disk on the running guest: the disk-grow hook makes QEMU, and so the guest, see the new size at once', async () => {
    assert.ok(con !== undefined);
    assert.equal((await con.check('cat /sys/block/vda/size')).trim(), String(8192), 'the guest sees 4 MiB before');
    const t0 = Date.now();
    const r = await gnt('gnt-instance', 'grow-disk', NAME, '0', '4M');
    // 4 MiB + 4 MiB = 8 MiB = 16384 sectors of 512 bytes, read by the guest itself.
    let sectors = '';
    for (let i = 0; i < 50 && sectors !== '16384'; i++) {
      sectors = (await con.check('cat /sys/block/vda/size')).trim();
      if (sectors !== '16384') await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(sectors, '16384', 'the guest sees the new size without a reboot');
    process.stdout.write(`        guest saw the new size ${Date.now() - t0} ms after grow-disk started (grow-disk itself: ${Math.round(r.ms)} ms)\n`);
    const blocks = await qmpOnce<Array<{ qdev?: string; inserted?: { image?: { 'virtual-size'?: number } } }>>(NAME, 'query-block');
    const rt = ganetiRuntime(NAME);
    const id = String(rt[3][0][0].hvinfo && (rt[3][0][0].hvinfo as { id: string }).id);
    const b = blocks.find((x) => x.qdev?.includes(id));
    assert.equal(b?.inserted?.image?.['virtual-size'], 8 * 1024 * 1024);
    assert.equal(rt[3][0][0].size, 8, 'the runtime file records the new size in MiB');
    const v = await call<{ differences: unknown[] }>('instance.verify', { name: NAME });
    assert.deepEqual(v.differences, []);
  });

  it('disk.resize refuses a shrink and a size the storage does not hold, changing nothing', async () => {
    const before = JSON.stringify(ganetiRuntime(NAME));
    const shrink = await callError('disk.resize', { name: NAME, index: 0, size: 4 });
    assert.equal(shrink.code, 'GKD_UNSUPPORTED_VALUE');
    assert.match(shrink.message, /Cannot shrink/);
    const beyond = await callError('disk.resize', { name: NAME, index: 0, size: 100 });
    assert.equal(beyond.code, 'GKD_UNSUPPORTED_VALUE');
    assert.equal(beyond.field, 'size');
    assert.match(beyond.message, /holds only 8 MiB/);
    assert.equal(JSON.stringify(ganetiRuntime(NAME)), before);
  });
});

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 grow-disk of a scsi-hd disk on a running guest', function () {
  this.timeout(300_000);
  const NAME = 'gkd-scsigrow.example.com';
  let con: GuestConsole | undefined;

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    con = await startGuestInstance(NAME, { disks: 1, nics: 1, diskSizeMb: 4, hv: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } });
  });

  after(async () => {
    con?.close();
    await removeInstance(NAME).catch(() => undefined);
  });

  it('QEMU reports the new capacity to the guest; Linux reads it at its next SCSI rescan (udev does that on most distributions)', async () => {
    assert.ok(con !== undefined);
    const size = async (): Promise<string> => (await con!.check('cat /sys/block/sda/size')).trim();
    assert.equal(await size(), '8192');
    const mark = logMark();
    await gnt('gnt-instance', 'grow-disk', NAME, '0', '4M');
    // The disk-grow hook told QEMU (block_resize): QEMU caches a disk's size and would report the old one.
    assert.deepEqual(daemonCallsSince(mark).filter((c) => c.method === 'disk.resize').map((c) => c.outcome), ['ok']);
    // A SCSI disk's capacity change reaches Linux as a unit attention; without udev the kernel
    // re-reads the size when asked to rescan the device, which is what this guest does.
    await con.check('for d in /sys/class/scsi_device/*/device/rescan; do echo 1 > "$d"; done');
    assert.equal(await size(), '16384', 'the guest sees 8 MiB after the grow, without a reboot');
    const rt = ganetiRuntime(NAME);
    assert.equal(rt[3][0][0].size, 8);
  });
});

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 grow-disk of an IDE disk on a running instance', function () {
  this.timeout(300_000);
  const NAME = 'gkd-idegrow.example.com';

  before(async function () {
    this.timeout(600_000);
    await ensureGanetiNode();
    await startInstance(NAME, { disks: 1, nics: 0, diskSizeMb: 4, hv: { disk_type: 'ide' } });
  });

  after(async () => {
    await removeInstance(NAME).catch(() => undefined);
  });

  it('the disk-grow hook leaves an IDE disk at its old size in QEMU (a guest could see it only by detaching the disk) and says why', async () => {
    const before = JSON.stringify(ganetiRuntime(NAME));
    const mark = logMark();
    const r = await gnt('gnt-instance', 'grow-disk', NAME, '0', '4M');
    assert.doesNotMatch(r.stdout + r.stderr, /disk-grow-post: warning/, 'the hook passes');
    assert.deepEqual(daemonCallsSince(mark).filter((c) => c.method === 'disk.resize').map((c) => c.outcome), ['GKD_UNSUPPORTED_VALUE']);
    // Ganeti 3.0 gives QEMU its IDE disks as -drive if=ide (no -device): QEMU names the first ide0-hd0.
    const blocks = await qmpOnce<Array<{ device?: string; inserted?: { image?: { 'virtual-size'?: number } } }>>(NAME, 'query-block');
    assert.equal(blocks.find((b) => b.device === 'ide0-hd0')?.inserted?.image?.['virtual-size'], 4 * 1024 * 1024, 'QEMU keeps the old size, as without the plugin');
    assert.equal(JSON.stringify(ganetiRuntime(NAME)), before, 'the runtime file is unchanged');
    const e = await callError('disk.resize', { name: NAME, index: 0 });
    assert.equal(e.field, 'allowIdeReprobe');
    assert.match(e.message, /IDE disk.*next full restart/);
  });
});
