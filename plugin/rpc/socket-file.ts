/**
 * The daemon's socket file: claiming the path (refusing a live one, removing
 * a stale one), then tightening its mode and ownership once listening.
 */
import { connect } from 'node:net';
import { chmod, chown, lstat, mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What {@link claimSocketPath} did. */
export interface ClaimedSocketPath {
  /** Directories it created for the socket, the socket's own first (empty when they all existed). */
  createdDirs: string[];
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
  let st;
  try {
    st = await lstat(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { createdDirs };
    throw e;
  }
  if (!st.isSocket()) throw new Error(`Cannot listen on "${socketPath}": the path exists and is not a socket`);
  if (await isLive(socketPath)) throw new SocketInUseError(socketPath);
  await unlink(socketPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  return { createdDirs };
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
