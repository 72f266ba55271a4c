/**
 * Assembles a daemon from a configuration: the root logger, the wired
 * methods and the listening server.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { existsSync } from 'node:fs';
import { qmpSocketFor, type Config } from '../config';
import { verifyInstance } from '../migration';
import { adoptQemu } from '../process';
import { runningPid } from './methods/instance-lifecycle';
import type { RpcMethod } from './method';
import { buildMethods, methodDeps, SHARED_SCHEMAS, type MethodDeps } from './methods';
import { hookEndpoint } from './hook-endpoint';
import { RpcServer } from './server';

export interface StartDaemonOptions {
  /** Root logger. @default pino on stderr at `config.logLevel` */
  logger?: Logger;
  /** Extra methods (tests add slow or failing ones). */
  extraMethods?: RpcMethod[];
  /** Reported by `rpc.discover`. @default the package version */
  version?: string;
}

export interface Daemon {
  server: RpcServer;
  logger: Logger;
  deps: MethodDeps;
  /** Closes the server (graceful), then stops the QEMU processes it launched. */
  close(graceMs?: number): Promise<void>;
  /** The start-up recovery (journals, then a comparison per live instance); resolves when done. */
  recovery: Promise<void>;
}

/** How long shutdown waits, after the QMP drain, for operations to finish their bookkeeping. */
const SETTLE_MS = 1000;

/** Starts a daemon listening on `config.socket`. */
export async function startDaemon(config: Config, options: StartDaemonOptions = {}): Promise<Daemon> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination(2));
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const version = options.version ?? (require('../../../package.json') as { version: string }).version;
  // Ganeti creates these on its nodes; a fresh or per-user setup needs them too
  // (the store locks next to the runtime files; QEMU binds its sockets in ctrl/).
  await mkdir(config.runtimeDir, { recursive: true });
  if (config.launch) for (const d of ['pid', 'ctrl']) await mkdir(join(config.runDir, d), { recursive: true });
  const deps = methodDeps(config, logger);
  const methods = buildMethods(version, deps, options.extraMethods);
  const server = await RpcServer.start({
    config, logger, methods, sharedSchemas: SHARED_SCHEMAS,
    // The hook scripts' fast path, on the same socket (same mode and group); one hook body is held to the size of one RPC message.
    httpRequest: hookEndpoint(config.maxPayload, logger.child({ module: 'hook' })),
  });
  deps.notifyAll = (method, params) => server.notify('all', method, params);
  const recovery = recoverOnStart(config, deps, logger.child({ module: 'recovery' }));
  const close = async (graceMs?: number): Promise<void> => {
    await server.close(graceMs);
    await recovery;
    // Launch mode is for demos and tests: its QEMUs are the daemon's children. Stop them before
    // closing the pooled connections: the pool holds the launcher's own QMP client, and `stop`
    // needs it to send quit (otherwise it waits its full timeout, then kills).
    deps.engine.stop();
    // Work already running on a QEMU (a hot-add between steps, a migration) finishes before its
    // connection is closed; what is still pending stays in the journal for the next start.
    if (!(await deps.connections.drain(graceMs ?? config.shutdownGraceMs))) {
      logger.warn('shutdown: QMP work still running after the grace time; its connections are closed now (the journal keeps what is unfinished)');
    }
    // A hot-add answered just before the server closed still closes its journal entry and releases its
    // lock: a moment's work once QEMU's part is over, waited for briefly (what is left, reconcile closes).
    let settleTimer: NodeJS.Timeout | undefined;
    const settled = await Promise.race([deps.engine.idle().then(() => true), new Promise<boolean>((resolve) => {
      settleTimer = setTimeout(() => resolve(false), Math.min(SETTLE_MS, graceMs ?? config.shutdownGraceMs));
    })]);
    clearTimeout(settleTimer);
    if (!settled) logger.warn('shutdown: an operation was still finishing after the QMP drain; the next reconcile closes what it left open');
    await Promise.allSettled([...deps.launched.values()].map((p) => p.stop()));
    await deps.connections.closeAll();
  };
  return { server, logger, deps, close, recovery };
}

/**
 * Launch mode: a QEMU an earlier run of this daemon started outlives that run when it is killed.
 * Every runtime file whose pid file (`<runDir>/pid/<name>`, which only this daemon's QEMUs write in
 * launch mode) names a live QEMU is adopted: it keeps running, instance.start refuses to start it
 * again, and shutdown stops it like the QEMUs launched now.
 */
async function adoptOrphans(config: Config, deps: MethodDeps, log: Logger): Promise<void> {
  await deps.store.list().then((names) => {
    for (const name of names) {
      const pid = runningPid(join(config.runDir, 'pid', name));
      if (pid === undefined || deps.launched.has(name)) continue;
      const proc = adoptQemu(pid, qmpSocketFor(config, name), (s, fn) => deps.connections.use(s, fn));
      deps.launched.set(name, proc);
      void proc.exited.finally(() => {
        if (deps.launched.get(name) === proc) deps.launched.delete(name);
      });
      log.info({ instance: name, pid }, 'adopted a QEMU an earlier run of this daemon launched');
    }
  }, (e: unknown) => log.warn({ err: e }, 'could not list runtime files to adopt QEMUs'));
}

/**
 * What a restarted daemon does first, like libvirtd re-attaching to its domains: finish or undo every
 * operation a dead process left in a journal, then, for each runtime file whose QEMU answers, compare
 * the file with QEMU and report (never repair) what differs. Runs in the background; every operation
 * reconciles its instance by itself first anyway. Never throws: each failure is logged.
 */
async function recoverOnStart(config: Config, deps: MethodDeps, log: Logger): Promise<void> {
  try {
    if (config.launch) await adoptOrphans(config, deps, log);
    const reconciled = await deps.engine.reconcileAll();
    let differing = 0;
    const names = await deps.store.list().catch(() => [] as string[]);
    for (const name of names) {
      const socket = qmpSocketFor(config, name);
      if (!existsSync(socket)) continue;
      try {
        const v = await verifyInstance(deps.migration, name);
        if (!v.clean) {
          differing++;
          log.warn({ instance: name, differences: v.differences, leaks: v.leaks }, 'runtime file and QEMU differ; not repaired (run instance.verify with repair)');
        }
      } catch (e) {
        log.warn({ instance: name, err: e }, 'could not compare the runtime file with QEMU');
      }
    }
    log.info({ journals: reconciled.size, instances: names.length, differing }, 'start-up recovery done');
  } catch (e) {
    log.error({ err: e }, 'start-up recovery failed');
  }
}
