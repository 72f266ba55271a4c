/**
 * `cdrom.change`: a live CD-ROM medium change (see plugin/cdrom). Used by
 * the instance-modify post hook and by callers outside Ganeti. It runs in
 * the instance's queue (HotplugEngine.exclusive), as disk.resize does.
 */
import { changeCdrom } from '../../cdrom/change';
import { qmpSocketFor } from '../../config';
import type { HotplugEngine, QmpConnections } from '../../hotplug';
import type { QmpClient } from '../../qmp';
import type { RuntimeStore } from '../../runtime';
import { defineMethod, type RpcMethod } from '../method';
import { checkPathParam } from './confine';
import schema from '../../../schemas/rpc/cdrom.change.schema.json';

export function cdromChangeMethod(store: RuntimeStore, connections: QmpConnections, engine: Pick<HotplugEngine, 'exclusive'>): RpcMethod {
  return defineMethod({
    name: 'cdrom.change',
    summary: "Changes or ejects a running instance's CD-ROM medium and records it in the runtime file",
    schema,
    handler: async (p, ctx) => {
      // The image is a host file QEMU (as root) opens for the guest: only under the storage roots.
      if (p.path !== null) await checkPathParam('cdrom.change', '/path', p.path, ctx.config.storageRoots);
      const socket = p.qmp ?? qmpSocketFor(ctx.config, p.name);
      const qmp = <T>(fn: (q: QmpClient) => Promise<T>): Promise<T> => connections.use(socket, fn);
      return changeCdrom(store, qmp, p.name, p.slot, p.path, p.force === true, (fn) => engine.exclusive(p.name, fn, ctx.cancel));
    },
  });
}
