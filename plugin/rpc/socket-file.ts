/**
 * The daemon's socket file: claiming the path (refusing a live one, removing
 * a stale one), then tightening its mode and ownership once listening.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server } from 'node:net';
import { chmod, chown, link, lstat, mkdir, readdir, readFile, realpath, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { processExists } from '../process-exists';

/** What {@link claimSocketPath} did. */
export interface ClaimedSocketPath {
  /** Directories it created for the socket, the socket's own first (empty when they all existed). */
  createdDirs: string[];
  /** The daemon's hold on the socket path: release it after the socket file is removed. */
  lock: SocketLock;
}

/** An exclusive hold on one socket path, for as long as this process lives or until released. */
export interface SocketLock {
  release(): Promise<void>;
}

/** Another live daemon answers on the socket path: starting a second one would steal it. */
export class SocketInUseError extends Error {
  readonly socketPath: string;
  constructor(socketPath: string) {
    super(`Cannot listen on "${socketPath}": another daemon is serving it`);
    this.name = 'SocketInUseError';
    this.socketPath = socketPath;
  }
}

/** Mode of a socket directory the daemon creates: group may traverse, others nothing. */
export const SOCKET_DIR_MODE = 0o750;

/**
 * Makes `socketPath` available for listening.
 * Creates its directory (mode 0750) when missing, removes a stale socket
 * left by a dead daemon, and refuses when a live daemon answers on it or the
 * path is not a socket (never deletes a regular file).
 * @throws Error naming the path and the reason
 */
export async function claimSocketPath(socketPath: string): Promise<ClaimedSocketPath> {
  const createdDirs = await makeSocketDir(socketPath);
  // Taken before anything looks at the path: of any number of daemons started together, only the
  // holder goes on to remove a stale socket and bind, so no two ever serve (or unlink) one path.
  const lock = await lockSocketPath(socketPath);
  try {
    await removeStaleSocket(socketPath);
    await removeDeadStagingSockets(dirname(socketPath));
  } catch (e) {
    await lock.release();
    throw e;
  }
  return { createdDirs, lock };
}

async function makeSocketDir(socketPath: string): Promise<string[]> {
  const dir = dirname(socketPath);
  // mkdir's mode is filtered by the umask; chmod only directories we created,
  // never an existing one like /tmp.
  const created = await mkdir(dir, { recursive: true, mode: SOCKET_DIR_MODE });
  const createdDirs: string[] = [];
  if (created !== undefined) {
    // `created` is the topmost directory mkdir made; every one from the socket's up to it is ours.
    for (let d = dir; ; d = dirname(d)) {
      createdDirs.push(d);
      if (d === created || d === dirname(d)) break;
    }
    for (const d of createdDirs) await chmod(d, SOCKET_DIR_MODE);
  }
  return createdDirs;
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new Error(`Cannot listen on "${socketPath}": the path exists and is not a socket`);
  // A daemon of a release without the lock may still serve it.
  if (await isLive(socketPath)) throw new SocketInUseError(socketPath);
  await unlink(socketPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/**
 * Takes the one-daemon-per-socket lock: a listening socket in Linux's
 * abstract namespace, whose name is derived from the socket path. Binding
 * it is atomic (EADDRINUSE for everyone but the first), and the kernel
 * releases it when the process dies however it dies, so a crashed daemon
 * leaves no stale lock and a restart never waits. The name also mixes in a
 * random key kept in a file only the daemon's user can read, next to the
 * socket, so other local users cannot squat the name to keep the daemon
 * from starting.
 * @throws SocketInUseError when another process holds the lock
 */
export async function lockSocketPath(socketPath: string): Promise<SocketLock> {
  const dir = await realpath(dirname(socketPath));
  const key = await socketLockKey(join(dir, `.${basename(socketPath)}.lock-key`));
  const name = createHash('sha256').update(key).update('\0').update(join(dir, basename(socketPath))).digest('hex');
  const server: Server = createServer((c) => c.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new SocketInUseError(socketPath) : e));
    server.listen(`\0ganeti-kvm-devices/${name}`, () => resolve());
  });
  // The lock must not keep a process alive on its own.
  server.unref();
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The lock key in `file`, created (atomically, mode 0600) when missing; refused when others could read or replace it. */
async function socketLockKey(file: string): Promise<string> {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const st = await lstat(file);
      if (!st.isFile() || st.uid !== uid || (st.mode & 0o077) !== 0) {
        throw new Error(`Cannot lock the socket: "${file}" must be a regular file owned by uid ${uid} with mode 0600; remove it`);
      }
      const key = (await readFile(file, 'utf8')).trim();
      if (/^[0-9a-f]{64}$/.test(key)) return key;
      throw new Error(`Cannot lock the socket: "${file}" does not hold a key; remove it`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 3) throw e;
    }
    // Written in full under a temp name, then linked into place: a racing daemon either
    // finds no key file or a complete one, and link() fails for all but the first.
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    try {
      await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }
}

