/**
 * Did the target really take over? Judged on the target, never on the
 * source's `completed` alone: with a running guest, QEMU 7.2's source
 * reports `completed` (and sits in `postmigrate`) even when the target
 * rejected the device state and exited with "Unknown savevm section or
 * instance …", because the source writes the last device sections before
 * the target parses them.
 */
import { isGkdError } from '../errors';
import type { QmpClient } from '../qmp';

/** What the target side showed. */
export interface TargetVerdict {
  ok: boolean;
  /** The target's last `query-status`, or `exited` when its QMP closed. */
  status: string;
  /** The target's incoming migration status (`query-migrate` on the target), when it answered. */
  migration?: string;
  /** One line for people. */
  detail: string;
}

/** States a target may rest in when the source was not running: `-S` sources give `prelaunch`. */
const PAUSED_OK = new Set(['paused', 'prelaunch']);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function probe(target: QmpClient): Promise<{ status: string; migration?: string } | undefined> {
  if (target.closed) return undefined;
  try {
    const st = await target.execute<{ status: string }>('query-status', undefined, { timeoutMs: 2_000 });
    const mig = await target.execute<{ status?: string }>('query-migrate', undefined, { timeoutMs: 2_000 });
    return { status: st.status, ...(mig.status === undefined ? {} : { migration: mig.status }) };
  } catch (e) {
    // A connection that closes while the command waits means the target exited, even before `closed` says so.
    return target.closed || (isGkdError(e) && e.code === 'GKD_QMP_CLOSED') ? undefined : { status: 'unknown' };
  }
}

/**
 * Waits up to `settleMs` for the target to settle after the source said
 * `completed`: success is `running` for a running source, or `paused` /
 * `prelaunch` with the incoming migration `completed` for a paused one.
 * A closed QMP connection means the target QEMU exited. `wake` (e.g. the
 * target's RESUME event, armed before `migrate`) cuts a poll pause short.
 */
export async function judgeTarget(target: QmpClient, wasRunning: boolean, settleMs: number, pollMs: number, wake?: PromiseLike<unknown>): Promise<TargetVerdict> {
  // `pending` until the wake fires; then one probe follows at once, and plain polling after that.
  const w: { state: 'pending' | 'fired' | 'used' } = { state: 'pending' };
  const woke = wake === undefined ? undefined : Promise.resolve(wake).then(() => void (w.state = 'fired'), () => undefined);
  const deadline = Date.now() + settleMs;
  let last: { status: string; migration?: string } | undefined;
  for (;;) {
    last = await probe(target);
    if (last === undefined) return { ok: false, status: 'exited', detail: 'the target QEMU exited (its QMP connection closed)' };
    const mig = last.migration === undefined ? {} : { migration: last.migration };
    if (last.migration === 'failed' || last.migration === 'cancelled') {
      return { ok: false, ...last, detail: `the target's incoming migration ${last.migration} (status "${last.status}")` };
    }
    if (wasRunning && last.status === 'running') return { ok: true, ...last, detail: 'the target is running' };
    if (!wasRunning && PAUSED_OK.has(last.status) && last.migration === 'completed') {
      return { ok: true, ...last, detail: `the target loaded the state and is "${last.status}", as the source was` };
    }
    if (Date.now() >= deadline) {
      return { ok: false, status: last.status, ...mig, detail: `the target did not take over within ${settleMs} ms (status "${last.status}"${last.migration === undefined ? '' : `, incoming migration "${last.migration}"`})` };
    }
    if (w.state === 'fired') {
      w.state = 'used';
      continue;
    }
    const pause = sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
    await (woke === undefined || w.state === 'used' ? pause : Promise.race([pause, woke]));
  }
}
