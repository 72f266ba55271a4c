/**
 * After a failed migration: may the source be resumed? Only when nothing
 * else can run the guest. A source that said `completed` (or whose state is
 * unknown) may have handed the guest over, so resuming it is safe only
 * once the target is known dead: its QMP connection closed, its incoming
 * migration failed, or it was quit here. A target still `inmigrate` after
 * the source's `completed` is no proof either way (the stream may have gone
 * to another QEMU than the one whose socket was given), so it is left
 * alone and the result is ambiguous: neither side is resumed. This is
 * Ganeti's order too: the target is stopped before the source continues.
 */
import { isGkdError } from '../errors';
import type { QmpClient } from '../qmp';
import type { TargetVerdict } from './target-verdict';

/** What the failure handling uses of a QMP connection. */
export type QmpPeer = Pick<QmpClient, 'execute' | 'closed'>;

/** The target side after a failure. */
export interface TargetOutcome {
  /** Nothing on the target side can run the guest: the source may be resumed. */
  safe: boolean;
  /** A target QMP socket was given. */
  checked: boolean;
  /** Its last `query-status`, `exited`, or `not checked`. */
  status: string;
  /** Its incoming migration status, when it answered. */
  migration?: string;
  /** It was quit here. */
  stopped: boolean;
  /** One line for people; for an unsafe outcome, why. */
  detail: string;
}

/** Defaults of {@link settleTarget}. */
export const SETTLE_DEFAULTS = {
  /** Per QMP command on the target. */
  commandMs: 2_000,
  /** How long the target may take to exit after `quit`. */
  quitMs: 5_000,
  /** Poll interval while waiting for the exit. */
  pollMs: 20,
} as const;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function probe(target: QmpPeer, commandMs: number): Promise<{ status: string; migration?: string } | undefined> {
  if (target.closed) return undefined;
  try {
    const st = await target.execute<{ status: string }>('query-status', undefined, { timeoutMs: commandMs });
    const mig = await target.execute<{ status?: string }>('query-migrate', undefined, { timeoutMs: commandMs }).catch(() => ({ status: undefined }));
    return { status: st.status, ...(mig.status === undefined ? {} : { migration: mig.status }) };
  } catch (e) {
    // A connection that closes while the command waits means the target exited, even before `closed` says so.
    return target.closed || (isGkdError(e) && e.code === 'GKD_QMP_CLOSED') ? undefined : { status: 'unknown' };
  }
}

/** Sends `quit` and waits up to `quitMs` for the connection to close; true when the target is gone. */
async function quit(target: QmpPeer, commandMs: number, quitMs: number, pollMs: number): Promise<boolean> {
  await target.execute('quit', undefined, { timeoutMs: commandMs }).catch(() => undefined);
  const deadline = Date.now() + quitMs;
  while (!target.closed && Date.now() < deadline) await sleep(pollMs);
  return target.closed;
}

/**
 * Decides, and where needed makes, the target side safe. `handedOver`:
 * the source may have passed the guest on (it said `completed`, or its
 * final state is unknown); false after a definite `failed` or `cancelled`.
 */
export async function settleTarget(
  target: QmpPeer | undefined,
  verdict: TargetVerdict | undefined,
  handedOver: boolean,
  socket: string | undefined,
  options: { commandMs?: number; quitMs?: number; pollMs?: number } = {},
): Promise<TargetOutcome> {
  const { commandMs, quitMs, pollMs } = { ...SETTLE_DEFAULTS, ...options };
  if (target === undefined) {
    return handedOver
      ? { safe: false, checked: false, status: 'not checked', stopped: false, detail: 'no target QMP socket was given, so nothing shows whether the target took over' }
      : { safe: true, checked: false, status: 'not checked', stopped: false, detail: 'target not checked (no target QMP socket given)' };
  }
  const where = socket === undefined ? 'the target' : `the target at "${socket}"`;
  const p = verdict?.status === 'exited' ? undefined : await probe(target, commandMs);
  if (p === undefined) return { safe: true, checked: true, status: 'exited', stopped: false, detail: 'the target QEMU exited (its QMP connection closed)' };
  const mig = p.migration === undefined ? {} : { migration: p.migration };
  if (p.migration === 'failed' || p.migration === 'cancelled') {
    // Its state is not loaded, and QEMU exits after a failed incoming migration; make sure.
    const stopped = await quit(target, commandMs, quitMs, pollMs);
    return { safe: true, checked: true, status: target.closed ? 'exited' : p.status, ...mig, stopped, detail: `the target's incoming migration ${p.migration} (status "${p.status}")${stopped ? '; it was stopped' : ''}` };
  }
  if (p.status === 'inmigrate') {
    if (!handedOver) return { safe: true, checked: true, status: p.status, ...mig, stopped: false, detail: `${where} is still waiting for the stream ("inmigrate"), without the whole state` };
    return {
      safe: false, checked: true, status: p.status, ...mig, stopped: false,
      detail: `${where} is still "inmigrate", so the state may have gone to another QEMU that now runs the guest; it was left as it is`,
    };
  }
  // It answers and is no longer waiting: it may run the guest. Stop it before the source resumes.
  if (await quit(target, commandMs, quitMs, pollMs)) {
    return { safe: true, checked: true, status: 'exited', ...mig, stopped: true, detail: `${where} was "${p.status}" and was stopped (quit) so that only the source runs the guest` };
  }
  return { safe: false, checked: true, status: p.status, ...mig, stopped: false, detail: `${where} is "${p.status}" and did not exit when asked to quit` };
}
