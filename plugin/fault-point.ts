/**
 * Test-only crash injection. The crash-recovery suite runs the real daemon
 * with `GKD_FAULT_POINT=<name>` and expects it to die by SIGKILL exactly at
 * that step boundary (no cleanup, no flush: what a power cut or an OOM kill
 * leaves). Inert unless the variable names this very point; production
 * never sets it. Points are named `<kind>-<operation>:<boundary>`, e.g.
 * `disk-add:backend` (after blockdev-add, before device_add); the list is
 * in docs/daemon.md.
 */
export function faultPoint(name: string): void {
  const want = process.env.GKD_FAULT_POINT;
  if (want !== undefined && want !== '' && want === name) process.kill(process.pid, 'SIGKILL');
}
