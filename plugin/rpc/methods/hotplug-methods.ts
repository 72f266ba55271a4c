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
  // The caller's abort cancels an operation still queued for its instance (never one already running).
  const opts = (p: Target, signal: AbortSignal): { qmp?: string; signal: AbortSignal } => ({ ...(p.qmp === undefined ? {} : { qmp: p.qmp }), signal });
  return [
    defineMethod({
      name: 'hotplug.supported',
      summary: 'Says whether a disk or NIC can be hot-added or hot-removed on this instance now',
      schema: supportedSchema,
      handler: async (p, ctx) => {
        const t = p as unknown as Target & { kind: 'disk' | 'nic'; action: 'add' | 'remove' };
        const { upgraded } = await store.read(t.name);
        return connections.use(t.qmp ?? qmpSocketFor(ctx.config, t.name), (qmp) => hotplugSupported(upgraded, qmp, t.kind, t.action));
      },
    }),
    defineMethod({
      name: 'disk.add', summary: 'Hot-adds a disk', schema: diskAddSchema,
      handler: (p, ctx) => engine.addDisk(p.name as string, p.disk as DiskSpec, opts(p as unknown as Target, ctx.signal)),
    },
    {
      name: 'disk.remove', summary: 'Hot-removes a disk', schema: diskRemoveSchema,
      handler: (p, ctx) => engine.removeDisk(p.name as string, p.uuid as string, opts(p as unknown as Target, ctx.signal)),
    },
    {
      name: 'nic.add', summary: 'Hot-adds a NIC', schema: nicAddSchema,
      handler: (p, ctx) => engine.addNic(p.name as string, p.nic as NicSpec, opts(p as unknown as Target, ctx.signal)),
    },
    {
      name: 'nic.remove', summary: 'Hot-removes a NIC', schema: nicRemoveSchema,
      handler: (p, ctx) => engine.removeNic(p.name as string, p.uuid as string, opts(p as unknown as Target, ctx.signal)),
    },
  ];
}
