/**
 * A good neighbour on Ganeti's QMP socket: QEMU serves one QMP client at a
 * time and Ganeti gives up after 5 s, so while the plugin works on an
 * instance (a removal waiting for a guest that never answers, the pending
 * removal after it, a stream of instance.verify calls) Ganeti's own
 * `gnt-instance modify --hotplug` on the same instance must still complete.
 * The instance boots no OS, so QEMU never releases an unplugged device and
 * the plugin's removal stays pending for the whole test. (The same holds
 * for a migration.start refused at its drift check.)
 */
import { strict as assert } from 'node:assert';
import { call, callError, ensureGanetiNode, ganetiRuntime, gnt, qmpOnce, removeInstance, SKIP_GANETI, startInstance } from './helpers/lab';

(SKIP_GANETI ? describe.skip : describe)("Ganeti 3.0: Ganeti's hotplug works while the plugin works on the same QMP socket", function () {
  this.timeout(300_000);
  const NAME = 'gkd-neighbour.example.com';

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    await startInstance(NAME, { disks: 2, nics: 1, diskSizeMb: 1 });
  });

  after(async () => {
    await removeInstance(NAME).catch(() => undefined);
  });

  /** A Ganeti hotplug that must be reported done, with no QMP time-out. */
  async function ganetiHotplug(...args: string[]): Promise<number> {
    const r = await gnt('gnt-instance', 'modify', '--hotplug', ...args, NAME);
    const out = r.stdout + r.stderr;
    assert.match(out, /hotplug:done/, out);
    assert.doesNotMatch(out, /hotplug:failed|Timeout while receiving a QMP message/, out);
    return r.ms;
  }

  /** Ganeti hot-adds a NIC while `step` runs again and again (from half a second before until it is done). */
  async function hotplugWhileRepeating(step: () => Promise<void>): Promise<void> {
    let stop = false;
    const loop = (async () => {
      while (!stop) await step();
    })();
    try {
      await new Promise((r) => setTimeout(r, 500));
      await ganetiHotplug('--net', 'add:mode=bridged,link=br0');
    } finally {
      stop = true;
      await loop;
    }
  }

  it('during a stream of migration.start calls refused at their drift check, Ganeti hot-adds a NIC (first: the pending removal below would refuse it before QEMU is asked)', async () => {
    // Drift behind Ganeti's back: a device QEMU has and no runtime file names, at a slot Ganeti's
    // hotplug (lowest free slot from its reservations up) does not reach here.
    await qmpOnce(NAME, 'device_add', { driver: 'virtio-rng-pci', id: 'gkd-drift0', bus: 'pci.0', addr: '0x1f' });
    const refusals: string[] = [];
    await hotplugWhileRepeating(async () => {
      const e = await callError('migration.start', { name: NAME, uri: 'unix:/var/run/ganeti/kvm-hypervisor/gkd-neighbour-never.sock' });
      refusals.push(String(e.code));
      assert.match(e.message, /gkd-drift0/, 'refused for the drift, naming the device');
    });
    assert.ok(refusals.length >= 3, `migration.start was refused ${refusals.length} times meanwhile`);
    for (const c of new Set(refusals)) assert.ok(['GKD_DRIFT', 'GKD_MIGRATION_REFUSED'].includes(c), `refused as drift, not ${c}`);
  });

  it('while disk.remove waits for a guest that never releases the disk, and while that removal is pending, Ganeti hot-adds a NIC and a disk', async () => {
    const uuid = String(ganetiRuntime(NAME)[3][1][0].uuid);
    const removal = callError('disk.remove', { name: NAME, uuid });
    await new Promise((r) => setTimeout(r, 1500));
    const during = await ganetiHotplug('--net', 'add:mode=bridged,link=br0');
    const answer = await removal;
    assert.equal(answer.code, 'GKD_HOTPLUG_PENDING', JSON.stringify(answer));
    // Pending now: the daemon looks again from time to time, each time briefly.
    const pending = await ganetiHotplug('--disk', 'add:size=1M');
    process.stdout.write(`        Ganeti's hotplug took ${Math.round(during)} ms during the removal wait, ${Math.round(pending)} ms while it was pending\n`);
    const v = await call<{ pending?: unknown[] }>('instance.verify', { name: NAME });
    assert.ok(Array.isArray(v.pending) && v.pending.length === 1, `the pending removal stays visible: ${JSON.stringify(v)}`);
  });

  it('during a stream of instance.verify calls, Ganeti hot-adds a NIC', async () => {
    let verifies = 0;
    await hotplugWhileRepeating(async () => {
      await call('instance.verify', { name: NAME });
      verifies++;
    });
    assert.ok(verifies >= 3, `instance.verify ran ${verifies} times meanwhile`);
  });
});
