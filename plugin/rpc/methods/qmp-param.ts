/**
 * The `qmp` (and `targetQmp`) params name a Unix socket the daemon, running
 * as root, connects to. Any member of the socket's group may call, so the
 * path is confined to the daemon's own run dir (where Ganeti's QMP sockets
 * live) or the directory of its `qmpPattern`; the schemas already refuse
 * relative paths and "." or ".." segments.
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { JSONRPCErrorCode, JSONRPCErrorException } from 'json-rpc-2.0';
import type { Config } from '../../config';
import { qmpSocketFor } from '../../config';
import type { RpcMethod } from '../method';

/** Params that name a QMP socket. */
export const QMP_PARAMS = ['qmp', 'targetQmp'] as const;

/** Directories a `qmp` param may point into: `runDir`, and the qmpPattern's directory when it names no instance. */
export function allowedQmpDirs(config: Pick<Config, 'runDir' | 'qmpPattern'>): string[] {
  const dirs = [resolve(config.runDir)];
  const patternDir = config.qmpPattern.replaceAll('{runDir}', config.runDir);
  if (!dirname(patternDir).includes('{name}')) {
    const d = resolve(dirname(qmpSocketFor(config, 'x')));
    if (!dirs.some((r) => within(d, r))) dirs.push(d);
  }
  return dirs;
}

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** `p` with symlinks resolved as far as it exists (the socket itself may not exist yet). */
async function resolvedPath(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    try {
      return join(await realpath(dirname(p)), basename(p));
    } catch {
      return resolve(p);
    }
  }
}

/**
 * Refuses a `qmp`/`targetQmp` param outside the allowed directories.
 * @throws JSONRPCErrorException -32602 with `data.errors` naming `/qmp` (or `/targetQmp`)
 */
export async function checkQmpParams(method: string, params: Record<string, unknown>, config: Config): Promise<void> {
  for (const key of QMP_PARAMS) {
    const value = params[key];
    if (typeof value !== 'string') continue;
    const dirs = allowedQmpDirs(config);
    const real = await resolvedPath(value);
    const realDirs = await Promise.all(dirs.map((d) => realpath(d).catch(() => d)));
    // Both the path as given and where it leads (say through a symlink) must be inside:
    // /var/run is itself a symlink to /run on most systems, hence both forms of each dir.
    const roots = [...dirs, ...realDirs];
    if (roots.some((d) => within(resolve(value), d)) && roots.some((d) => within(real, d))) continue;
    const message = `must be a socket under ${dirs.map((d) => `"${d}"`).join(' or ')}`;
    throw new JSONRPCErrorException(`Invalid params for "${method}": /${key} "${value}" ${message}`, JSONRPCErrorCode.InvalidParams, {
      errors: [{ path: `/${key}`, message }],
    });
  }
}

/** `m` with its QMP params checked before its handler runs (methods without them unchanged). */
export function withQmpCheck(m: RpcMethod): RpcMethod {
  const props = (m.schema.properties ?? {}) as Record<string, unknown>;
  if (!QMP_PARAMS.some((k) => k in props)) return m;
  return {
    ...m,
    handler: async (params, ctx) => {
      await checkQmpParams(m.name, params, ctx.config);
      return m.handler(params, ctx);
    },
  };
}
