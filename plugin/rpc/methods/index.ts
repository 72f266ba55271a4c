/**
 * The methods the daemon serves. A method is listed here only once the
 * module implementing it exists: an unknown method answers -32601, never a
 * stub.
 */
import type { Logger } from 'pino';
import type { Config } from '../../config';
import { qmpSocketFor } from '../../config';
import { HotplugEngine, QmpConnections } from '../../hotplug';
import type { MigrationContext } from '../../migration';
import { RuntimeStore } from '../../runtime';
import type { RpcMethod } from '../method';
import instanceSchema from '../../../schemas/instance.schema.json';
import { cdromChangeMethod } from './cdrom-change';
import { discoverMethod } from './discover';
import { diskResizeMethod } from './disk-resize';
import { hotplugMethods } from './hotplug-methods';
import { lifecycleMethods, type Launched } from './instance-lifecycle';
import { instancePlan } from './instance-plan';
import { migrationMethods } from './migration-methods';
import { withQmpCheck } from './qmp-param';
import { confinementProblem } from './confine';
import { hostAccessProblems } from './qemu-host-access';
import { resolveQemuBinary } from '../../process/qemu-binary';
import { runtimeMethods } from './runtime-methods';

export type { Launched } from './instance-lifecycle';

/** Schemas the method schemas `$ref` by `$id`. */
export const SHARED_SCHEMAS: Record<string, unknown>[] = [instanceSchema];

/** What the methods share for one daemon. */
export interface MethodDeps {
  config: Config;
  store: RuntimeStore;
  /** Short-lived QMP connections (one short sequence each), shared by hotplug, migration and launch. */
  connections: QmpConnections;
  engine: HotplugEngine;
  migration: MigrationContext;
  /** QEMU processes started in launch mode. */
  launched: Launched;
  /**
   * Instances an instance.start or migration.accept of this daemon is
   * setting up (runtime file written, QEMU starting): a second one for the
   * same name is refused meanwhile.
   */
  reserved: Set<string>;
  /**
   * Broadcasts a notification to every client; bound to the server once it
   * listens (events such as a late `device.removed` outlive the call).
   */
  notifyAll: (method: string, params: Record<string, unknown>) => void;
}

/** The shared state for a daemon with `config`. */
export function methodDeps(config: Config, logger?: Logger): MethodDeps {
  // A file without devices is valid as 2.10 and as 2.16: rewrites keep it in this node's Ganeti format.
  const store = new RuntimeStore(config.runtimeDir, { devicelessAs: config.ganetiFormat });
  // Each connection lives for one short command sequence: the QMP socket may be Ganeti's own, which
  // serves one client at a time, and Ganeti's client gives up after 5 s.
  const connections = new QmpConnections({ timeoutMs: config.hotplugTimeoutMs, keepOpen: config.qmpKeepOpen });
  const qmpSocket = (name: string): string => qmpSocketFor(config, name);
  const deps: MethodDeps = {
    config, store, connections, launched: new Map(), reserved: new Set(),
    notifyAll: () => undefined,
    engine: undefined as unknown as HotplugEngine,
    migration: {
      store, connections, qmpSocket,
      qemuBinary: (kvmPath, field) => resolveQemuBinary(kvmPath, config.qemuBinaries, field),
      pathProblem: (path, kind) => (kind === 'kernel' ? confinementProblem(path, config.kernelRoots, 'kernel roots') : confinementProblem(path, config.storageRoots)),
      commandProblems: (args, start) => hostAccessProblems(args, config, start),
      node: { runDir: config.runDir, ...(config.accel === undefined ? {} : { accel: config.accel }) },
    },
  };
  const engine = new HotplugEngine({
    store, connections, qmpSocket, unplugTimeoutMs: config.unplugTimeoutMs,
    ...(config.accel === undefined ? {} : { accel: config.accel }),
    onRemoved: (ev) => deps.notifyAll('device.removed', { ...ev }),
    onPending: (ev) => deps.notifyAll('device.pending', { ...ev }),
    ...(logger === undefined ? {} : { logger }),
  });
  deps.engine = engine;
  deps.migration.journal = engine.journal;
  deps.migration.reconcileLocked = (name) => engine.reconcileLocked(name);
  return deps;
}

/** Every wired method, `rpc.discover` first. */
export function buildMethods(version: string, deps: MethodDeps, extra: RpcMethod[] = []): RpcMethod[] {
  const all: RpcMethod[] = [];
  all.push(
    discoverMethod(() => all, SHARED_SCHEMAS, version),
    instancePlan,
    ...lifecycleMethods(deps.store, deps.launched, deps.connections, deps.reserved, deps.engine),
    ...hotplugMethods(deps.engine, deps.store, deps.connections),
    diskResizeMethod(deps.store, deps.connections, deps.engine),
    cdromChangeMethod(deps.store, deps.connections, deps.engine),
    ...migrationMethods(deps.migration, deps.launched, deps.reserved, {
      reconcile: (name) => deps.engine.reconcile(name),
      unsettled: (name) => deps.engine.unsettled(name),
      exclusive: (name, fn, signal) => deps.engine.exclusive(name, fn, signal),
      pending: (name) => deps.engine.pending().filter((x) => x.name === name),
    }),
    ...runtimeMethods(deps.store, deps.engine),
  );
  // Every method taking a QMP socket path only reaches sockets in the daemon's own directories.
  all.splice(0, all.length, ...all.map(withQmpCheck), ...extra);
  return all;
}
