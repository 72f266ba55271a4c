/**
 * Test-only crash injection. The crash-recovery suite runs the real daemon
 * with `GKD_FAULT_POINT=<name>` and expects it to die by SIGKILL exactly at
 * that step boundary (no cleanup, no flush: what a power cut or an OOM kill
 * leaves). Inert unless the variable (read when the first point is passed)
 * names this very point; production never sets it. Points are named
 * `<kind>-<operation>:<boundary>`, e.g. `disk-add:backend` (after
 * blockdev-add, before device_add); the list is
 * in docs/hotplug.md. With `GKD_FAULT_KILL_PID=<pid>` as well, that process
 * (the instance's QEMU) is killed at the point instead and the daemon goes
 * on; `GKD_FAULT_KILL_PIDFILE=<path>` names it by a pid file instead, for a
 * QEMU the daemon itself starts just before the point (launch mode).
 */
import { readFileSync } from 'node:fs';

/** GKD_FAULT_POINT, read once: a lookup in process.env costs a call into the C++ side, and every step of every hot-add passes a point. */
let wanted: string | undefined | null = null;

export function faultPoint(name: string): void {
  if (wanted === null) wanted = process.env.GKD_FAULT_POINT ?? '';
  if (wanted === '' || wanted !== name) return;
  // With GKD_FAULT_KILL_PID or GKD_FAULT_KILL_PIDFILE (the instance's QEMU) that process dies at the
  // point instead, and the daemon goes on: the QEMU-crash half of the suite.
  const other = killTarget();
  if (other === 'self') {
    process.kill(process.pid, 'SIGKILL');
    return;
  }
  if (other === undefined) return;
  try {
    process.kill(other, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Whom the point kills: the daemon itself, another process, or nobody (a pid file that names none). */
function killTarget(): 'self' | number | undefined {
  const file = process.env.GKD_FAULT_KILL_PIDFILE;
  if (file !== undefined && file !== '') {
    // Read at the point: the QEMU it names did not exist when the daemon started. No pid file means no
    // such QEMU: the daemon is not killed in its place.
    let text = '';
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      return undefined;
    }
    return pidOf(text);
  }
  const raw = process.env.GKD_FAULT_KILL_PID;
  if (raw === undefined || raw === '') return 'self';
  return pidOf(raw) ?? 'self';
}

function pidOf(text: string): number | undefined {
  const pid = Number(text);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}
