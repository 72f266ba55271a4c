/**
 * Optional timing of a hot-add's phases, for the benchmark's breakdown of
 * where the time goes: each phase is a span from the start of the call.
 * Phases may overlap (the journal entry is written while the QMP
 * connection is made). Without a hook nothing is recorded.
 */

/** The phases of a hot-add, in the order they start. */
export type AddPhase =
  /** Queued behind other operations on the instance, the instance lock, the open-journal check. */
  | 'lock'
  | 'runtime read'
  /** Allocation from the runtime file and the journal entry put in place (overlaps the connect; the runtime file is staged in the background). */
  | 'journal entry'
  | 'qmp connect'
  | 'run state'
  /** Only when placing needs QEMU's live layout (a pci-era file, or after QEMU refused the address). */
  | 'live read'
  | 'blockdev-add'
  | 'netdev_add'
  | 'device_add'
  | 'verify'
  /** The staged runtime file renamed into place (the QMP connection closes meanwhile). */
  | 'runtime commit'
  /** The runtime dir synced: the add is durable, and the caller is answered. */
  | 'dir sync'
  /** After the answer: the journal entry closed. */
  | 'journal close'
  /** After the answer: the instance lock released and the queue moved on. */
  | 'release';

/** One phase: milliseconds from the start of the call. */
export interface PhaseSpan {
  phase: AddPhase;
  startMs: number;
  endMs: number;
}

/** What a timing hook receives once a hot-add succeeded (after its turn ended). */
export interface AddTiming {
  kind: 'disk' | 'nic';
  /** Until the caller was answered; phases may end after it (the journal close, the release). */
  totalMs: number;
  spans: PhaseSpan[];
}

export type AddTimingHook = (timing: AddTiming) => void;

/** Collects the spans of one call. */
export class PhaseClock {
  readonly #t0 = process.hrtime.bigint();
  readonly #spans: PhaseSpan[] = [];
  readonly #on: boolean;

  constructor(enabled: boolean) {
    this.#on = enabled;
  }

  /** Milliseconds since the call started. */
  now(): number {
    return this.#on ? Number(process.hrtime.bigint() - this.#t0) / 1e6 : 0;
  }

  /** Records `phase` from `startMs` to now. */
  record(phase: AddPhase, startMs: number): void {
    if (this.#on) this.#spans.push({ phase, startMs, endMs: this.now() });
  }

  /** Runs `fn` as `phase`. */
  async span<T>(phase: AddPhase, fn: () => Promise<T>): Promise<T> {
    if (!this.#on) return fn();
    const start = this.now();
    try {
      return await fn();
    } finally {
      this.record(phase, start);
    }
  }

  spans(): PhaseSpan[] {
    return [...this.#spans];
  }
}
