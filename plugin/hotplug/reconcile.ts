/**
 * Finishing what a dead process left half done, from its journal entries
 * (runtime/journal.ts). Runs under the instance lock, before any other
 * operation on an instance with an open entry and at daemon start.
 *
 * The rule, for each entry, read against QEMU's live state:
 * - add: the device is in QEMU where the journal says (verified as after a
 *   hot-add) → rolled forward: recorded in the runtime file if it is not
 *   yet. Otherwise rolled back: the device asked back, the block node or
 *   netdev deleted ("not found" means the step never ran).
 * - remove: QEMU no longer has the device → rolled forward: backend
 *   deleted, runtime entry dropped. Still there → the removal was asked for,
 *   so it is asked again and becomes a pending removal.
 * - pending: handed to the background finisher (it survives restarts this way).
 * - accept (a migration target): a QEMU serves the target's socket → the
 *   runtime file stays; nothing listens → the file the dead accept wrote is
 *   removed, so a retried accept is not refused.
 * - migration: the source's migration status is read and logged; the
 *   entry is closed (the verdict rules of migration.start apply to a
 *   caller that retries; nothing is resumed or stopped behind its back).
 *
 * Every outcome is logged; nothing is dropped silently.
 */
import type { Logger } from 'pino';
import { isGkdError } from '../errors';
import { readLiveDevice } from '../inspect';
import { processExists } from '../process-exists';
import type { QmpClient } from '../qmp';
import type { Journal, JournalEntry, RuntimeStore } from '../runtime';
import type { HvInfo, RuntimeDiskEntry, RuntimeNic } from '../types';
import type { DeviceKind } from './allocate';
import type { QmpConnections } from './connections';
import type { PendingUnplugs, RemovedEvent } from './pending';
import { entryOf, withEntry, withoutEntry } from './runtime-entries';
import { askUnplug, dropBackend, UNPLUG_POLL } from './unplug-wait';
import { verifyAdded } from './verify';

export interface ReconcileDeps {
  store: RuntimeStore;
  journal: Journal;
  connections: QmpConnections;
  pending: PendingUnplugs;
  log: Logger;
  onRemoved?: (ev: RemovedEvent) => void;
}

/** What happened to one journal entry. */
export interface ReconcileOutcome {
  seq: number;
  op: JournalEntry['op'];
  id?: string;
  outcome: 'rolled-forward' | 'rolled-back' | 'pending' | 'closed';
  detail: string;
}

/** True when `name`'s journal has entries other than pending removals already being finished here. */
export async function needsReconcile(d: Pick<ReconcileDeps, 'journal' | 'pending'>, name: string): Promise<boolean> {
  const entries = await d.journal.read(name);
  return entries.some((e) => e.op !== 'pending' || !d.pending.has(name, e.id ?? ''));
}

/**
 * The entries of `name` a reconcile would act on, read without the lock:
 * those of {@link needsReconcile}, less a migration whose writer is alive
 * (in flight; a migration adds and removes no device and writes no runtime
 * file, so a comparison made meanwhile is consistent).
 */
export async function unsettledEntries(d: Pick<ReconcileDeps, 'journal' | 'pending'>, name: string): Promise<JournalEntry[]> {
  const entries = await d.journal.read(name);
  return entries.filter((e) => (e.op !== 'pending' || !d.pending.has(name, e.id ?? '')) && !(e.op === 'migration' && processExists(e.pid)));
}

