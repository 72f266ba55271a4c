/**
 * `disk.resize`: makes a running instance's QEMU see a disk's grown storage
 * (see plugin/resize). Used by the disk-grow post hook and by callers
 * outside Ganeti.
 */
import { qmpSocketFor } from '../../config';
import type { QmpConnections } from '../../hotplug';
import { resizeDisk } from '../../resize/disk-resize';
import type { RuntimeStore } from '../../runtime';
import { defineMethod, type RpcMethod } from '../method';
import schema from '../../../schemas/rpc/disk.resize.schema.json';

export function diskResizeMethod(store: RuntimeStore, connections: QmpConnections): RpcMethod {
  return defineMethod({
    name: 'disk.resize',
    summary: "Makes the running QEMU see a disk's grown storage; growing only",
    schema,
    handler: (p, ctx) => {
      const qmp = (): ReturnType<QmpConnections['get']> => connections.get(p.qmp ?? qmpSocketFor(ctx.config, p.name));
      // The schema requires one of the two; -1 names no disk.
      const ref = p.uuid !== undefined ? { uuid: p.uuid } : { index: p.index ?? -1 };
      return resizeDisk(store, qmp, p.name, ref, p.size);
    },
  });
}
