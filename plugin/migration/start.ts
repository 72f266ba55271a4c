/**
 * `migration.start`, on the source: finish what a dead process left half
 * done, refuse while a removal is still pending or on drift, apply the runtime's
 * migration hvparams, run `migrate`, report progress, and judge success on
 * the target. The instance lock is held throughout as an exclusive hold, so
 * a hotplug arriving meanwhile fails at once with GKD_INSTANCE_BUSY.
 */
import { GkdError, isGkdError } from '../errors';
import { faultPoint } from '../fault-point';
import type { QmpClient, QmpEvent } from '../qmp';
import type { MigrationContext } from './context';
import { settleTarget } from './failure';
import { migrationSettings } from './migration-settings';
import { judgeTarget, type TargetVerdict } from './target-verdict';
import { describeUnplaced, unplacedDevices } from './unplaced';
import { pidFilesOf, runtimeDrift } from './verify';

/** Params of {@link startMigration}. */
export interface StartParams {
  name: string;
  /** Where the target listens: `tcp:HOST:PORT` or `unix:/PATH`. */
  uri: string;
  /** Source QMP socket; overrides `ctx.qmpSocket(name)`. */
  qmp?: string;
  /** The target's QMP socket, when reachable from here: success is then judged on the target. */
  targetQmp?: string;
  /** Give up (and `migrate_cancel`) after this long, ms. @default START_DEFAULTS.timeoutMs */
  timeoutMs?: number;
  /** How long the target may take to run after the source's `completed`, ms. @default START_DEFAULTS.settleMs */
  settleMs?: number;
}

/** One progress report. */
export interface MigrationProgress {
  name: string;
  /** The source's `query-migrate` status: setup, active, device, completed, failed… */
  status: string;
  elapsedMs: number;
  /** RAM bytes: sent, left, in total; MB/s. */
  transferred?: number;
  remaining?: number;
  total?: number;
  mbps?: number;
}

/** What {@link startMigration} returns on success. */
export interface StartResult {
  status: 'completed';
  elapsedMs: number;
  source: { status: string; totalTimeMs?: number; downtimeMs?: number };
  /** `confirmed` only when `targetQmp` was given and the target took over. */
  target: { confirmed: boolean; status?: string; detail: string };
}

/** Defaults of {@link startMigration}. */
export const START_DEFAULTS = {
  timeoutMs: 30 * 60_000,
  settleMs: 10_000,
  /** query-migrate interval; MIGRATION events wake the loop earlier. */
  pollMs: 100,
  /** query-status interval on the target while it settles. */
  targetPollMs: 20,
  /** After `migrate_cancel`, how long the source may take to reach a final status. */
  cancelSettleMs: 5_000,
} as const;