/** Reconciles every open entry of `name` (call under the instance lock). */
export async function reconcileInstance(d: ReconcileDeps, name: string): Promise<ReconcileOutcome[]> {
  const entries = await d.journal.read(name);
  if (entries.length === 0) return [];
  const log = d.log.child({ instance: name });
  // Without a runtime file the instance was cleaned up: its QEMU and every device with it are gone.
  const exists = await d.store.read(name).then(() => true, (e: unknown) => {
    if (isGkdError(e) && e.code === 'GKD_RUNTIME_NOT_FOUND') return false;
    throw e;
  });
  if (!exists) {
    await d.journal.remove(name);
    log.info({ entries: entries.length }, 'journal dropped: the instance has no runtime file');
    return entries.map((e) => ({ seq: e.seq, op: e.op, ...(e.id === undefined ? {} : { id: e.id }), outcome: 'closed' as const, detail: 'the instance has no runtime file' }));
  }
  const out: ReconcileOutcome[] = [];
  for (const e of entries) {
    const o = await reconcileEntry(d, name, e);
    log[o.outcome === 'pending' ? 'warn' : 'info']({ seq: e.seq, op: e.op, step: e.step, device: e.id, outcome: o.outcome }, `reconciled: ${o.detail}`);
    out.push(o);
  }
  return out;
}

async function reconcileEntry(d: ReconcileDeps, name: string, e: JournalEntry): Promise<ReconcileOutcome> {
  const base = { seq: e.seq, op: e.op, ...(e.id === undefined ? {} : { id: e.id }) };
  if (e.op === 'pending') {
    const p = { name, kind: e.kind as DeviceKind, uuid: e.uuid ?? '', id: e.id as string, socket: e.socket as string, recorded: e.recorded === true, seq: e.seq };
    // The guest may have let go while no daemon watched: finish it now, in this reconcile.
    if (await d.pending.finishNow(p)) return { ...base, outcome: 'rolled-forward', detail: 'QEMU no longer has the device; the pending removal was finished' };
    d.pending.watch(p);
    return { ...base, outcome: 'pending', detail: 'waiting in the background for QEMU to let go of the device' };
  }
  if (e.op === 'accept') {
    // A migration target's accept wrote the runtime file and died before answering. A QEMU serving the
    // target's socket means the file is in use; no listener at all means nothing runs it: remove it, so
    // a retried accept is not refused forever. Anything else (busy, a timeout) keeps the entry open.
    const answer = await d.connections.use(e.socket as string, (q) => q.execute<{ status: string }>('query-status')).then(
      (st) => ({ serving: true as const, status: st.status }),
      (err: unknown) => {
        const reason = isGkdError(err) ? String((err.data as { reason?: unknown } | undefined)?.reason ?? '') : '';
        if (reason === 'ENOENT' || reason === 'ECONNREFUSED') return { serving: false as const };
        throw err;
      },
    );
    if (!answer.serving) await d.store.remove(name);
    await d.journal.close(name, e.seq);
    return answer.serving
      ? { ...base, outcome: 'rolled-forward', detail: `an interrupted migration accept: a QEMU serves the target (status "${answer.status}"); its runtime file stays` }
      : { ...base, outcome: 'rolled-back', detail: 'an interrupted migration accept: no QEMU serves the target; the runtime file it wrote was removed' };
  }
  if (e.op === 'migration') {
    const status = await d.connections.use(e.socket as string, (q) => q.execute<{ status?: string }>('query-migrate')).then((m) => m.status ?? 'none', (err: unknown) => `unknown (${(err as Error).message})`);
    await d.journal.close(name, e.seq);
    return { ...base, outcome: 'closed', detail: `a migration to ${e.uri ?? '?'} was interrupted; the source's migration status is "${status}"; nothing was resumed or stopped` };
  }
  const kind = e.kind as DeviceKind;
  const id = e.id as string;
  const socket = e.socket as string;
  const read = await d.store.read(name);
  const recorded = entryOf(read.upgraded, kind, e.uuid ?? '') !== undefined;
  if (e.op === 'add') {
    const result = await d.connections.use(socket, async (qmp): Promise<ReconcileOutcome> => {
      const present = (await readLiveDevice(qmp, id)) !== undefined;
      if (present && recorded) return { ...base, outcome: 'rolled-forward', detail: 'QEMU has the device and the runtime file records it' };
      if (present) {
        const ok = await verifyAdded(qmp, id, e.hvinfo as unknown as HvInfo, kind).then(() => true, () => false);
        if (ok && e.entry !== undefined) {
          await d.store.writeKeepingFormat(name, withEntry(read.upgraded, kind, e.entry as RuntimeDiskEntry | RuntimeNic), read);
          return { ...base, outcome: 'rolled-forward', detail: 'QEMU has the device where planned; recorded it in the runtime file' };
        }
        return unplugBack(d, name, e, qmp, 'QEMU has the device, but not where planned');
      }
      const drop = await dropBackend(qmp, kind, id);
      if (!drop.done) return pendingBackend(d, name, e, 'the block node is still in use');
      return { ...base, outcome: 'rolled-back', detail: `QEMU does not have the device; ${drop.warnings.length === 0 ? 'its backend was deleted' : 'no backend was left'}` };
    });
    if (result.outcome !== 'pending') await d.journal.close(name, e.seq);
    return result;
  }
  // remove
  const result = await d.connections.use(socket, async (qmp): Promise<ReconcileOutcome> => {
    const present = (await readLiveDevice(qmp, id)) !== undefined;
    if (present) {
      // The caller asked for the removal: ask QEMU again; SCSI devices go at once, PCI ones need the guest.
      if (!(await unplugNow(qmp, id))) {
        await d.journal.update(name, { ...e, op: 'pending', step: 'wait', recorded: true });
        d.pending.watch({ name, kind, uuid: e.uuid ?? '', id, socket, recorded: true, seq: e.seq });
        return { ...base, outcome: 'pending', detail: 'QEMU still has the device; its removal was asked again and is pending' };
      }
    }
    const drop = await dropBackend(qmp, kind, id);
    if (!drop.done) return pendingBackend(d, name, { ...e, recorded }, 'the block node is still in use');
    if (recorded) {
      const again = await d.store.read(name);
      await d.store.writeKeepingFormat(name, withoutEntry(again.upgraded, kind, e.uuid ?? ''), again);
    }
    d.onRemoved?.({ name, kind, uuid: e.uuid ?? '', id, warnings: drop.warnings });
    return { ...base, outcome: 'rolled-forward', detail: 'QEMU no longer has the device; backend deleted and the runtime entry dropped' };
  });
  if (result.outcome !== 'pending') await d.journal.close(name, e.seq);
  return result;
}

