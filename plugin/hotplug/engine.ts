/**
 * The hotplug engine: disk and NIC add/remove on a live QEMU, recorded in
 * the runtime file only once QEMU confirms, rolled back step by step on
 * failure. One operation at a time per instance (an in-process queue plus
 * the runtime file's cross-process lock, held across the QMP work);
 * different instances proceed in parallel.
 */
import pino, { type Logger } from 'pino';
import { GkdError, isGkdError } from '../errors';
import {
  blockdevArgs, deviceId, diskDeviceArgs, diskEntry, diskIo, diskReadOnly, runtimeHvParams, netdevArgs, nicDeviceArgs, nicEntry, SCSI_BUS, type QemuDict,
} from '../planner';
import type { QmpClient } from '../qmp';
import { faultPoint } from '../fault-point';
import { canonicalAddrToSlot, convertRuntime, Journal, pciEraDriver, pciEraId, type JournalEntry, type RuntimeStore } from '../runtime';
import type { DiskSpec, HvInfo, HvParams, NicSpec, RuntimeFormatId, RuntimeV2_16 } from '../types';
import { allocate, NO_LIVE_OCCUPANCY, occupancyNeeds, withTaken, type DeviceKind, type LiveOccupancy } from './allocate';

/** The one PCI bus of the PCI-era runtime format (2.10). */
const PCI_ERA_BUS = 'pci.0';
import type { QmpConnections } from './connections';
import { readOccupancy } from './occupancy';
import { PendingUnplugs, type PendingEvent, type RemovedEvent } from './pending';
import { needsReconcile, reconcileInstance, unsettledEntries, type ReconcileOutcome } from './reconcile';
import { askUnplug, dropBackend, pollUntilGone, UNPLUG_POLL } from './unplug-wait';
import { entryOf, withEntry, withoutEntry } from './runtime-entries';
import { AddRecord, type Placement } from './add-record';
import { AddSteps } from './add-steps';
import { nameTaken, takenBy } from './refusals';
import { PhaseClock, type AddTimingHook } from './timing';
import { UndoLog } from './undo';
import { verifyPlaced } from './verify';

/** Defaults of {@link HotplugEngine}. */
export const HOTPLUG_DEFAULTS = {
  /** How long to wait for the guest to release a device (DEVICE_DELETED) before reporting it pending. */
  unplugTimeoutMs: 5_000,
  /** How long to wait for another operation on the same instance. */
  lockWaitMs: 60_000,
  /** How many operations may wait for one instance in this process; more get GKD_OVERLOADED. */
  maxQueued: 32,
} as const;

/** QEMU run states in which a hotplug would break a migration. */
const MIGRATION_STATES = new Set(['inmigrate', 'postmigrate', 'finish-migrate']);

/** What the engine works with: the store, the shared QMP connections, and its timeouts. */
export interface HotplugEngineOptions {
  store: RuntimeStore;
  connections: QmpConnections;
  /** The QMP socket of instance `name` (the daemon's configured pattern). */
  qmpSocket: (name: string) => string;
  /** `kvm` (default) or `tcg`: vhost-net is only asked for under KVM. */
  accel?: 'kvm' | 'tcg';
  unplugTimeoutMs?: number;
  lockWaitMs?: number;
  maxQueued?: number;
  isBlockDevice?: (path: string) => boolean;
  /** Called when a removal reported as pending completes later. */
  onRemoved?: (ev: RemovedEvent) => void;
  /** Called when a pending removal stays unfinished (announced with back-off, see pending.ts). */
  onPending?: (ev: PendingEvent) => void;
  /** Where background work (pending removals) reports. @default silent */
  logger?: Logger;
  /** Receives the phases of every successful hot-add (the benchmark's breakdown). @default none */
  onAddTiming?: AddTimingHook;
}

/** Per-call options of the engine's operations. */
export interface CallOptions {
  /** QMP socket override for this call. */
  qmp?: string;
  unplugTimeoutMs?: number;
  /**
   * The caller's abort (it disconnected, timed out, or the daemon is shutting down): an operation
   * still queued when it fires is answered GKD_CANCELLED at once and never started; one already
   * running completes, so QEMU and the runtime file are never left half done.
   */
  signal?: AbortSignal;
}

/** A hot-add's result: where the device went. */
export interface AddResult {
  hvinfo: HvInfo;
}
/** A completed removal: the hvinfo the device had, and what could not be cleaned (a backend QEMU had already dropped). */
export interface RemoveResult {
  hvinfo: HvInfo;
  status: 'removed';
  warnings: string[];
}

