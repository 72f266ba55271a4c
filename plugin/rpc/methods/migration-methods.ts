/**
 * `instance.verify`, `migration.accept` and `migration.start`: adapters over
 * the migration module. `migration.start` streams `migration.progress`
 * notifications to its caller; `migration.accept` with the daemon option
 * `launch` starts the target QEMU and keeps it.
 */
import { acceptMigration, startMigration, verifyInstance, type MigrationContext } from '../../migration';
import { GkdError } from '../../errors';
import { defineMethod, type RpcMethod } from '../method';
import { checkPathParam } from './confine';
import type { Launched } from './instance-lifecycle';
import verifySchema from '../../../schemas/rpc/instance.verify.schema.json';
import acceptSchema from '../../../schemas/rpc/migration.accept.schema.json';
import startSchema from '../../../schemas/rpc/migration.start.schema.json';

/** The three migration methods over `mctx`. */
export function migrationMethods(mctx: MigrationContext, launched: Launched, reserved: Set<string> = new Set()): RpcMethod[] {
  return [
    defineMethod({
      name: 'instance.verify',
      summary: 'Reports drift between the runtime file and the live QEMU',
      schema: verifySchema,
      handler: async (p, ctx) => {
        // A known disk's path may end up in the runtime file (when QEMU shows no plain file): the same roots apply.
        if (typeof p.repair === 'object') {
          for (const [i, d] of (p.repair.known?.disks ?? []).entries()) {
            if (d.uri === undefined || d.uri === null) await checkPathParam('instance.verify', `/repair/known/disks/${i}/path`, d.path, ctx.config.storageRoots);
          }
        }
        return verifyInstance(mctx, p.name, {
          ...(p.qmp === undefined ? {} : { qmp: p.qmp }),
          ...(p.repair === true ? { repair: true } : typeof p.repair === 'object' ? { repair: p.repair } : {}),
        });
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
        reserved.add(name);
        try {
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
      handler: (p, ctx) => startMigration(mctx, {
        name: p.name, uri: p.uri,
        ...(p.qmp === undefined ? {} : { qmp: p.qmp }),
        ...(p.targetQmp === undefined ? {} : { targetQmp: p.targetQmp }),
        ...(p.timeoutMs === undefined ? {} : { timeoutMs: p.timeoutMs }),
      }, (progress) => ctx.notify(ctx.client, 'migration.progress', { ...progress })),
    }),
  ];
}
