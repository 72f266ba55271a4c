/**
 * Whether a process id is taken, as the lock, the journal, the temp-file
 * sweep and QEMU adoption each need to know of a process that left a record.
 */

/** True while a process `pid` exists (EPERM: it does, under another user); false once the kernel says ESRCH. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
