/**
 * `disk.resize`: makes a running instance's QEMU see a disk's grown storage
 * (see plugin/resize). Used by the disk-grow post hook and by callers
 * outside Ganeti. It runs in the instance's queue (HotplugEngine.exclusive):
 * after what a dead process left half done is finished, bounded
 * (GKD_OVERLOADED), and not started once its caller gave up (GKD_CANCELLED).
 */
import { qmpSocketFor } from '../../config';
import type { HotplugEngine, QmpConnections } from '../../hotplug';
import type { QmpClient } from '../../qmp';
import { resizeDisk } from '../../resize/disk-resize';
import type { RuntimeStore } from '../../runtime';
import { defineMethod, type RpcMethod } from '../method';
import schema from '../../../schemas/rpc/disk.resize.schema.json';

export function diskResizeMethod(store: RuntimeStore, connections: QmpConnections, engine: Pick<HotplugEngine, 'exclusive'>): RpcMethod {
  return defineMethod({
    name: 'disk.resize',
    summary: "Makes the running QEMU see a disk's grown storage; growing only",
    schema,
    handler: (p, ctx) => {
      // One short sequence on the monitor (it may be Ganeti's, which serves one client at a time).
      const socket = p.qmp ?? qmpSocketFor(ctx.config, p.name);
      const qmp = <T>(fn: (q: QmpClient) => Promise<T>): Promise<T> => connections.use(socket, fn);
      // The schema requires one of the two; -1 names no disk.
      const ref = p.uuid !== undefined ? { uuid: p.uuid } : { index: p.index ?? -1 };
      return resizeDisk(store, qmp, p.name, ref, {
        ...(p.size === undefined ? {} : { sizeMib: p.size }),
        ...(p.allowIdeReprobe === undefined ? {} : { allowIdeReprobe: p.allowIdeReprobe }),
        hold: (fn) => engine.exclusive(p.name, fn, ctx.cancel),
      });
    },
  });
}