/**
 * Where the daemon listens before its socket is ready: a short name of the
 * process's own in the socket's directory (`.<pid in base 36>~`, no longer
 * than a usual socket name, so it fits where the socket path fits). The
 * socket is bound there, given its mode, owner and group, and only then
 * linked to its real path ({@link publishSocket}): a client never finds the
 * socket with the wrong permissions (a hook starting with the daemon would
 * have been refused by a socket not yet in the socket group).
 */
export function stagingSocketPath(socketPath: string, pid = process.pid): string {
  return join(dirname(socketPath), `.${pid.toString(36)}~`);
}

const STAGING_NAME = /^\.([0-9a-z]{1,8})~$/;

/**
 * Removes staging sockets ({@link stagingSocketPath}) left in `dir` by daemons that died before
 * publishing theirs; one under this process's own pid is a dead daemon's too (this one has not
 * bound yet), and would keep it from binding.
 */
async function removeDeadStagingSockets(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const m = STAGING_NAME.exec(name);
    if (m === null) continue;
    const pid = parseInt(m[1] ?? '', 36);
    if (pid !== process.pid && processExists(pid)) continue;
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (st?.isSocket() === true) await unlink(join(dir, name)).catch(() => undefined);
  }
}

/**
 * Gives the socket bound at `stagingPath` its real path, in one step (a hard
 * link), then drops the staging name. Never replaces a path that exists: a
 * socket made there since the claim belongs to someone else.
 * @throws SocketInUseError when the path was taken meanwhile
 */
export async function publishSocket(stagingPath: string, socketPath: string): Promise<void> {
  try {
    await link(stagingPath, socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new SocketInUseError(socketPath);
    throw e;
  } finally {
    await unlink(stagingPath).catch(() => undefined);
  }
}

/** True when something accepts connections on `socketPath`. */
export function isLive(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    const done = (live: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(live);
    };
    // A listener that never accepts is as good as live: don't steal its path.
    const timer = setTimeout(() => done(true), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code !== 'ECONNREFUSED' && e.code !== 'ENOENT'));
  });
}

export interface SocketPermissions {
  mode: number;
  owner?: string | number;
  group?: string | number;
  /**
   * Directories the daemon created for the socket ({@link ClaimedSocketPath}):
   * they get the socket's group too, or its members could not reach the
   * socket through them (mode 0750). Existing directories are never changed.
   */
  createdDirs?: string[];
}

/** Applies mode, owner and group to the listening socket, and the group to the directories created for it. */
export async function applySocketPermissions(socketPath: string, perms: SocketPermissions): Promise<void> {
  if (perms.owner !== undefined || perms.group !== undefined) {
    const uid = perms.owner === undefined ? -1 : await resolveId(perms.owner, '/etc/passwd');
    const gid = perms.group === undefined ? -1 : await resolveId(perms.group, '/etc/group');
    await chown(socketPath, uid, gid);
    if (gid !== -1) for (const d of perms.createdDirs ?? []) await chown(d, -1, gid);
  }
  await chmod(socketPath, perms.mode);
}

/** Resolves a user or group name through the local database files (no NSS). */
async function resolveId(nameOrId: string | number, dbFile: string): Promise<number> {
  if (typeof nameOrId === 'number') return nameOrId;
  if (/^\d+$/.test(nameOrId)) return Number(nameOrId);
  const text = await readFile(dbFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === nameOrId && fields[2] !== undefined && /^\d+$/.test(fields[2])) return Number(fields[2]);
  }
  throw new Error(`Cannot set socket ownership: "${nameOrId}" is not in ${dbFile}`);
}
