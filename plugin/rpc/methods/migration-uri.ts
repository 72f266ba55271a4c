/**
 * Where the migration URIs of a request may make a root QEMU bind or
 * connect: `migration.accept`'s `incoming` and `migration.start`'s `uri`.
 * See docs/security.md.
 *
 * Why: QEMU binds an `-incoming unix:PATH` after unlinking whatever PATH
 * names, and connects a `migrate unix:PATH` to any socket and writes the
 * migration stream into it, both as root. Without this rule a member of the
 * socket's group could delete any host file (`incoming: "unix:/etc/passwd"`)
 * or pour a stream whose content a guest controls (its RAM) into a root-only
 * socket: another instance's QMP or human monitor, whose `migrate exec:`
 * runs commands, or a system daemon's socket.
 *
 * The rule: a `unix:` path (QEMU takes everything after `unix:` as the path,
 * commas included) must lie under the daemon's run dir, as given and with
 * symlinks resolved (confine.ts), outside the runtime dir (a socket there
 * would replace an instance's runtime file) and outside the instances'
 * control sockets (the `ctrl/` directories of the run dir and of Ganeti's,
 * and whatever `qmpPattern` names). An `incoming` path must not name an
 * existing file other than a socket (a stale socket of an earlier try may
 * be bound again). `migration.start` takes `tcp:` (between nodes) and
 * `unix:` only; `exec:`, `file:`, `fd:`, `rdma:` and `vsock:` are refused,
 * the daemon has no use for them and `exec:` and `file:` would make QEMU
 * run a command or write a file as root. `incoming` keeps the forms
 * target-checks.ts allows (`tcp:`, `unix:`, `defer`).
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../config';
import { DEFAULT_RUN_DIR } from '../../planner';
import { confinementProblem, dirHolding, resolvedPath } from './confine';

/** The config a migration socket is judged against. */
export type MigrationSocketConfig = Pick<Config, 'runDir' | 'runtimeDir' | 'qmpPattern'>;

/** The directories of the instances' control sockets (QMP, human monitor, serial consoles, kvmd). */
function controlDirs(config: MigrationSocketConfig): string[] {
  return [...new Set([join(config.runDir, 'ctrl'), join(DEFAULT_RUN_DIR, 'ctrl')])];
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Matches every instance's QMP socket by `qmpPattern`, with the run dir as given and resolved. */
function qmpPatternMatcher(config: MigrationSocketConfig): (p: string) => boolean {
  const res = [...new Set([config.runDir, resolvedPath(config.runDir)])].map((runDir) => {
    const parts = config.qmpPattern.replaceAll('{runDir}', runDir).split('{name}').map(escapeRegExp);
    return new RegExp(`^${parts.join('[^/]+')}$`);
  });
  return (p) => res.some((re) => re.test(p));
}

/**
 * Why QEMU may not bind or connect at `path` (a `unix:` migration address)
 * for this daemon, or undefined when it may.
 */
export async function migrationSocketProblem(path: string, config: MigrationSocketConfig): Promise<string | undefined> {
  const confined = await confinementProblem(path, [config.runDir], 'run dir', [config.runtimeDir]);
  if (confined !== undefined) return confined;
  const isQmp = qmpPatternMatcher(config);
  if (isQmp(path) || isQmp(resolvedPath(path))) return `is an instance's QMP socket (qmpPattern "${config.qmpPattern}")`;
  const ctrl = controlDirs(config);
  if (dirHolding(path, ctrl) !== undefined) {
    return `must not lie in ${ctrl.map((d) => `"${d}"`).join(' or ')}, where the instances' QMP, monitor and serial sockets are`;
  }
  return undefined;
}

/**
 * Why `incoming` (migration.accept) may not be used, or undefined when it
 * may: a `unix:` path as {@link migrationSocketProblem}, and not an
 * existing file other than a socket (QEMU unlinks it before binding).
 * Other forms are left to target-checks.ts.
 */
export async function incomingAddressProblem(incoming: string, config: MigrationSocketConfig): Promise<string | undefined> {
  if (!incoming.startsWith('unix:')) return undefined;
  const path = incoming.slice('unix:'.length);
  const problem = await migrationSocketProblem(path, config);
  if (problem !== undefined) return `unix: path "${path}" ${problem}`;
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return undefined; // nothing there (or a parent that is no directory, where QEMU fails too)
  }
  if (!st.isSocket()) return `unix: path "${path}" names an existing ${st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : 'file'}, which QEMU would delete before binding; give a path where nothing or a stale socket is`;
  return undefined;
}

/**
 * Why `uri` (migration.start) may not be used, or undefined when it may:
 * `tcp:` passes, a `unix:` path as {@link migrationSocketProblem}, any other
 * scheme is refused.
 */
export async function migrationUriProblem(uri: string, config: MigrationSocketConfig): Promise<string | undefined> {
  if (uri.startsWith('tcp:')) return undefined;
  if (uri.startsWith('unix:')) {
    const path = uri.slice('unix:'.length);
    const problem = await migrationSocketProblem(path, config);
    return problem === undefined ? undefined : `unix: path "${path}" ${problem}`;
  }
  if (/^\s*exec:/.test(uri)) return 'must not be an exec: URI (QEMU runs its command as root); use tcp:HOST:PORT or unix:/PATH';
  return 'must be "tcp:HOST:PORT" or "unix:/PATH" (other migration URIs, such as file:, fd:, rdma: or vsock:, are not used by the daemon)';
}
