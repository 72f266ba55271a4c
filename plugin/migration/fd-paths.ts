/**
 * What a disk QEMU opened through a file descriptor really is.
 *
 * Ganeti hot-adds a disk by opening it itself and passing the descriptor
 * (QMP `add-fd`, then `drive_add file=/dev/fdset/N`), so QEMU reports
 * `/dev/fdset/N` as the disk's file while the runtime file records the
 * disk's link. `/dev/fdset/N` is QEMU's name, not a path anyone can open:
 * the file behind it is found in the QEMU process, `/proc/<pid>/fd/<fd>`.
 *
 * Which descriptors belong to set N, `query-fdsets` says, but only while
 * the set still holds them: Ganeti removes the set right after the
 * hot-add (`remove-fd`), and once the VM runs QEMU closes the set's own
 * descriptor and lists the set empty, keeping only the duplicate the block
 * layer uses, whose number no QMP command reports. Then the best evidence
 * left is the set of files QEMU has open.
 *
 * QEMU's pid comes from the process that holds the QMP socket's listening
 * end (`/proc/net/unix` gives its inode), checked first among the pids in
 * the pid files the caller names. Linux only; elsewhere nothing resolves.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { basename } from 'node:path';
import type { QmpClient } from '../qmp';

/** `/dev/fdset/N` → N; undefined for any other name. */
export function fdsetOf(file: string | undefined): number | undefined {
  const m = file === undefined ? null : /^\/dev\/fdset\/(\d+)$/.exec(file);
  return m === null ? undefined : Number(m[1]);
}

function realpathOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/**
 * The inodes of sockets listening on the Unix path `path` (from
 * `/proc/net/unix`, which shows the path as QEMU bound it: Ganeti binds
 * `/var/run/ganeti/…`, which may be `/run/ganeti/…` here, so a path with
 * the same name is compared through its symlinks too).
 */
export function listeningInodes(path: string, netUnix = '/proc/net/unix'): Set<string> {
  const out = new Set<string>();
  let real: string | undefined | null = null;
  let text: string;
  try {
    text = readFileSync(netUnix, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const bound = f.slice(7).join(' ');
    if (bound !== path) {
      if (basename(bound) !== basename(path)) continue;
      if (real === null) real = realpathOf(path);
      if (real === undefined || realpathOf(bound) !== real) continue;
    }
    // Flags 00010000 is __SO_ACCEPTCON: the listening end, which only the server holds.
    if ((parseInt(f[3], 16) & 0x10000) !== 0) out.add(f[6]);
  }
  return out;
}

function holdsSocket(pid: number, inodes: Set<string>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null && inodes.has(m[1])) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

function pidFromFile(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pid of the process serving the QMP socket `qmpSocket`: the pids in
 * `pidFiles` are tried first, then every process. Undefined when no
 * process visible to us holds it.
 */
export function qmpServerPid(qmpSocket: string, pidFiles: readonly string[] = []): number | undefined {
  const inodes = listeningInodes(qmpSocket);
  if (inodes.size === 0) return undefined;
  const hinted = pidFiles.map(pidFromFile).filter((p): p is number => p !== undefined);
  for (const pid of hinted) if (holdsSocket(pid, inodes)) return pid;
  let all: string[];
  try {
    all = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const d of all) {
    const pid = Number(d);
    if (pid !== process.pid && !hinted.includes(pid) && holdsSocket(pid, inodes)) return pid;
  }
  return undefined;
}

/** Descriptor → what it is open on, for the files and block devices of `pid` (`/proc/<pid>/fd`). */
export function openFiles(pid: number): Map<number, string> | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const out = new Map<number, string>();
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      // Sockets, pipes and anonymous inodes read `socket:[…]`, `pipe:[…]`, `anon_inode:…`.
      if (target.startsWith('/')) out.set(Number(fd), target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** What the descriptors of QEMU's fd sets are open on. */
export interface FdsetFacts {
  /** Files each fd set's listed descriptors are open on (an empty list: the set lists none). */
  sets: Map<number, string[]>;
  /** Every file QEMU has open; undefined when its process could not be read. */
  open?: Set<string>;
  /** Why QEMU's files could not be read, when they could not. */
  problem?: string;
}

/**
 * Reads QEMU's fd sets and the files its descriptors are open on. Never
 * throws for a missing process or permission: `problem` says what failed.
 */
export async function readFdsets(qmp: QmpClient, where: { qmpSocket?: string; pidFiles?: readonly string[] }): Promise<FdsetFacts> {
  const listed = await qmp.execute<Array<{ 'fdset-id': number; fds: Array<{ fd: number }> }>>('query-fdsets').catch(() => undefined);
  const sets = new Map<number, string[]>();
  if (where.qmpSocket === undefined) return { sets, problem: 'the QMP socket path is not known here' };
  const pid = qmpServerPid(where.qmpSocket, where.pidFiles);
  if (pid === undefined) return { sets, problem: `no process visible here serves "${where.qmpSocket}"` };
  const files = openFiles(pid);
  if (files === undefined) return { sets, problem: `the descriptors of QEMU (pid ${pid}) cannot be read` };
  for (const s of listed ?? []) {
    sets.set(s['fdset-id'], s.fds.map((f) => files.get(f.fd)).filter((p): p is string => p !== undefined));
  }
  return { sets, open: new Set(files.values()) };
}