interface QueryMigrate {
  status?: string;
  'error-desc'?: string;
  'total-time'?: number;
  downtime?: number;
  ram?: { transferred?: number; remaining?: number; total?: number; mbps?: number };
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
/** Source statuses after which the guest cannot be on the target. */
const NOT_HANDED_OVER = new Set(['failed', 'cancelled']);
const RUNNING_MIGRATION = new Set(['setup', 'active', 'device', 'pre-switchover', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'wait-unplug', 'cancelling']);

async function status(qmp: QmpClient): Promise<string> {
  return (await qmp.execute<{ status: string }>('query-status')).status;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `migrate_cancel` (best effort), then the source's `query-migrate` once it
 * is final (or after `cancelSettleMs`); undefined when the source does not
 * answer. A cancel that comes too late leaves `completed`.
 */
async function cancelAndRead(src: QmpClient): Promise<QueryMigrate | undefined> {
  await src.execute('migrate_cancel', undefined, { timeoutMs: 2_000 }).catch(() => undefined);
  const deadline = Date.now() + START_DEFAULTS.cancelSettleMs;
  for (;;) {
    const q = await src.execute<QueryMigrate>('query-migrate', undefined, { timeoutMs: 2_000 }).catch(() => undefined);
    if (q === undefined || q.status === undefined || TERMINAL.has(q.status) || Date.now() >= deadline) return q;
    await sleep(50);
  }
}

/**
 * Migrates instance `name` to `uri`.
 *
 * The source runs with the `return-path` capability: the target then
 * acknowledges the whole state, and QEMU 7.2's source reports `failed`
 * rather than `completed` when the target could not load it. With
 * `targetQmp`, success is still judged on the target.
 *
 * @throws GkdError `GKD_INSTANCE_BUSY` (a hotplug or migration holds it),
 *   `GKD_UNSUPPORTED_VALUE` (a bad migration hvparam, `field`),
 *   `GKD_DRIFT` naming the drifted devices (`data.differences`),
 *   `GKD_MIGRATION_REFUSED` (a removal still pending, `data.pending`;
 *   devices without an id, target not waiting, source is itself incoming), `GKD_MIGRATION_FAILED` saying what each
 *   side showed; a source that was running is resumed when nothing else can
 *   run the guest, else `data.ambiguous` is true and neither side was resumed
 */
export async function startMigration(ctx: MigrationContext, params: StartParams, notify?: (p: MigrationProgress) => void): Promise<StartResult> {
  const { name } = params;
  let started = false;
  try {
    return await ctx.store.withLock(
      name,
      () => {
        started = true;
        return migrateLocked(ctx, params, notify);
      },
      { wait: 0, exclusive: 'migration' },
    );
  } catch (e) {
    if (!started && isGkdError(e) && e.code === 'GKD_RUNTIME_LOCKED') {
      throw new GkdError('GKD_INSTANCE_BUSY', `Cannot migrate instance "${name}": another operation (a hotplug) holds it; retry when it ends`, { field: 'name', cause: e });
    }
    throw e;
  }
}

/** The journal's pending removals of `name`, as `data.pending` of the refusal. */
interface PendingRemoval {
  kind?: 'disk' | 'nic';
  id?: string;
  uuid?: string;
  recorded: boolean;
}

/**
 * Refuses while a removal of `name` is still pending: the runtime file (which
 * goes to the target) keeps such a device until QEMU lets go of it, and
 * after the handover no process would finish the removal on either side.
 */
async function refusePending(ctx: MigrationContext, name: string): Promise<void> {
  const pending: PendingRemoval[] = (await ctx.journal?.read(name) ?? []).filter((e) => e.op === 'pending').map((e) => ({
    ...(e.kind === undefined ? {} : { kind: e.kind }), ...(e.id === undefined ? {} : { id: e.id }),
    ...(e.uuid === undefined || e.uuid === '' ? {} : { uuid: e.uuid }), recorded: e.recorded === true,
  }));
  if (pending.length === 0) return;
  const list = pending.map((p) => `${p.kind ?? 'device'} "${p.id ?? '?'}"${p.recorded ? '' : ' (the backend of a rolled-back hot-add)'}`).join(', ');
  throw new GkdError('GKD_MIGRATION_REFUSED', `Cannot migrate instance "${name}": the removal of ${list} is still pending (QEMU has not let go of it yet); its runtime file, which the target would take over, still lists it and nothing would finish the removal after the handover. Wait for the guest to release it (a device.removed notification says when; instance.verify lists what is pending) and retry; nothing was moved`, {
    field: 'name', ...(pending[0].id === undefined ? {} : { device: pending[0].id }), data: { pending },
  });
}

async function migrateLocked(ctx: MigrationContext, params: StartParams, notify?: (p: MigrationProgress) => void): Promise<StartResult> {
  const { name } = params;
  // What a dead process left half done is finished first (the lock is ours, exclusively): the checks
  // below then see the instance as it is, and a pending removal it finishes no longer blocks.
  await ctx.reconcileLocked?.(name);
  await refusePending(ctx, name);
  const read = await ctx.store.read(name);
  const { upgraded, format } = read;
  // What the runtime alone rules out is refused before any QEMU is contacted.
  const settings = migrationSettings(upgraded[2]);
  const unplaced = unplacedDevices(upgraded, format);
  if (unplaced.length > 0) {
    throw new GkdError('GKD_MIGRATION_REFUSED', `Cannot migrate instance "${name}": ${describeUnplaced(unplaced)}`, { field: 'name', data: { unplaced } });
  }
  // The migration's own connections: held from the first check to the verdict and closed right after,
  // never closed for idleness meanwhile (a paused source sends nothing for long stretches).
  return ctx.connections.use(params.qmp ?? ctx.qmpSocket(name), (src) => {
    const phase: Phase = { migrateSent: false };
    return failedIfSourceExits(params, src, phase, () => migrateOver(ctx, params, src, read, settings, phase, notify));
  });
}

/** How far a migration got: once `migrate` is sent, every failure is judged by the verdict rules. */
interface Phase {
  migrateSent: boolean;
}

/**
 * Runs `work` on the source connection `src`. A source QEMU that exits before `migrate` is sent
 * (QEMU closes the connection: a crash, a kill) fails the step under way with the QMP error
 * GKD_QMP_CLOSED; the answer is the migration's failure instead, GKD_MIGRATION_FAILED, saying that
 * nothing was sent to the target: the stream never began, so the target cannot have the guest and
 * nothing is ambiguous. The journal entry, if one was opened, is closed with this verdict (the
 * connection was not cut from this side). A connection this daemon closed (its shutdown) is no
 * verdict on QEMU: that error passes unchanged, as do QEMU's refusals of a step.
 */
async function failedIfSourceExits<T>(params: StartParams, src: QmpClient, phase: Phase, work: () => Promise<T>): Promise<T> {
  let exited: GkdError | undefined;
  const onClose = (err?: GkdError): void => {
    if (err !== undefined) exited ??= err;
  };
  src.on('close', onClose);
  try {
    return await work();
  } catch (e) {
    if (phase.migrateSent || exited === undefined || !isGkdError(e) || e.code !== 'GKD_QMP_CLOSED') throw e;
    const { name, uri } = params;
    throw new GkdError('GKD_MIGRATION_FAILED', `Cannot migrate instance "${name}" to "${uri}": the source's QEMU exited before the migration started (${e.message}); \`migrate\` was never sent, so the target was sent nothing and is left as it was`, {
      cause: e,
      data: {
        source: { migration: 'none', error: e.message, status: 'exited', resumed: false },
        target: { checked: false, detail: 'nothing was sent to it' },
        ambiguous: false,
      },
    });
  } finally {
    src.off('close', onClose);
  }
}

async function migrateOver(
  ctx: MigrationContext,
  params: StartParams,
  src: QmpClient,
  { upgraded, format }: Pick<Awaited<ReturnType<MigrationContext['store']['read']>>, 'upgraded' | 'format'>,
  settings: ReturnType<typeof migrationSettings>,
  phase: Phase,
  notify?: (p: MigrationProgress) => void,
): Promise<StartResult> {
  const { name } = params;
  const srcSocket = params.qmp ?? ctx.qmpSocket(name);
  const before = await status(src);
  if (before === 'inmigrate') throw new GkdError('GKD_MIGRATION_REFUSED', `Cannot migrate instance "${name}": its QEMU is itself waiting for an incoming migration`, { field: 'name' });
  const current = (await src.execute<QueryMigrate>('query-migrate')).status;
  if (current !== undefined && RUNNING_MIGRATION.has(current)) {
    throw new GkdError('GKD_INSTANCE_BUSY', `Cannot migrate instance "${name}": QEMU already runs a migration (status "${current}")`, { field: 'name' });
  }
  const differences = await runtimeDrift(upgraded, src, format, { qmpSocket: srcSocket, pidFiles: pidFilesOf(upgraded, name, ctx.node?.runDir) }, ctx);
  if (differences.length > 0) {
    const list = differences.map((d) => `"${d.device}" (${d.kind})`).join(', ');
    throw new GkdError('GKD_DRIFT', `Cannot migrate instance "${name}": the runtime file and QEMU disagree on ${list}; run instance.verify`, {
      device: differences[0].device,
      data: { differences },
    });
  }

  const socket = srcSocket;
  const journaled = async (target: QmpClient | undefined): Promise<StartResult> => {
    // Recorded before `migrate` and closed with the verdict: a daemon killed in between leaves the
    // entry, and its successor reports the migration status QEMU reached (hotplug/reconcile.ts).
    const entry = await ctx.journal?.open(name, {
      op: 'migration', step: 'migrate', socket, uri: params.uri, ...(params.targetQmp === undefined ? {} : { targetQmp: params.targetQmp }),
    });
    faultPoint('migration-source:journaled');
    // A connection closed from this side while the migration runs (the daemon's shutdown closing every
    // connection once its grace is over; QEMU closing it reports an error instead) leaves no verdict:
    // what runMigration then concludes is only that it lost its monitor. The entry stays open, so the
    // next daemon reports the migration as interrupted with the status QEMU reached, as after a SIGKILL.
    let cutHere = false;
    const onClose = (err?: GkdError): void => {
      if (err === undefined) cutHere = true;
    };
    src.on('close', onClose);
    target?.on('close', onClose);
    try {
      return await runMigration(params, src, target, before, settings, phase, notify);
    } finally {
      src.off('close', onClose);
      target?.off('close', onClose);
      if (entry !== undefined && !cutHere) await ctx.journal?.close(name, entry.seq);
    }
  };
  if (params.targetQmp === undefined) return journaled(undefined);
  return ctx.connections.use(params.targetQmp, async (target) => {
    const ts = await status(target);
    if (ts !== 'inmigrate') {
      throw new GkdError('GKD_MIGRATION_REFUSED', `Cannot migrate instance "${name}": the target is "${ts}", not waiting for an incoming migration`, { field: 'targetQmp' });
    }
    return journaled(target);
  });
}

async function runMigration(params: StartParams, src: QmpClient, target: QmpClient | undefined, before: string, settings: ReturnType<typeof migrationSettings>, phase: Phase, notify?: (p: MigrationProgress) => void): Promise<StartResult> {
  const { name, uri } = params;
  const timeoutMs = params.timeoutMs ?? START_DEFAULTS.timeoutMs;
  const settleMs = params.settleMs ?? START_DEFAULTS.settleMs;

  // MIGRATION events (with the events capability) wake the progress loop at once on each state change.
  // return-path: the target acknowledges the loaded state, so a target that failed to load makes the source
  // say `failed` instead of `completed` (qemu-lab.md section 6).
  const caps = [...new Set(['events', 'return-path', ...settings.capabilities])].map((capability) => ({ capability, state: true }));
  await src.execute('migrate-set-capabilities', { capabilities: caps });
  if (Object.keys(settings.parameters).length > 0) await src.execute('migrate-set-parameters', settings.parameters);

  const wasRunning = before === 'running';
  // Armed before `migrate`: the target's RESUME may come before the source's final query-migrate.
  const resumed = target !== undefined && wasRunning ? target.expectEvent('RESUME', undefined, timeoutMs + settleMs) : undefined;
  const t0 = Date.now();
  let wake: () => void = () => undefined;
  const onEvent = (ev: QmpEvent): void => {
    if (ev.event === 'MIGRATION') wake();
  };
  src.on('event', onEvent);
  let last: QueryMigrate = {};
  let lostTrack: unknown;
  try {
    try {
      phase.migrateSent = true;
      await src.execute('migrate', { uri });
      faultPoint('migration-source:started');
    } catch (e) {
      // Without an answer (connection lost, timeout) QEMU may have begun sending: that is judged
      // below like any migration we lost track of, the target checked. Only a refusal is "not touched".
      if (!isGkdError(e) || e.code !== 'GKD_QMP_COMMAND') throw e;
      resumed?.cancel();
      throw new GkdError('GKD_MIGRATION_FAILED', `Cannot migrate instance "${name}" to "${uri}": QEMU refused to start: ${(e as Error).message}; the source was not touched`, {
        cause: e,
        data: { source: { status: before }, target: { status: 'not contacted' } },
      });
    }
    let lastReport = '';
    for (;;) {
      last = await src.execute<QueryMigrate>('query-migrate');
      const p: MigrationProgress = { name, status: last.status ?? 'none', elapsedMs: Date.now() - t0, ...last.ram };
      const key = `${p.status}/${p.transferred ?? ''}`;
      if (notify !== undefined && key !== lastReport) {
        lastReport = key;
        notify({ name, status: p.status, elapsedMs: p.elapsedMs, ...pick(last.ram) });
      }
      if (last.status === undefined || TERMINAL.has(last.status)) break;
      if (Date.now() - t0 > timeoutMs) {
        const q = await cancelAndRead(src);
        // A cancel that came too late leaves `completed`: then it is judged like any other.
        last = q?.status === 'completed' ? q : { ...(q ?? last), status: q?.status ?? 'unknown', 'error-desc': `no result within ${timeoutMs} ms, cancelled` };
        break;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, START_DEFAULTS.pollMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  } catch (e) {
    if (isGkdError(e) && e.code === 'GKD_MIGRATION_FAILED') throw e;
    // A QMP error or timeout while the stream runs: stop it, then judge what is left like any failure.
    lostTrack = e;
    const q = await cancelAndRead(src);
    const why = `lost track of the migration (${(e as Error).message}); migrate_cancel sent`;
    last = q?.status === 'completed' ? q : { ...(q ?? {}), status: q?.status ?? 'unknown', 'error-desc': why };
  } finally {
    src.off('event', onEvent);
  }

  if (last.status === 'completed') faultPoint('migration-source:completed');
  let verdict: TargetVerdict | undefined;
  if (last.status === 'completed' && target !== undefined) verdict = await judgeTarget(target, wasRunning, settleMs, START_DEFAULTS.targetPollMs, resumed);
  resumed?.cancel();
  const elapsedMs = Date.now() - t0;
  const source = { status: last.status ?? 'none', ...(last['total-time'] === undefined ? {} : { totalTimeMs: last['total-time'] }), ...(last.downtime === undefined ? {} : { downtimeMs: last.downtime }) };
  if (last.status === 'completed' && (verdict === undefined || verdict.ok)) {
    return {
      status: 'completed',
      elapsedMs,
      source,
      target:
        verdict === undefined
          ? { confirmed: false, detail: 'not checked here (no target QMP socket was given); the target acknowledged the whole state over the return path' }
          : { confirmed: true, status: verdict.status, detail: verdict.detail },
    };
  }
  throw await failed({ name, uri, src, wasRunning, last, verdict, target, targetQmp: params.targetQmp, cause: lostTrack });
}

function pick(ram: QueryMigrate['ram']): Partial<MigrationProgress> {
  if (ram === undefined) return {};
  const out: Partial<MigrationProgress> = {};
  for (const k of ['transferred', 'remaining', 'total', 'mbps'] as const) if (typeof ram[k] === 'number') out[k] = ram[k];
  return out;
}

/**
 * The source's run state once QEMU has finished with the migration: right
 * after `failed` it may still be `finish-migrate` for a moment, before QEMU
 * restarts a source that was running or parks it in `postmigrate`.
 */
async function settledStatus(src: QmpClient): Promise<string> {
  const deadline = Date.now() + START_DEFAULTS.cancelSettleMs;
  for (;;) {
    const st = await status(src).catch(() => 'unknown');
    if (st !== 'finish-migrate' || Date.now() >= deadline) return st;
    await sleep(20);
  }
}

interface Failure {
  name: string;
  uri: string;
  src: QmpClient;
  wasRunning: boolean;
  /** The source's last query-migrate (status `unknown` when it stopped answering). */
  last: QueryMigrate;
  verdict: TargetVerdict | undefined;
  target: QmpClient | undefined;
  targetQmp: string | undefined;
  /** The error that made the loop lose track, if one did. */
  cause: unknown;
}

/**
 * Builds the failure after making the target side safe and, when it is,
 * putting the source back the way it was (see failure.ts for the rule).
 */
async function failed(f: Failure): Promise<GkdError> {
  const { name, uri, src, wasRunning, last, verdict, target } = f;
  const handedOver = !NOT_HANDED_OVER.has(last.status ?? '');
  const t = await settleTarget(target, verdict, handedOver, f.targetQmp);
  let after = await settledStatus(src);
  let resumed = false;
  // A source that said `completed` sits in `postmigrate` with its CPUs stopped; `cont` brings the guest back.
  if (t.safe && wasRunning && after !== 'running') {
    resumed = await src.execute('cont').then(() => true, () => false);
    after = await status(src).catch(() => after);
  }
  const srcText = `source said "${last.status ?? 'none'}"${last['error-desc'] === undefined ? '' : ` (${last['error-desc']})`}`;
  const endText = !t.safe
    ? `neither side was resumed (the source is "${after}"): find out which QEMU runs the guest before resuming or stopping either`
    : wasRunning
      ? after === 'running'
        ? 'the source is running again'
        : `the source could not be resumed (status "${after}")`
      : `the source stays "${after}"`;
  return new GkdError('GKD_MIGRATION_FAILED', `Cannot migrate instance "${name}" to "${uri}": ${srcText}; ${t.detail}; ${endText}`, {
    ...(f.cause === undefined ? {} : { cause: f.cause }),
    data: {
      source: { migration: last.status ?? 'none', ...(last['error-desc'] === undefined ? {} : { error: last['error-desc'] }), status: after, resumed },
      target: t.checked
        ? { checked: true, status: t.status, detail: t.detail, stopped: t.stopped, ...(t.migration === undefined ? {} : { migration: t.migration }) }
        : { checked: false },
      ambiguous: !t.safe,
    },
  });
}
