/**
 * Test-only crash injection. The crash-recovery suite runs the real daemon
 * with `GKD_FAULT_POINT=<name>` and expects it to die by SIGKILL exactly at
 * that step boundary (no cleanup, no flush: what a power cut or an OOM kill
 * leaves). Inert unless the variable names this very point; production
 * never sets it. Points are named `<kind>-<operation>:<boundary>`, e.g.
 * `disk-add:backend` (after blockdev-add, before device_add); the list is
 * in docs/hotplug.md. With `GKD_FAULT_KILL_PID=<pid>` as well, that process
 * (the instance's QEMU) is killed at the point instead and the daemon goes on.
 */
export function faultPoint(name: string): void {
  const want = process.env.GKD_FAULT_POINT;
  if (want === undefined || want === '' || want !== name) return;
  // With GKD_FAULT_KILL_PID (the instance's QEMU) that process dies at the point instead, and the
  // daemon goes on: the QEMU-crash half of the suite.
  const other = Number(process.env.GKD_FAULT_KILL_PID ?? '');
  if (Number.isInteger(other) && other > 0) {
    try {
      process.kill(other, 'SIGKILL');
    } catch {
      // already gone
    }
    return;
  }
  process.kill(process.pid, 'SIGKILL');
}