/**
 * Asks QEMU to unplug `id` and waits briefly for DEVICE_DELETED: true when
 * the device is gone, false when the guest has not released it yet (or an
 * unplug is already under way); the wait is short, the socket may be Ganeti's.
 */
async function unplugNow(qmp: QmpClient, id: string): Promise<boolean> {
  const r = await askUnplug(qmp, id, UNPLUG_POLL.firstWaitMs);
  if (r instanceof Error && !/in the process of unplug/i.test(r.message)) throw r;
  return r === 'gone';
}

/** Asks a half-added device back; what the guest still holds is left to the background finisher. */
async function unplugBack(d: ReconcileDeps, name: string, e: JournalEntry, qmp: QmpClient, why: string): Promise<ReconcileOutcome> {
  const id = e.id as string;
  const kind = e.kind as DeviceKind;
  if (!(await unplugNow(qmp, id))) return pendingBackend(d, name, e, `${why}; asked it back, the guest has not released it yet`);
  const drop = await dropBackend(qmp, kind, id);
  if (!drop.done) return pendingBackend(d, name, e, `${why}; asked it back, its block node is still in use`);
  return { seq: e.seq, op: e.op, id, outcome: 'rolled-back', detail: `${why}; the device and its backend were removed` };
}

/** Turns the entry into a pending removal whose backend the finisher deletes once QEMU let go. */
async function pendingBackend(d: ReconcileDeps, name: string, e: JournalEntry, why: string): Promise<ReconcileOutcome> {
  const recorded = e.op === 'remove' && e.recorded === true;
  await d.journal.update(name, { ...e, op: 'pending', step: 'wait', recorded });
  d.pending.watch({ name, kind: e.kind as DeviceKind, uuid: e.uuid ?? '', id: e.id as string, socket: e.socket as string, recorded, seq: e.seq });
  return { seq: e.seq, op: e.op, ...(e.id === undefined ? {} : { id: e.id }), outcome: 'pending', detail: why };
}
