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
import { guestAppend, guestKit } from '../helpers/guest';
import {
  addInstance, call, daemonCallsSince, ensureGanetiNode, ganetiRuntime, gnt, logMark, removeInstance, SKIP_GANETI, waitForGuestDriver,
} from './helpers/lab';

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 hotplug with the plugin installed, booted guest', function () {
  this.timeout(300_000);
  const NAME = 'gkd-guest.example.com';

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    await removeInstance(NAME);
    const kit = guestKit();
    const r = await addInstance(NAME, {
      // The guest kernel needs more than the 64 MiB other tests give instances without an OS.
      disks: 1, nics: 1, diskSizeMb: 4, memoryMb: 128,
      hv: { kernel_path: kit.kernel, initrd_path: kit.initrd, root_path: '/dev/ram0', kernel_args: guestAppend(), serial_console: 'true' },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await gnt('gnt-instance', 'start', NAME);
    const ms = await waitForGuestDriver(NAME);
    process.stdout.write(`        guest up after ${ms} ms\n`);
  });

  after(async () => {
    await removeInstance(NAME).catch(() => undefined);
  });

  const steps: Array<[string, string[], (rt: ReturnType<typeof ganetiRuntime>) => void]> = [
    ['disk add', ['--disk', 'add:size=4M'], (rt) => assert.equal(rt[3].length, 2)],
    ['NIC add', ['--net', 'add:mode=bridged,link=br0'], (rt) => assert.equal(rt[1].length, 2)],
    ['second disk add', ['--disk', 'add:size=4M'], (rt) => assert.equal(rt[3].length, 3)],
    ['disk remove', ['--disk', '1:remove'], (rt) => assert.equal(rt[3].length, 2)],
    ['NIC remove', ['--net', '1:remove'], (rt) => assert.equal(rt[1].length, 1)],
  ];
  for (const [what, args, check] of steps) {
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
      check(ganetiRuntime(NAME));
      const v = await call<{ clean: boolean; differences: unknown[]; notes?: string[] }>('instance.verify', { name: NAME });
      assert.deepEqual(v.differences, [], `${what}: ${JSON.stringify(v)}`);
      assert.equal(v.clean, true);
    });
  }

  it('instance.verify with repair on the hot-plugged instance changes nothing and writes no /dev/fdset path', async () => {
    const before = JSON.stringify(ganetiRuntime(NAME));
    const v = await call<{ clean: boolean; repaired: boolean }>('instance.verify', { name: NAME, repair: true });
    assert.equal(v.clean, true);
    assert.equal(v.repaired, false);
    const after = JSON.stringify(ganetiRuntime(NAME));
    assert.equal(after, before);
    assert.doesNotMatch(after, /\/dev\/fdset/);
  });

  it('gnt-instance grow-disk on the running guest', async () => {
    await gnt('gnt-instance', 'grow-disk', NAME, '0', '4M');
    const r = await gnt('gnt-instance', 'list', '--no-headers', '--units=m', '-o', 'disk.size/0', NAME);
    assert.equal(Number.parseFloat(r.stdout.trim()), 8);
    const v = await call<{ differences: unknown[] }>('instance.verify', { name: NAME });
    assert.deepEqual(v.differences, []);
  });
});
