/**
 * The rollback log of one hotplug: every QEMU step that succeeded pushes
 * its inverse; on failure the inverses run newest first and the error says
 * what failed and what was undone (or could not be).
 */
import { GkdError, isGkdError } from '../errors';

/**
 * Causes whose code says more than GKD_HOTPLUG_FAILED and stays after a
 * rollback: QEMU placed the device elsewhere, QEMU already has the name, no
 * address is left (found only once QEMU refused the first one).
 */
const KEPT_CODES = new Set(['GKD_HOTPLUG_VERIFY', 'GKD_DEVICE_EXISTS', 'GKD_CAPACITY', 'GKD_INSTANCE_BUSY']);

/** The inverses of the steps of one hotplug, run newest first on failure. */
export class UndoLog {
  readonly #steps: Array<{ what: string; run: () => Promise<string | void> }> = [];

  /** Records the inverse of a step that just succeeded. `run` may return a note (e.g. "pending"). */
  push(what: string, run: () => Promise<string | void>): void {
    this.#steps.push({ what, run });
  }

  /** Runs every inverse, newest first; returns one line per step. */
  async unwind(): Promise<string[]> {
    const done: string[] = [];
    while (this.#steps.length > 0) {
      const s = this.#steps.pop()!;
      try {
        const note = await s.run();
        done.push(note ? `${s.what} (${note})` : s.what);
      } catch (e) {
        done.push(`${s.what} FAILED: ${(e as Error).message}`);
      }
    }
    return done;
  }

  /**
   * Unwinds, then returns the error to throw: GKD_HOTPLUG_FAILED (or the
   * original code when it is more specific: any before a step ran, the
   * KEPT_CODES after) with the failed step and the undo lines in message and data.
   */
  async fail(action: string, step: string, cause: unknown): Promise<GkdError> {
    // Refused before QEMU was touched (bad input, no room): the original error, with its field, says it best.
    if (this.#steps.length === 0 && isGkdError(cause) && !cause.code.startsWith('GKD_QMP_')) return cause;
    const undone = await this.unwind();
    const why = cause instanceof Error ? cause.message : String(cause);
    const tail = undone.length === 0 ? 'nothing to undo' : `undone: ${undone.join('; ')}`;
    const code = isGkdError(cause) && KEPT_CODES.has(cause.code) ? cause.code : 'GKD_HOTPLUG_FAILED';
    return new GkdError(code, `Cannot ${action}: ${step} failed: ${why}; ${tail}`, {
      ...(isGkdError(cause) && cause.device !== undefined ? { device: cause.device } : {}),
      ...(isGkdError(cause) && cause.field !== undefined ? { field: cause.field } : {}),
      data: { step, undone, ...(isGkdError(cause) ? { qemu: cause.data } : {}) },
      cause,
    });
  }
}
