/**
 * Leaked backends: block nodes and netdevs named like the plugin's own
 * (`disk-`/`nic-` and the first three UUID groups, as `blockdev-add` and
 * `netdev_add` in a hot-add name them) that no device uses. A process that
 * died between `blockdev-add` and `device_add` leaves one; QEMU then keeps
 * the image open and refuses the next add of that disk ("Duplicate nodes
 * with node-name").
 *
 * Only our names count. Ganeti's own drives (`drive_add`, `-drive`) are
 * BlockBackends with auto-generated node names (`#blockNNN`), and its
 * default devices have other ids: none of them is ever called a leak.
 */
import type { QmpClient } from '../qmp';

/** A backend nothing uses. */
export interface Leak {
  kind: 'block-node' | 'netdev';
  name: string;
  detail: string;
}

/**
 * Our node-name / netdev id shape (see planner deviceId), plus the PCI-era
 * node name a hot-add into a 2.10 file uses. PCI-era netdev ids are not
 * included: Ganeti 2.10-2.15 gives its own netdevs the same `hotnic-` ids.
 */
const OURS = /^(disk|nic)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}$/;
const OURS_PCI_ERA_NODE = /^hotdisk-[0-9a-f]{8}-pci-\d+$/;

/** Every block node and netdev named like ours and attached to nothing. */
export async function findLeaks(qmp: QmpClient): Promise<Leak[]> {
  const leaks: Leak[] = [];
  const nodes = await qmp.execute<Array<{ 'node-name'?: string }>>('query-named-block-nodes', { flat: true });
  const blocks = await qmp.execute<Array<{ qdev?: string; inserted?: { 'node-name'?: string } }>>('query-block');
  // A node in use by a device is the root of a BlockBackend query-block lists with a qdev.
  const used = new Set(blocks.filter((b) => b.qdev !== undefined && b.qdev !== '').map((b) => b.inserted?.['node-name']).filter((n): n is string => n !== undefined));
  for (const n of nodes) {
    const name = n['node-name'];
    if (name !== undefined && ((/^disk-/.test(name) && OURS.test(name)) || OURS_PCI_ERA_NODE.test(name)) && !used.has(name)) {
      leaks.push({ kind: 'block-node', name, detail: `block node "${name}" is attached to no device` });
    }
  }
  // QMP in 7.2 has no netdev query; HMP "info network" prints each NIC with its peer indented
  // under it (" \ name: ..."), so a netdev at the top level is attached to no NIC.
  const text = await qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
  for (const line of text.split(/\r?\n/)) {
    const m = /^([^\s:]+): index=\d+,type=([\w-]+)/.exec(line);
    if (m === null || m[2] === 'nic') continue;
    if (/^nic-/.test(m[1]) && OURS.test(m[1])) leaks.push({ kind: 'netdev', name: m[1], detail: `netdev "${m[1]}" (${m[2]}) is attached to no NIC` });
  }
  return leaks;
}

/** Deletes `leaks`; returns one line per leak (with FAILED and QEMU's reason when it refused). */
export async function removeLeaks(qmp: QmpClient, leaks: readonly Leak[]): Promise<string[]> {
  const lines: string[] = [];
  for (const l of leaks) {
    try {
      if (l.kind === 'block-node') await qmp.execute('blockdev-del', { 'node-name': l.name });
      else await qmp.execute('netdev_del', { id: l.name });
      lines.push(`${l.kind === 'block-node' ? 'blockdev-del' : 'netdev_del'} ${l.name}`);
    } catch (e) {
      lines.push(`${l.kind === 'block-node' ? 'blockdev-del' : 'netdev_del'} ${l.name} FAILED: ${(e as Error).message}`);
    }
  }
  return lines;
}
