/**
 * nic.add with a tap backend by ifname on real, paused QEMU. As root, QEMU
 * creates the tap (visible in /sys/class/net as a tap device) and it goes
 * away when QEMU quits; without root, QEMU cannot open /dev/net/tun and the
 * engine must report QEMU's error and record nothing. A bad ifname and a tap
 * fd (which needs SCM_RIGHTS, not done) fail the same clean way for anyone.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import type { PciHvInfo } from '../../../plugin/types';
import { assertRuntimeMatchesQemu, startHotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';
import { rejectsWithCode } from '../../helpers/gkd-assert';

const TAP = 'gkdtest0';
const sysNet = (ifname: string): string => `/sys/class/net/${ifname}`;

async function netdevIds(h: { vm: { qmp: { execute<T>(c: string, a?: Record<string, unknown>): Promise<T> } } }): Promise<string[]> {
  // `info network` is the only place QEMU 7.2 lists netdevs.
  const text = await h.vm.qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
  // One line per NIC front end (type=nic) and one per backend; keep the backends.
  return [...text.matchAll(/(\S+): index=\d+,type=(?!nic)(\S+?),(\S*)/g)].map((m) => `${m[1]} ${m[2]} ${m[3]}`).filter((n) => n.startsWith('nic-'));
}

describe('nic.add with a tap backend (paused QEMU)', function () {
  this.timeout(30_000);
  useQemuCleanup();

  const root = process.getuid?.() === 0;

  it(root ? 'creates the named tap, records the NIC without its backend, and the tap goes when QEMU quits' : 'reports QEMU\'s tap error without root and records nothing', async () => {
    assert.ok(!existsSync(sysNet(TAP)), `${TAP} already exists on this host; remove it first`);
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 0 }), { engine: { unplugTimeoutMs: 200 } });
    const before = readFileSync(h.store.path(h.name));
    const uuid = uuidN(0x7a9);
    const add = h.engine.addNic(h.name, { uuid, mac: macN(0x7a9), backend: { type: 'tap', ifname: TAP } });
    if (!root) {
      const e = await rejectsWithCode(add, 'GKD_HOTPLUG_FAILED');
      assert.match(e.message, /netdev_add failed: .*(\/dev\/net\/tun|Operation not permitted|Permission denied).*nothing to undo$/);
      assert.deepEqual(readFileSync(h.store.path(h.name)), before);
      assert.ok(!existsSync(sysNet(TAP)));
      await assertRuntimeMatchesQemu(h);
      await h.close();
      return;
    }
    const r = await add;
    assert.equal((r.hvinfo as PciHvInfo).bus, 'pci.0');
    // The kernel has a tap by that name, and it is ours: a tap, not a tun.
    assert.ok(existsSync(sysNet(TAP)), `${TAP} not in /sys/class/net`);
    const IFF_TAP = 0x0002;
    assert.equal(parseInt(readFileSync(`${sysNet(TAP)}/tun_flags`, 'utf8'), 16) & IFF_TAP, IFF_TAP);
    const backends = await netdevIds(h);
    assert.equal(backends.length, 1, JSON.stringify(backends));
    assert.match(backends[0], new RegExp(`^${r.hvinfo.id} tap ifname=${TAP},script=no,downscript=no`));
    await assertRuntimeMatchesQemu(h);
    const nic = (await h.runtime())[1].find((n) => n.uuid === uuid);
    assert.ok(nic, 'NIC recorded');
    assert.equal(nic.mac, macN(0x7a9));
    assert.ok(!('backend' in nic), 'the node-local backend must not reach the runtime file');

    // Without a guest the PCI unplug cannot complete: pending, and the tap stays with the device.
    await rejectsWithCode(h.engine.removeNic(h.name, uuid), 'GKD_HOTPLUG_PENDING');
    assert.ok(existsSync(sysNet(TAP)));
    assert.ok((await h.runtime())[1].some((n) => n.uuid === uuid));
    await h.close();
    assert.ok(!existsSync(sysNet(TAP)), `${TAP} outlived QEMU`);
  });

  it('reports QEMU\'s error for a tap ifname the kernel refuses (an existing non-tap device), leaving no netdev and no runtime change', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 0 }));
    const before = readFileSync(h.store.path(h.name));
    // The loopback device exists on every host and is no tap: TUNSETIFF fails (or /dev/net/tun does, without root).
    const bad = 'lo';
    const e = await rejectsWithCode(h.engine.addNic(h.name, { uuid: uuidN(0x7aa), mac: macN(0x7aa), backend: { type: 'tap', ifname: bad } }), 'GKD_HOTPLUG_FAILED');
    assert.equal((e.data as { step: string }).step, 'netdev_add');
    assert.match(e.message, /netdev_add failed: .+; nothing to undo$/);
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    assert.deepEqual(await netdevIds(h), []);
    await assertRuntimeMatchesQemu(h);
    await h.close();
  });

  it('refuses a tap fd before touching QEMU', async () => {
    const h = await startHotplugVm(makeSpec({ disks: 0, nics: 0 }));
    const before = readFileSync(h.store.path(h.name));
    const e = await rejectsWithCode(h.engine.addNic(h.name, { uuid: uuidN(0x7ab), mac: macN(0x7ab), backend: { type: 'tap', fd: 3 } }), 'GKD_HOTPLUG_UNSUPPORTED');
    assert.equal(e.field, 'nic.backend.fd');
    assert.match(e.message, /SCM_RIGHTS/);
    assert.deepEqual(readFileSync(h.store.path(h.name)), before);
    assert.deepEqual(await netdevIds(h), []);
    await h.close();
  });
});
