/**
 * `instance.start` and `instance.cleanup`: writing and removing an
 * instance's runtime file, and (daemon option `launch`) starting QEMU.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GkdError, isGkdError } from '../../errors';
import { launchQemu, type QemuProcess, type RunningQemu } from '../../process';
import type { QmpConnections } from '../../hotplug';
import { currentStamp, Journal, sameStamp, type JournalEntry, type RuntimeStore } from '../../runtime';
import { defineMethod, type CallContext, type RpcMethod } from '../method';
import { planForDaemon } from './instance-plan';
import { checkKvmExtra } from './qemu-host-access';
import startSchema from '../../../schemas/rpc/instance.start.schema.json';
import cleanupSchema from '../../../schemas/rpc/instance.cleanup.schema.json';

type Plan = Awaited<ReturnType<typeof planForDaemon>>;

/** QEMU processes the daemon runs in launch mode (started, or adopted after a restart), by instance name. */
export type Launched = Map<string, RunningQemu>;

/** What instance.start asks of the hotplug engine: void the journal of a QEMU that is gone (HotplugEngine.voidJournal). */
export interface JournalVoider {
  voidJournal(name: string): Promise<{ entries: JournalEntry[]; unwatched: number; unreadable?: Error }>;
}

/** The two lifecycle methods over `store`. */
export function lifecycleMethods(store: RuntimeStore, launched: Launched, connections: QmpConnections, starting: Set<string> = new Set(), previous?: JournalVoider): RpcMethod[] {
  // `starting`: instances an instance.start (or a migration.accept) of this daemon is working on, from
  // the running check through the runtime file write to the launch: a second one for the same name is
  // refused meanwhile, so it can neither overwrite the first one's file nor remove it when its own
  // launch fails.

  /**
   * Before a runtime file for a new QEMU is written (under the lock): the journal's open entries
   * are about the QEMU that ran the instance before, found gone (no live pid file, not run by this
   * daemon). Applied by the next reconcile they would act on the new QEMU, e.g. unplug a device that
   * has the same id; they are dropped unapplied, and said so.
   */
  const voidPrevious = async (name: string, ctx: CallContext): Promise<void> => {
    const voided = await previous?.voidJournal(name);
    if (voided === undefined || (voided.entries.length === 0 && voided.unreadable === undefined)) return;
    const { entries, unwatched, unreadable } = voided;
    const list = entries.map((e) => `${e.op}${e.kind === undefined ? '' : ` ${e.kind}`}${e.id === undefined ? '' : ` "${e.id}"`} (step ${e.step}, written by pid ${e.pid} at ${e.at})`);
    if (unreadable !== undefined) list.push(`an unreadable journal (${unreadable.message})`);
    ctx.log.warn({
      dropped: entries.map(({ seq, op, step, kind, id, uuid, uri, pid, at }) => ({ seq, op, step, kind, id, uuid, uri, pid, at })),
      unwatched, ...(unreadable === undefined ? {} : { err: unreadable }),
    }, `journal of the previous QEMU of "${name}" dropped unapplied: ${list.join('; ')}; that QEMU is gone, and applied to the new one these entries would change it${unwatched > 0 ? `; ${unwatched} pending removal(s) of it no longer watched` : ''}`);
  };

  /** The part of instance.start that runs while `name` is reserved in `starting`. */
  const startReserved = async (name: string, plan: Plan, ctx: CallContext, replace: boolean): Promise<Record<string, unknown>> => {
    // A running instance's runtime file records its hot-plugged devices: never start over it.
    const pid = runningPid(join(ctx.config.runDir, 'pid', name));
    if (pid !== undefined) {
      throw new GkdError('GKD_INSTANCE_BUSY', `Cannot start instance "${name}": QEMU (pid ${pid}) is running it; stop it first`, { field: 'instance.name' });
    }
    await mkdir(store.dir, { recursive: true });
    // No live pid file does not mean no QEMU (another run dir, a pid file lost): an existing runtime
    // file may record hot-plugged devices, so it is replaced only when the caller says so.
    const written = await store.withLock(name, async () => {
      if (!replace && existsSync(store.path(name))) {
        throw new GkdError('GKD_RUNTIME_EXISTS', `Cannot start instance "${name}": it already has a runtime file (${store.path(name)}); pass replace: true to overwrite it, or instance.cleanup it first`, { field: 'replace' });
      }
      await voidPrevious(name, ctx);
      return store.write(name, plan.runtime as never, replace ? {} : { expect: null });
    });
    if (!ctx.config.launch) return { argv: plan.argv, runtime: plan.runtime, devices: plan.devices, launched: false };
    // Ganeti's run dir layout: pid/ and ctrl/ (QMP, serial) must exist before QEMU binds them.
    for (const d of [join(ctx.config.runDir, 'pid'), join(ctx.config.runDir, 'ctrl'), dirname(plan.qmp)]) await mkdir(d, { recursive: true });
    let proc: QemuProcess;
    try {
      proc = await launchQemu(plan.argv, { qmpSocket: plan.qmp });
    } catch (e) {
      // Nothing runs: leave no runtime file claiming otherwise, but remove only the file this
      // call wrote (not one written since by someone else).
      await store.withLock(name, async () => {
        if (sameStamp(await currentStamp(store.path(name)), written)) await store.remove(name);
      }).catch(() => undefined);
      if (isGkdError(e)) throw e;
      throw new GkdError('GKD_LAUNCH_FAILED', `Cannot start QEMU for "${name}": ${(e as Error).message}`, { cause: e });
    }
    launched.set(name, proc);
    // QEMU's -qmp serves one client at a time: hotplug and verify reuse the launcher's.
    connections.adopt(plan.qmp, proc.qmp);
    void proc.exited.finally(() => {
      if (launched.get(name) === proc) launched.delete(name);
    });
    ctx.log.info({ pid: proc.pid }, 'QEMU started');
    return { argv: plan.argv, runtime: plan.runtime, devices: plan.devices, launched: true, pid: proc.pid, qmp: plan.qmp };
  };

  return [
    defineMethod({
      name: 'instance.start',
      summary: 'Plans an instance and writes its runtime file; with the daemon option launch, starts QEMU',
      schema: startSchema,
      handler: async (p, ctx) => {
        // kvm_extra goes into the runtime file and onto a root QEMU's command line: only what it may touch.
        await checkKvmExtra('instance.start', '/instance/hvparams/kvm_extra', p.instance.hvparams?.kvm_extra, ctx.config);
        const plan = await planForDaemon(p, ctx, 'instance.start');
        const name = p.instance.name;
        if (starting.has(name)) {
          throw new GkdError('GKD_INSTANCE_BUSY', `Cannot start instance "${name}": another instance.start or migration.accept of it is in progress`, { field: 'instance.name' });
        }
        if (launched.has(name)) throw new GkdError('GKD_INSTANCE_BUSY', `Cannot start instance "${name}": the daemon already runs it`);
        starting.add(name);
        try {
          return await startReserved(name, plan, ctx, p.replace === true);
        } finally {
          starting.delete(name);
        }
      },
    }),
    defineMethod({
      name: 'instance.cleanup',
      summary: "Removes an instance's runtime file (after it stopped)",
      schema: cleanupSchema,
      handler: async (p, ctx) => {
        const name = p.name;
        // Ganeti removes the file itself when QEMU stops; while QEMU runs the file is its only record
        // of the guest's hot-plugged devices (a stop that failed, a post hook on the wrong node).
        const pid = runningPid(join(ctx.config.runDir, 'pid', name));
        if (pid !== undefined) {
          throw new GkdError('GKD_INSTANCE_RUNNING', `Cannot remove the runtime file of instance "${name}": QEMU (pid ${pid}) is still running it`, { field: 'name' });
        }
        const removed = await store.withLock(name, async () => {
          // The instance is gone: so is whatever its journal still waited for.
          await new Journal(store.dir).remove(name);
          return store.remove(name);
        });
        return { name, removed };
      },
    }),
  ];
}


/** The pid in a QEMU pid file when that process is alive and is a QEMU; undefined otherwise (no file, stale file). */
export function runningPid(pidFile: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /qemu|kvm/.test(cmdline.split('\0')[0]) ? pid : undefined;
  } catch {
    return undefined;
  }
}
