/**
 * `instance.verify`, `migration.accept` and `migration.start`: adapters over
 * the migration module. `migration.start` streams `migration.progress`
 * notifications to its caller; `migration.accept` with the daemon option
 * `launch` starts the target QEMU and keeps it.
 */
import { acceptMigration, acceptRefused, startMigration, verifyInstance, type MigrationContext, type VerifyOptions } from '../../migration';
import { GkdError } from '../../errors';
import { currentStamp, sameStamp } from '../../runtime';
import { defineMethod, type RpcMethod } from '../method';
import { checkPathParam, paramRefused } from './confine';
import { incomingAddressProblem, migrationUriProblem } from './migration-uri';
import type { Launched } from './instance-lifecycle';
import verifySchema from '../../../schemas/rpc/instance.verify.schema.json';
import acceptSchema from '../../../schemas/rpc/migration.accept.schema.json';
import startSchema from '../../../schemas/rpc/migration.start.schema.json';

/** What instance.verify and migration.accept ask of the hotplug engine: finish half-done work first, list what is pending. */
export interface VerifyHooks {
  /** Reconciles the instance's open journal entries under its lock (no-op without any). */
  reconcile(name: string): Promise<unknown>;
  /** True when the journal has entries a reconcile would act on (read without the lock). */
  unsettled(name: string): Promise<boolean>;
  /** Runs `fn` in the instance's queue, under its lock, after the reconcile (HotplugEngine.exclusive). */
  exclusive<T>(name: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Removals of the instance still waiting for the guest. */
  pending(name: string): unknown[];
}

/**
 * A comparison of `name` that sees a consistent instance without taking its
 * lock when nothing is in flight (so it neither waits behind a hot-add nor
 * fails GKD_INSTANCE_BUSY during a migration): with a journal that a
 * reconcile would act on (a dead process's half-done work, or a hot-add or
 * removal in flight) it runs in the instance's queue, after the reconcile.
 * Otherwise it compares at once, and compares again in the queue if the
 * runtime file changed or such an entry appeared meanwhile (an operation
 * ran between its reads of the file and of QEMU).
 */
async function consistentVerify<T>(hooks: VerifyHooks, name: string, runtimePath: string, run: () => Promise<T>, signal: AbortSignal): Promise<T> {
  if (await hooks.unsettled(name)) return hooks.exclusive(name, run, signal);
  const before = await currentStamp(runtimePath);
  const r = await run();
  if (!(await hooks.unsettled(name)) && sameStamp(await currentStamp(runtimePath), before)) return r;
  return hooks.exclusive(name, run, signal);
}

/** The three migration methods over `mctx`. */
export function migrationMethods(mctx: MigrationContext, launched: Launched, reserved: Set<string> = new Set(), hooks?: VerifyHooks): RpcMethod[] {
  return [
    defineMethod({
      name: 'instance.verify',
      summary: 'Reports drift between the runtime file and the live QEMU, leaked backends and pending removals',
      schema: verifySchema,
      handler: async (p, ctx) => {
        // A known disk's path may end up in the runtime file (when QEMU shows no plain file): the same roots apply.
        if (typeof p.repair === 'object') {
          for (const [i, d] of (p.repair.known?.disks ?? []).entries()) {
            if (d.uri === undefined || d.uri === null) await checkPathParam('instance.verify', `/repair/known/disks/${i}/path`, d.path, ctx.config.storageRoots);
          }
        }
        const options: VerifyOptions = {
          ...(p.qmp === undefined ? {} : { qmp: p.qmp }),
          ...(p.repair === true ? { repair: true } : typeof p.repair === 'object' ? { repair: p.repair } : {}),
        };
        let r;
        if (hooks === undefined) r = await verifyInstance(mctx, p.name, options);
        else if (options.repair !== undefined) {
          // A repair rewrites the runtime file: in the instance's queue (bounded, cancelled with its caller),
          // after what a process that died mid-operation left half done is finished.
          r = await hooks.exclusive(p.name, () => verifyInstance(mctx, p.name, { ...options, hold: (fn) => fn() }), ctx.cancel);
        } else {
          r = await consistentVerify(hooks, p.name, mctx.store.path(p.name), () => verifyInstance(mctx, p.name, options), ctx.cancel);
        }
        return { ...r, pending: hooks?.pending(p.name) ?? [] };
      },
    }),
    defineMethod({
      name: 'migration.accept',
      summary: 'On the target: checks the incoming runtime and builds (or launches) QEMU with -incoming',
      schema: acceptSchema,
      handler: async (p, ctx) => {
        const name = p.name;
        if (reserved.has(name) || launched.has(name)) {
          throw new GkdError('GKD_INSTANCE_BUSY', `Cannot accept a migration of "${name}": this daemon is starting or already runs it`, { field: 'name' });
        }
        // QEMU (as root) unlinks what a unix: address names and binds there: checked before anything is written or started.
        const problem = await incomingAddressProblem(p.incoming, ctx.config);
        if (problem !== undefined) throw acceptRefused(name, [{ field: 'incoming', reason: problem }]);
        reserved.add(name);
        try {
          // An accept a killed daemon left half done (a runtime file and no QEMU) is undone first.
          await hooks?.reconcile(name);
          const r = await acceptMigration(mctx, {
            name, runtime: p.runtime, incoming: p.incoming, launch: ctx.config.launch,
            ...(p.qmp === undefined ? {} : { qmp: p.qmp }),
            ...(p.nicBackends === undefined ? {} : { build: { nicBackends: p.nicBackends } }),
          });
          const { process: proc, ...rest } = r;
          if (proc !== undefined) {
            launched.set(name, proc);
            void proc.exited.finally(() => {
              if (launched.get(name) === proc) launched.delete(name);
            });
          }
          return { ...rest, launched: proc !== undefined };
        } finally {
          reserved.delete(name);
        }
      },
    }),
    defineMethod({
      name: 'migration.start',
      summary: 'On the source: migrates the instance to uri with migration.progress notifications',
      schema: startSchema,
      handler: async (p, ctx) => {
        // QEMU (as root) connects to the uri and writes the stream (guest RAM) into it: only tcp: and unix: under the run dir.
        const problem = await migrationUriProblem(p.uri, ctx.config);
        if (problem !== undefined) throw paramRefused('migration.start', '/uri', p.uri, problem);
        return startMigration(mctx, {
        name: p.name, uri: p.uri,
        ...(p.qmp === undefined ? {} : { qmp: p.qmp }),
        ...(p.targetQmp === undefined ? {} : { targetQmp: p.targetQmp }),
        ...(p.timeoutMs === undefined ? {} : { timeoutMs: p.timeoutMs }),
      }, (progress) => ctx.notify(ctx.client, 'migration.progress', { ...progress }));
      },
    }),
  ];
}
