/**
 * `hotplug.supported`, `disk.add`, `disk.remove`, `nic.add`, `nic.remove`:
 * thin adapters over the hotplug engine. Each change returns the device's
 * hvinfo; a removal the guest has not finished yet answers
 * GKD_HOTPLUG_PENDING and completes later with a `device.removed`
 * notification to every client.
 */
import { hotplugSupported, type HotplugEngine, type QmpConnections } from '../../hotplug';
import { qmpSocketFor } from '../../config';
import type { RuntimeStore } from '../../runtime';
import { defineMethod, type RpcMethod } from '../method';
import { checkPathParam } from './confine';
import supportedSchema from '../../../schemas/rpc/hotplug.supported.schema.json';
import diskAddSchema from '../../../schemas/rpc/disk.add.schema.json';
import diskRemoveSchema from '../../../schemas/rpc/disk.remove.schema.json';
import nicAddSchema from '../../../schemas/rpc/nic.add.schema.json';
import nicRemoveSchema from '../../../schemas/rpc/nic.remove.schema.json';

/** The five hotplug methods. */
export function hotplugMethods(engine: HotplugEngine, store: RuntimeStore, connections: QmpConnections): RpcMethod[] {
  // ctx.cancel (the caller left, or the daemon began to shut down) cancels an operation still queued
  // for its instance (never one already running).
  const opts = (p: { qmp?: string }, signal: AbortSignal): { qmp?: string; signal: AbortSignal } => ({ ...(p.qmp === undefined ? {} : { qmp: p.qmp }), signal });
  return [
    defineMethod({
      name: 'hotplug.supported',
      summary: 'Says whether a disk or NIC can be hot-added or hot-removed on this instance now',
      schema: supportedSchema,
      handler: async (p, ctx) => {
        // Its answer (free slots, the device set) is read from the file and QEMU: a dead process's
        // half-done add or removal is finished first (the lock is taken only when there is one).
        if (await engine.unsettled(p.name)) await engine.reconcile(p.name);
        const { upgraded } = await store.read(p.name);
        return connections.use(p.qmp ?? qmpSocketFor(ctx.config, p.name), (qmp) => hotplugSupported(upgraded, qmp, p.kind, p.action));
      },
    }),
    defineMethod({
      name: 'disk.add', summary: 'Hot-adds a disk', schema: diskAddSchema,
      handler: async (p, ctx) => {
        // Without a uri the path is a host file QEMU (as root) opens for the guest.
        if (p.disk.uri === undefined || p.disk.uri === null) await checkPathParam('disk.add', '/disk/path', p.disk.path, ctx.config.storageRoots);
        return engine.addDisk(p.name, p.disk, opts(p, ctx.cancel));
      },
    }),
    defineMethod({
      name: 'disk.remove', summary: 'Hot-removes a disk', schema: diskRemoveSchema,
      handler: (p, ctx) => engine.removeDisk(p.name, p.uuid, opts(p, ctx.cancel)),
    }),
    defineMethod({
      name: 'nic.add', summary: 'Hot-adds a NIC', schema: nicAddSchema,
      handler: (p, ctx) => engine.addNic(p.name, p.nic, opts(p, ctx.cancel)),
    }),
    defineMethod({
      name: 'nic.remove', summary: 'Hot-removes a NIC', schema: nicRemoveSchema,
      handler: (p, ctx) => engine.removeNic(p.name, p.uuid, opts(p, ctx.cancel)),
    }),
  ];
}