/** What one hot-add carries between its turn in the queue and its work. */
interface AddContext {
  clock: PhaseClock;
  /** The connection started before the lock was taken (see #addTimed). */
  early: { opened: Promise<void>; release(): Promise<void> } | undefined;
  /** The runtime dir's sync, started once the runtime file is in place; the answer waits for it. */
  durable?: Promise<void>;
  /** Called once the runtime file is in place: the caller may be answered (see #addTimed). */
  committed(result: AddResult): void;
}

/** Disk and NIC hot-add/remove on live QEMUs, recorded in their runtime files (see the file comment). */
export class HotplugEngine {
  readonly #o: Required<Omit<HotplugEngineOptions, 'isBlockDevice' | 'onRemoved' | 'onPending' | 'logger' | 'onAddTiming'>> & HotplugEngineOptions;
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Operations queued or running per instance (the bound of maxQueued). */
  readonly #waiting = new Map<string, number>();
  readonly #pending: PendingUnplugs;
  readonly #log: Logger;
  /** The intent journal, next to the runtime files. */
  readonly journal: Journal;

  constructor(options: HotplugEngineOptions) {
    this.#o = { accel: 'kvm', ...HOTPLUG_DEFAULTS, ...options };
    this.#log = (options.logger ?? pino({ level: 'silent' })).child({ module: 'hotplug' });
    this.journal = new Journal(this.#o.store.dir);
    this.#pending = new PendingUnplugs({
      connections: this.#o.connections,
      store: this.#o.store,
      exclusive: (name, fn) => this.#exclusive(name, fn),
      ...(this.#o.onRemoved === undefined ? {} : { onRemoved: this.#o.onRemoved }),
      ...(this.#o.onPending === undefined ? {} : { onPending: this.#o.onPending }),
      // The caller was told "pending" after one unplug timeout; a guest holding on for another is announced.
      announceAfterMs: this.#o.unplugTimeoutMs,
      onSettled: (p) => (p.seq === undefined ? undefined : this.journal.close(p.name, p.seq)),
      log: this.#log,
    });
  }

  /**
   * Reconciles instance `name` now if its journal has open entries (a process died in the middle
   * of an operation); see reconcile.ts. Every operation does this first by itself.
   */
  reconcile(name: string): Promise<ReconcileOutcome[]> {
    return this.#exclusive(name, async (outcomes) => outcomes);
  }

  /**
   * True when `name`'s journal has entries a reconcile would act on, read without the lock (cheap:
   * no journal is one stat). Not counted: pending removals this process is finishing, and a
   * migration whose process is alive (in flight: it changes neither devices nor the runtime file).
   */
  async unsettled(name: string): Promise<boolean> {
    return (await unsettledEntries({ journal: this.journal, pending: this.#pending }, name)).length > 0;
  }

  /**
   * Runs `fn` alone for instance `name`, in the same per-instance queue and under the same lock as
   * hot-add and hot-remove, after what a dead process left half done is finished: for the other
   * operations that change an instance's QEMU or runtime file (disk.resize, cdrom.change,
   * instance.verify with repair, runtime.convert with write). More than maxQueued waiting get
   * GKD_OVERLOADED; `signal` aborted before its turn gives GKD_CANCELLED, nothing done. `fn` runs
   * holding the lock: it must not take it again.
   */
  exclusive<T>(name: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#exclusive(name, () => fn(), signal);
  }

  /**
   * Reconciles `name` for a caller that already holds its lock (migration.start, under its
   * exclusive hold, which queues nothing here); empty when nothing was open.
   */
  reconcileLocked(name: string): Promise<ReconcileOutcome[]> {
    return this.#reconcileLocked(name);
  }

  /** Reconciles every instance that has a journal (daemon start); failures are logged, never thrown. */
  async reconcileAll(): Promise<Map<string, ReconcileOutcome[] | Error>> {
    const out = new Map<string, ReconcileOutcome[] | Error>();
    for (const name of await this.journal.list()) {
      try {
        out.set(name, await this.reconcile(name));
      } catch (e) {
        this.#log.error({ instance: name, err: e }, 'reconcile failed; the journal entry stays open and is retried before the next operation');
        out.set(name, e as Error);
      }
    }
    return out;
  }

  /** Reconciles `name`'s open journal entries (under its lock); what was done, empty when nothing was open. */
  async #reconcileLocked(name: string): Promise<ReconcileOutcome[]> {
    if (!(await needsReconcile({ journal: this.journal, pending: this.#pending }, name))) return [];
    return reconcileInstance({
      store: this.#o.store, journal: this.journal, connections: this.#o.connections, pending: this.#pending, log: this.#log,
      ...(this.#o.onRemoved === undefined ? {} : { onRemoved: this.#o.onRemoved }),
    }, name);
  }

  /**
   * Voids `name`'s journal for a runtime file about to be written for a new QEMU (instance.start;
   * call under the instance lock): every open entry is about the QEMU that ran the instance before,
   * which is gone, and applied by the next reconcile it would act on the new one (unplug a device
   * with the same id, record or drop entries the new file does not have). The journal is removed
   * unapplied and this process stops watching the old QEMU's pending removals. Returns what was
   * dropped (`unreadable` when the journal could not be parsed: it is removed all the same), for
   * the caller to log.
   */
  async voidJournal(name: string): Promise<{ entries: JournalEntry[]; unwatched: number; unreadable?: Error }> {
    let entries: JournalEntry[] = [];
    let unreadable: Error | undefined;
    try {
      entries = await this.journal.read(name);
    } catch (e) {
      unreadable = e as Error;
    }
    const unwatched = this.#pending.forget(name).length;
    if (entries.length > 0 || unreadable !== undefined) await this.journal.remove(name);
    return { entries, unwatched, ...(unreadable === undefined ? {} : { unreadable }) };
  }

  /**
   * Resolves once no operation of this process is queued or running on `name` (on any instance
   * when omitted), the work a hot-add does after answering (journal close, lock release) included.
   * Never rejects: the operations' own callers see their failures.
   */
  async idle(name?: string): Promise<void> {
    for (;;) {
      const runs = name === undefined ? [...this.#queues.values()] : [this.#queues.get(name)].filter((r) => r !== undefined);
      if (runs.length === 0) return;
      await Promise.allSettled(runs);
    }
  }

  /** Stops the background finishers (daemon shutdown); what is pending stays in the journal. */
  stop(): void {
    this.#pending.stop();
  }

  /**
   * Runs `fn` alone for instance `name`: queued in this process, locked across processes. A caller
   * whose `signal` aborts before `fn` starts is answered GKD_CANCELLED at once, not at its turn
   * (the operation ahead may run for long, and at shutdown the answer must go out before the
   * connection closes); its turn still comes, in order, and does nothing.
   */
  #exclusive<T>(name: string, fn: (reconciled: ReconcileOutcome[]) => Promise<T>, signal?: AbortSignal, onContended?: () => void): Promise<T> {
    const cancelled = (): GkdError => new GkdError('GKD_CANCELLED', `Cannot run the operation on instance "${name}": the caller gave up before it started (${String((signal?.reason as Error | undefined)?.message ?? signal?.reason)}); nothing was done`, { field: 'name' });
    if (signal?.aborted === true) return Promise.reject(cancelled());
    const waiting = this.#waiting.get(name) ?? 0;
    if (waiting >= this.#o.maxQueued) {
      return Promise.reject(new GkdError('GKD_OVERLOADED', `Cannot queue another operation on instance "${name}": ${waiting} are already waiting for it; retry when they are done`, { field: 'name', data: { queued: waiting } }));
    }
    this.#waiting.set(name, waiting + 1);
    let started = false;
    const prev = this.#queues.get(name) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => {
      // Given up while waiting: neither the lock nor a reconcile on its behalf.
      if (signal?.aborted === true) throw cancelled();
      return this.#o.store.withLock(name, async () => {
        // What a dead process left half done is finished first, so this operation sees a consistent instance.
        const reconciled = await this.#reconcileLocked(name);
        if (signal?.aborted === true) throw cancelled();
        started = true;
        return fn(reconciled);
      }, {
        wait: this.#o.lockWaitMs,
        ...(onContended === undefined ? {} : { onContended }),
        onLost: (err) => this.#log.warn({ instance: name, err }, 'the instance lock was lost while held; the operation completed and its result stands'),
      });
    });
    this.#queues.set(name, run);
    void run.finally(() => {
      const left = (this.#waiting.get(name) ?? 1) - 1;
      if (left > 0) this.#waiting.set(name, left);
      else this.#waiting.delete(name);
      if (this.#queues.get(name) === run) this.#queues.delete(name);
    }).catch(() => undefined);
    if (signal === undefined) return run;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        if (!started) reject(cancelled());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      run.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  #socket(name: string, opts: CallOptions): string {
    return opts.qmp ?? this.#o.qmpSocket(name);
  }

  /**
   * Refuses while QEMU is in a migration: a target waiting for the stream
   * (`inmigrate`) would then hold a device the source never had, and a
   * source that has handed over (`postmigrate`, `finish-migrate`) no longer
   * owns the guest. QEMU 7.2 accepts device_add in those states.
   */
  async #checkRunState(qmp: QmpClient, name: string, what: string): Promise<void> {
    const { status } = await qmp.execute<{ status: string }>('query-status');
    if (MIGRATION_STATES.has(status)) {
      throw new GkdError('GKD_INSTANCE_BUSY', `Cannot ${what} on "${name}": its QEMU is in migration state "${status}"`, { field: 'name', data: { runState: status } });
    }
  }

  /** Hot-adds a disk; returns its hvinfo. */
  addDisk(name: string, disk: DiskSpec, opts: CallOptions = {}): Promise<AddResult> {
    return this.#addTimed(name, 'disk', disk, opts);
  }

  /** Hot-adds a NIC; returns its hvinfo. */
  addNic(name: string, nic: NicSpec, opts: CallOptions = {}): Promise<AddResult> {
    return this.#addTimed(name, 'nic', nic, opts);
  }

  /** Hot-removes a disk by UUID. Throws GKD_HOTPLUG_PENDING when the guest has not released it in time. */
  removeDisk(name: string, uuid: string, opts: CallOptions = {}): Promise<RemoveResult> {
    return this.#exclusive(name, () => this.#remove(name, 'disk', uuid, opts), opts.signal);
  }

  /** Hot-removes a NIC by UUID. Throws GKD_HOTPLUG_PENDING when the guest has not released it in time. */
  removeNic(name: string, uuid: string, opts: CallOptions = {}): Promise<RemoveResult> {
    return this.#exclusive(name, () => this.#remove(name, 'nic', uuid, opts), opts.signal);
  }

  /** Removals still waiting for the guest. */
  pending(): Array<{ name: string; kind: DeviceKind; uuid: string; id: string }> {
    return this.#pending.list();
  }

  /**
   * Runs a hot-add under the instance's turn, timed for the hook when there is one.
   *
   * When nothing else of this process waits for the instance, the QMP
   * connection is started at once, so connecting overlaps taking the lock and
   * reading the files; it is let go if another process holds the lock.
   *
   * The caller is answered as soon as the runtime file is in place and the
   * runtime dir synced (the add is then durable and what the caller is told
   * is what the file says); closing the journal entry and releasing the lock
   * follow, still in the instance's turn, so the next operation on the
   * instance starts after them. A process that dies in between leaves an
   * entry whose device is recorded: the next operation's reconcile closes it
   * (rolled forward), as after a death right after the rename.
   */
  async #addTimed(name: string, kind: DeviceKind, spec: DiskSpec | NicSpec, opts: CallOptions): Promise<AddResult> {
    const hook = this.#o.onAddTiming;
    const clock = new PhaseClock(hook !== undefined);
    let committed!: (result: AddResult) => void;
    const commit = new Promise<AddResult>((resolve) => {
      committed = resolve;
    });
    const ctx: AddContext = { clock, early: this.#queues.has(name) ? undefined : this.#o.connections.hold(this.#socket(name, opts)), committed };
    // The socket's connect before the lock: the lock, the reconcile's journal check, the runtime
    // read and the journal entry are short synchronous calls chained without a turn of the event
    // loop, and the connect callback (which writes qmp_capabilities) would otherwise wait behind all
    // of them; this way QEMU greets and negotiates while they run. A unix socket connects (or fails)
    // at once, even when another client holds the monitor: only the greeting waits for that.
    if (ctx.early !== undefined) await ctx.early.opened;
    let workEnd = 0;
    const run = (async (): Promise<AddResult> => {
      try {
        return await this.#exclusive(name, async () => {
          clock.record('lock', 0);
          try {
            return await this.#add(name, kind, spec, opts, ctx);
          } finally {
            workEnd = clock.now();
          }
        }, opts.signal, () => void ctx.early?.release());
      } finally {
        await ctx.early?.release();
        clock.record('release', workEnd);
      }
    })();
    // The add's own failure (before the file is in place) rejects here; once the file is in place
    // nothing after it can fail the add (the journal close and the release only log).
    const first = await Promise.race([commit.then((r) => ({ r, beforeTurnEnded: true })), run.then((r) => ({ r, beforeTurnEnded: false }))]);
    if (first.beforeTurnEnded) run.catch((e: unknown) => this.#log.error({ instance: name, err: e }, 'the lock or the queue failed after a hot-add was recorded; the add stands'));
    if (ctx.durable !== undefined) {
      const syncing = clock.now();
      // The runtime file is in place: a failed directory sync does not undo the add (as a write whose rename happened).
      await ctx.durable.catch((e: unknown) => this.#log.warn({ instance: name, err: e }, 'the runtime dir could not be synced after a hot-add; the file is in place'));
      clock.record('dir sync', syncing);
    }
    if (hook !== undefined) {
      const totalMs = clock.now();
      // Reported once the turn is over, so the phases after the answer are in it too.
      void run.then(() => {
        try {
          hook({ kind, totalMs, spans: clock.spans() });
        } catch (e) {
          this.#log.warn({ instance: name, err: e }, 'the add timing hook threw; ignored');
        }
      }, () => undefined);
    }
    return first.r;
  }

  /**
   * Where the device goes given what is known to be taken (`live`), and the
   * runtime entry recording it. A file in a pci-era format keeps the id and
   * driver that release derives from the slot (its Ganeti reads the file).
   * Throws, before QEMU is touched, what the allocator throws and
   * GKD_RUNTIME_LOSSY when the file's format cannot record the device.
   */
  #place(runtime: RuntimeV2_16, format: RuntimeFormatId, kind: DeviceKind, spec: DiskSpec | NicSpec, uuidId: string, live: LiveOccupancy): { id: string; placement: Placement } {
    let id = uuidId;
    let hvinfo = allocate(runtime, kind, id, live);
    const slot = hvinfo.bus === PCI_ERA_BUS ? canonicalAddrToSlot(String((hvinfo as { addr?: unknown }).addr)) : undefined;
    if (format !== '2.16' && slot !== undefined) {
      id = pciEraId(kind, { uuid: spec.uuid, slot });
      hvinfo = { ...hvinfo, id, driver: pciEraDriver(kind, runtime[2] as HvParams) } as HvInfo;
    }
    const entry = kind === 'disk'
      ? diskEntry(spec as DiskSpec, hvinfo, runtime[3].length, 'disk', { isBlockDevice: this.#o.isBlockDevice })
      : nicEntry(spec as NicSpec, hvinfo);
    if (format !== '2.16') {
      try {
        convertRuntime(withEntry(runtime, kind, entry), format);
      } catch (e) {
        if (!isGkdError(e) || e.code !== 'GKD_RUNTIME_LOSSY') throw e;
        throw new GkdError('GKD_RUNTIME_LOSSY', `Cannot hot-add ${kind} "${id}": the runtime file is in format ${format} (what this node's Ganeti reads), which cannot record it: ${e.message}`, {
          field: `${kind}.uuid`, device: id, ...(e.data === undefined ? {} : { data: e.data }), cause: e,
        });
      }
    }
    return { id, placement: { hvinfo, entry } };
  }

  /**
   * The hot-add itself (see docs/hotplug.md, "Hot-add"): placed from the
   * runtime file; the journal entry and the staged runtime file written
   * while the QMP connection is made; backend, device_add, one read to
   * verify; the runtime file committed. QEMU refusing the address (a device
   * put there behind our back) costs one live read and one more device_add.
   */
  async #add(name: string, kind: DeviceKind, spec: DiskSpec | NicSpec, opts: CallOptions, ctx: AddContext): Promise<AddResult> {
    const { clock } = ctx;
    const field = kind;
    const uuidId = deviceId(kind, spec.uuid, `${field}.uuid`);
    if (kind === 'nic' && (spec as NicSpec).backend?.type === 'tap' && (spec as { backend: { fd?: number } }).backend.fd !== undefined) {
      throw new GkdError('GKD_HOTPLUG_UNSUPPORTED', `Cannot hot-add NIC "${uuidId}" with a tap fd: passing a file descriptor to QEMU needs SCM_RIGHTS on the QMP socket, which this daemon does not do; give the tap by ifname`, { field: 'nic.backend.fd' });
    }
    if (kind === 'disk' && (typeof (spec as DiskSpec).path !== 'string' || (spec as DiskSpec).path === '')) {
      throw new GkdError('GKD_SPEC_INVALID', `Cannot hot-add disk "${uuidId}": disk.path must be a non-empty string`, { field: 'disk.path' });
    }
    const socket = this.#socket(name, opts);
    const undo = new UndoLog();
    const action = `hot-add ${kind} "${uuidId}" to "${name}"`;
    const unplugTimeoutMs = opts.unplugTimeoutMs ?? this.#o.unplugTimeoutMs;
    const backendStep = kind === 'disk' ? 'blockdev-add' : 'netdev_add';
    const recordDeps = { store: this.#o.store, journal: this.journal, log: this.#log };
    let id = uuidId;
    let record: AddRecord | undefined;
    let steps: AddSteps | undefined;
    let committing: Promise<void> | undefined;
    // Read and placed from the runtime file, journaled, while QEMU is asked for its run state.
    const preparing = (async () => {
      const read = await clock.span('runtime read', () => this.#o.store.read(name));
      const runtime = read.upgraded;
      const format = this.#o.store.formatToKeep(read);
      if (entryOf(runtime, kind, spec.uuid) !== undefined) {
        throw new GkdError('GKD_DEVICE_EXISTS', `Cannot hot-add ${kind} "${uuidId}": instance "${name}" already has a ${kind} with UUID "${spec.uuid}"`, { field: `${field}.uuid`, device: uuidId });
      }
      const open = (devId: string, placement: Placement): Promise<AddRecord> => AddRecord.open(recordDeps, { name, kind, uuid: spec.uuid, id: devId, socket, step: backendStep }, read, placement);
      // A pci-era file names the device after its slot, so the slot must be right before the backend
      // is named: it is placed from QEMU's live layout up front. A 2.16 file is placed from the file
      // alone (QEMU refuses an address in use, refusals.ts).
      const liveFirst = format !== '2.16';
      if (!liveFirst) record = await clock.span('journal entry', async () => open(uuidId, this.#place(runtime, format, kind, spec, uuidId, NO_LIVE_OCCUPANCY).placement));
      return { read, runtime, format, liveFirst, open };
    })();
    preparing.catch(() => undefined);
    try {
      const connecting = clock.now();
      // One short sequence on the monitor: check, add, verify; then it is given back while the file is committed.
      await this.#o.connections.use(socket, async (qmp) => {
        clock.record('qmp connect', connecting);
        // This sequence holds the connection now; it closes when the sequence ends.
        void ctx.early?.release();
        // The run state is asked first and the backend sent right behind it, without waiting for the
        // answer (QEMU answers in order); a QEMU found in a migration gets the backend taken back
        // (blockdev-del / netdev_del need no guest), so the refusal still changes nothing.
        const runState = clock.span('run state', () => this.#checkRunState(qmp, name, `hot-add ${kind} "${uuidId}"`));
        runState.catch(() => undefined);
        const prep = await preparing;
        const { runtime, format, liveFirst, open } = prep;
        if (liveFirst) {
          await runState;
          const live = await clock.span('live read', () => readOccupancy(qmp, SCSI_BUS, occupancyNeeds(runtime, kind)));
          const p = this.#place(runtime, format, kind, spec, uuidId, live);
          id = p.id;
          record = await clock.span('journal entry', () => open(p.id, p.placement));
        }
        const rec = record as AddRecord;
        steps = new AddSteps({
          qmp,
          id,
          kind,
          undo,
          session: (fn) => this.#o.connections.use(socket, fn),
          waitGone: (ms) => pollUntilGone(this.#o.connections, socket, id, ms),
          deferBackend: async () => {
            const p = await this.journal.open(name, { op: 'pending', step: 'wait', kind, uuid: '', id, socket, recorded: false });
            this.#pending.watch({ name, kind, uuid: '', id, socket, recorded: false, seq: p.seq });
          },
          unplugTimeoutMs,
          afterStep: (cmd) => faultPoint(`${kind}-add:${cmd === 'device_add' ? 'device' : 'backend'}`),
        });
        faultPoint(`${kind}-add:journaled`);
        const deviceArgs = (h: HvInfo): QemuDict => (kind === 'disk' ? diskDeviceArgs(h, diskIo(runtime)) : nicDeviceArgs(h, (spec as NicSpec).mac));
        const backend = clock.span(backendStep, () => this.#backend(steps as AddSteps, kind, spec, runtime, id, rec.placement.hvinfo.driver));
        backend.catch(() => undefined);
        try {
          await runState;
        } catch (e) {
          // Refused: the backend's inverse is in the roll-back log once its answer is in.
          await backend.catch(() => undefined);
          (steps as AddSteps).step = 'run state';
          throw e;
        }
        await backend;
        // The verifying read goes right behind device_add (QEMU answers in order): one round trip
        // saved. If device_add fails, what it read is ignored. device_add itself waits for the
        // backend's answer: were the backend refused because QEMU already has a node of that name,
        // a device_add sent behind it would attach the guest to that other node.
        let verifying: Promise<void> | undefined;
        try {
          await clock.span('device_add', () => {
            const adding = (steps as AddSteps).run('device_add', deviceArgs(rec.placement.hvinfo));
            verifying = verifyPlaced(qmp, id, rec.placement.hvinfo);
            verifying.catch(() => undefined);
            return adding;
          });
        } catch (e) {
          // QEMU refused the address: something not in the runtime file sits there. Read what QEMU
          // has and place again, once; the journal entry and staged file follow before QEMU is asked.
          if (takenBy(e) !== 'address' || liveFirst) throw e;
          const live = await clock.span('live read', () => readOccupancy(qmp, SCSI_BUS, occupancyNeeds(runtime, kind)));
          const again = this.#place(runtime, format, kind, spec, uuidId, withTaken(live, rec.placement.hvinfo));
          this.#log.info({ instance: name, device: id, refused: rec.placement.hvinfo, now: again.placement.hvinfo }, 'QEMU refused the address (a device not in the runtime file holds it); placing from its live layout');
          await rec.replace(again.placement);
          await clock.span('device_add', () => (steps as AddSteps).run('device_add', deviceArgs(again.placement.hvinfo)));
          verifying = verifyPlaced(qmp, id, again.placement.hvinfo);
        }
        steps.step = 'verify';
        await clock.span('verify', () => verifying as Promise<void>);
        faultPoint(`${kind}-add:verified`);
        steps.step = 'runtime write';
        // The file's rename and directory sync need no monitor: the connection closes meanwhile.
        committing = clock.span('runtime commit', async () => {
          await rec.writeRuntime();
          faultPoint(`${kind}-add:recorded`);
          ctx.durable = this.#o.store.syncDir();
          ctx.durable.catch(() => undefined);
        });
        committing.catch(() => undefined);
      });
      await committing;
    } catch (e) {
      await preparing.catch(() => undefined);
      // The file was renamed into place and only the directory sync failed: QEMU and the file agree.
      if (steps?.step === 'runtime write' && isGkdError(e) && e.data?.committed === true && record !== undefined) return { hvinfo: record.placement.hvinfo };
      // Rolled back after the add's connection was given back: each inverse uses a short one of its own.
      const err = await undo.fail(action, steps?.step ?? 'prepare', nameTaken(e, kind, id));
      // An inverse that failed (QEMU gone, no answer) leaves the entry open: the next reconcile finishes it.
      const undone = (err.data as { undone?: string[] } | undefined)?.undone ?? [];
      await record?.abandon(undone.some((l) => / FAILED: /.test(l)));
      throw err;
    }
    const rec = record as AddRecord;
    ctx.committed({ hvinfo: rec.placement.hvinfo });
    // The caller's answer goes out first: it is written in the turn of the event loop in which the
    // directory sync completes, and the journal entry is closed in the next one, unsynced (an entry
    // that a power cut brings back names a recorded device: the next reconcile closes it).
    await ctx.durable?.catch(() => undefined);
    await new Promise<void>((resolve) => setImmediate(resolve));
    await clock.span('journal close', () => rec.finish());
    return { hvinfo: rec.placement.hvinfo };
  }

  /** The backend step: the block node or the netdev, named `id`. */
  async #backend(steps: AddSteps, kind: DeviceKind, spec: DiskSpec | NicSpec, runtime: RuntimeV2_16, id: string, driver: string): Promise<void> {
    if (kind === 'disk') {
      const d = spec as DiskSpec;
      const readOnly = diskReadOnly(d.mode, driver);
      await steps.run('blockdev-add', blockdevArgs(id, { path: d.path, uri: d.uri ?? null, readOnly, blockDevice: this.#o.isBlockDevice?.(d.path) ?? false }, diskIo(runtime), 'disk') as QemuDict);
      return;
    }
    const n = spec as NicSpec;
    const hv = runtimeHvParams(runtime[2]);
    const backend = n.backend ?? { type: 'tap' as const };
    await steps.run('netdev_add', netdevArgs(id, backend, hv.vhost_net && this.#o.accel === 'kvm' && backend.type === 'tap') as QemuDict);
  }

  /** Closes a finished operation's journal entry; a failure to do so is logged (the next reconcile closes it). */
  async #closeJournal(name: string, entry: JournalEntry | undefined): Promise<void> {
    if (entry === undefined) return;
    await this.journal.close(name, entry.seq).catch((e: unknown) => this.#log.warn({ instance: name, seq: entry.seq, err: e }, 'journal entry not closed; the next reconcile will'));
  }

  async #remove(name: string, kind: DeviceKind, uuid: string, opts: CallOptions): Promise<RemoveResult> {
    const read = await this.#o.store.read(name);
    const found = entryOf(read.upgraded, kind, uuid);
    if (found === undefined) {
      throw new GkdError('GKD_DEVICE_NOT_FOUND', `Cannot hot-remove ${kind} "${uuid}": instance "${name}" has no ${kind} with that UUID in its runtime file`, { field: 'uuid' });
    }
    const id = found.hvinfo.id;
    if (id === undefined) {
      throw new GkdError('GKD_HOTPLUG_UNSUPPORTED', `Cannot hot-remove ${kind} "${uuid}": it was started without a device id (pre-2.10 runtime); restart the instance first`, { field: 'uuid' });
    }
    const hvinfo = found.hvinfo as HvInfo;
    const socket = this.#socket(name, opts);
    const timeoutMs = opts.unplugTimeoutMs ?? this.#o.unplugTimeoutMs;
    const warnings: string[] = [];
    let journal: JournalEntry | undefined;
    const pending = async (): Promise<GkdError> => {
      // One pending entry per device: a removal asked again while QEMU unplugs keeps the first one.
      const earlier = (await this.journal.read(name)).find((x) => x.op === 'pending' && x.id === id && x.seq !== journal?.seq);
      if (earlier !== undefined) {
        await this.#closeJournal(name, journal);
        this.#pending.watch({ name, kind, uuid, id, socket, recorded: true, seq: earlier.seq });
      } else {
        if (journal !== undefined) journal = await this.journal.update(name, { ...journal, op: 'pending', step: 'wait', recorded: true });
        faultPoint(`${kind}-pending:journaled`);
        this.#pending.watch({ name, kind, uuid, id, socket, recorded: true, ...(journal === undefined ? {} : { seq: journal.seq }) });
      }
      return new GkdError('GKD_HOTPLUG_PENDING', `Cannot confirm removal of ${kind} "${id}" from "${name}" yet: the guest has not released it within ${timeoutMs} ms; the runtime file keeps it until QEMU reports it gone`, {
        device: id,
        data: { status: 'pending', hvinfo },
      });
    };
    // The connection that sends device_del waits a moment for DEVICE_DELETED (SCSI disks go at once)
    // and drops the backend when it came; otherwise it gives the monitor back and the guest is polled for.
    // Devices carried over from the pci era keep their old id in hvinfo, and that is what QEMU knows.
    const first = await this.#o.connections.use(socket, async (qmp): Promise<'gone' | 'waiting' | 'unplugging'> => {
      await this.#checkRunState(qmp, name, `hot-remove ${kind} "${id}"`);
      journal = await this.journal.open(name, { op: 'remove', step: 'device_del', kind, uuid, id, socket, hvinfo: hvinfo as unknown as Record<string, unknown> });
      faultPoint(`${kind}-remove:journaled`);
      let asked: 'gone' | 'waiting' | GkdError;
      try {
        asked = await askUnplug(qmp, id, Math.min(UNPLUG_POLL.firstWaitMs, timeoutMs), () => faultPoint(`${kind}-remove:requested`));
      } catch (e) {
        // Without a reply QEMU may have started the unplug: the journal entry stays, and the next
        // reconcile looks at what QEMU has.
        throw new GkdError('GKD_HOTPLUG_FAILED', `Cannot hot-remove ${kind} "${id}" from "${name}": device_del failed: ${(e as Error).message}; QEMU may have started the unplug; the runtime file keeps the device until QEMU reports it gone`, { device: id, cause: e });
      }
      if (!(asked instanceof Error)) return asked;
      const desc = String((asked.data as { desc?: string } | undefined)?.desc ?? asked.message);
      if (/not found/i.test(desc)) {
        warnings.push(`QEMU no longer had device "${id}"`);
        return 'gone';
      }
      if (/in the process of unplug/i.test(desc)) return 'unplugging';
      // QEMU refused the command: nothing changed.
      await this.#closeJournal(name, journal);
      throw new GkdError('GKD_HOTPLUG_FAILED', `Cannot hot-remove ${kind} "${id}" from "${name}": device_del failed: ${asked.message}; nothing changed`, { device: id, cause: asked });
    });
    // Asked again while QEMU is still unplugging: still pending (one background finisher).
    if (first === 'unplugging') throw await pending();
    if (first === 'waiting' && !(await pollUntilGone(this.#o.connections, socket, id, timeoutMs - Math.min(UNPLUG_POLL.firstWaitMs, timeoutMs)))) throw await pending();
    faultPoint(`${kind}-remove:gone`);
    const drop = await this.#o.connections.use(socket, (qmp) => dropBackend(qmp, kind, id));
    // A block node still "in use" right after the device went: the background finisher retries it.
    if (!drop.done) throw await pending();
    faultPoint(`${kind}-remove:backend`);
    warnings.push(...drop.warnings);
    try {
      await this.#o.store.writeKeepingFormat(name, withoutEntry(read.upgraded, kind, uuid), read);
      faultPoint(`${kind}-remove:recorded`);
    } catch (e) {
      if (!(isGkdError(e) && e.data?.committed === true)) {
        throw new GkdError('GKD_HOTPLUG_FAILED', `Cannot record the removal of ${kind} "${id}" from "${name}": QEMU no longer has it, but the runtime file could not be updated (${(e as Error).message}); run instance.verify with repair`, {
          device: id,
          data: { qemuRemoved: true },
          cause: e,
        });
      }
    }
    await this.#closeJournal(name, journal);
    return { hvinfo, status: 'removed', warnings };
  }
}
