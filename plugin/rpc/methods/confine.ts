/**
 * What a request may make the daemon (root) touch on the host: files it
 * hands to QEMU (disks, CD-ROM images, kernels) only under the configured
 * roots, and binaries it runs only from `qemuBinaries`. See docs/security.md.
 *
 * A path must be absolute, free of NUL bytes and of "." or ".." segments,
 * lie under a root as given, and still lie under a root (the same or
 * another) once symlinks are resolved: Ganeti's
 * `/var/run/ganeti/instance-disks/NAME:0` links lead into its file-storage
 * directory or to a block device under /dev, and must keep working, while a
 * link that leads out of every root (to /etc/shadow, to /proc/self/fd/N
 * through /dev/fd) is refused. A path that does not exist yet is resolved as
 * far as it exists.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { JSONRPCErrorCode, JSONRPCErrorException } from 'json-rpc-2.0';
import type { Config } from '../../config';
import { GkdError } from '../../errors';
import { resolveQemuBinary } from '../../process/qemu-binary';

function within(path: string, dir: string): boolean {
  return path === dir || dir === sep || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * realpath(3) in one native call: a few microseconds on the event loop,
 * where the promise version is a thread-pool round trip per path on every
 * hot-add.
 */
const realpath = (p: string): string => realpathSync.native(p);

/** `p` with symlinks resolved as far as it exists. */
export function resolvedPath(p: string): string {
  const rest: string[] = [];
  for (let cur = p; ; cur = dirname(cur)) {
    try {
      return join(realpath(cur), ...rest.reverse());
    } catch {
      if (cur === dirname(cur)) return resolve(p);
      rest.push(basename(cur));
    }
  }
}

/**
 * Each root as configured and with its own symlinks resolved (/var/run is
 * /run on most systems), as far as it exists: a root not created yet
 * (Ganeti's run dir before its first start) still matches paths under it
 * resolved the same way.
 */
function rootForms(roots: readonly string[]): string[] {
  const given = roots.map((r) => resolve(r));
  return [...new Set([...given, ...given.map(resolvedPath)])];
}

/**
 * Why `p` may not be used under `roots` (called `rootsName` in the message),
 * or undefined when it may. `except`: directories inside the roots `p` must
 * not lie in (as given, nor once resolved), e.g. the runtime dir inside runDir.
 */
export async function confinementProblem(p: string, roots: readonly string[], rootsName = 'storage roots', except: readonly string[] = []): Promise<string | undefined> {
  if (p.includes('\0')) return 'must not contain a NUL byte';
  if (!p.startsWith('/')) return 'must be an absolute path (a relative one would be resolved against the daemon\'s working directory)';
  if (p.split('/').some((s) => s === '.' || s === '..')) return 'must not have "." or ".." segments';
  const shown = roots.map((r) => `"${r}"`).join(', ');
  const forms = rootForms(roots);
  if (!forms.some((r) => within(p, r))) return `must lie under one of the ${rootsName} ${shown}`;
  const real = resolvedPath(p);
  if (!forms.some((r) => within(real, r))) return `leads through a symlink to "${real}", outside the ${rootsName} ${shown}`;
  const inExcluded = dirHolding(p, except, real);
  if (inExcluded !== undefined) return `must not lie in "${inExcluded}" (inside the ${rootsName}, but not for this use)`;
  return undefined;
}

/**
 * The one of `dirs` (as configured or resolved) that `p` lies in, as given
 * or once resolved (`real`, when the caller has it), or undefined.
 */
export function dirHolding(p: string, dirs: readonly string[], real = resolvedPath(p)): string | undefined {
  return rootForms(dirs).find((d) => within(p, d) || within(real, d));
}

/** One refused value, as a -32602 error naming its JSON Pointer (the value shown up to 200 characters). */
export function paramRefused(method: string, pointer: string, value: string, message: string, data: Record<string, unknown> = {}): JSONRPCErrorException {
  const shown = value.length > 200 ? `${value.slice(0, 200)}…` : value;
  return new JSONRPCErrorException(`Invalid params for "${method}": ${pointer} ${JSON.stringify(shown)} ${message}`, JSONRPCErrorCode.InvalidParams, {
    errors: [{ path: pointer, message }], ...data,
  });
}

/** One refused path, as a -32602 error naming its JSON Pointer. */
export function pathRefused(method: string, pointer: string, value: string, message: string): JSONRPCErrorException {
  // startsAnyway: this node's policy on what the daemon hands QEMU, not a layout QEMU refuses; a
  // Ganeti start pre hook reports it and lets Ganeti start its own QEMU.
  return paramRefused(method, pointer, value, message, { startsAnyway: true });
}

/** Checks `value` (when a string) at `pointer` against `roots`. @throws JSONRPCErrorException -32602 */
export async function checkPathParam(method: string, pointer: string, value: unknown, roots: readonly string[], rootsName?: string): Promise<void> {
  if (typeof value !== 'string') return;
  const problem = await confinementProblem(value, roots, rootsName);
  if (problem !== undefined) throw pathRefused(method, pointer, value, problem);
}

/** A disk spec's path is opened only when it has no `uri` (rbd and gluster are network protocols, no host file). */
function diskPathUsed(disk: Record<string, unknown>): boolean {
  return disk.uri === undefined || disk.uri === null;
}

/**
 * Checks the host paths of an instance spec at `base` (e.g. `/instance`):
 * disk paths and CD-ROM images under storageRoots, kernel and initrd under
 * kernelRoots. Params are schema-checked already; odd shapes are skipped
 * (the planner names them).
 * @throws JSONRPCErrorException -32602 naming the first refused path
 */
export async function checkSpecPaths(method: string, spec: unknown, base: string, config: Config): Promise<void> {
  if (spec === null || typeof spec !== 'object') return;
  const s = spec as { disks?: unknown; hvparams?: Record<string, unknown> };
  if (Array.isArray(s.disks)) {
    for (const [i, d] of s.disks.entries()) {
      if (d !== null && typeof d === 'object' && diskPathUsed(d as Record<string, unknown>)) {
        await checkPathParam(method, `${base}/disks/${i}/path`, (d as Record<string, unknown>).path, config.storageRoots);
      }
    }
  }
  const hv = s.hvparams ?? {};
  for (const k of ['cdrom_image_path', 'cdrom2_image_path']) {
    if (hv[k] !== '') await checkPathParam(method, `${base}/hvparams/${k}`, hv[k], config.storageRoots);
  }
  for (const k of ['kernel_path', 'initrd_path']) {
    if (hv[k] !== '') await checkPathParam(method, `${base}/hvparams/${k}`, hv[k], config.kernelRoots, 'kernel roots');
  }
}

/** The configured binary for a spec's `hvparams.kvm_path`. @throws GkdError naming `hvparams.kvm_path` */
export function qemuBinaryFor(spec: unknown, config: Config): string {
  const hv = (spec as { hvparams?: Record<string, unknown> } | null)?.hvparams;
  const kvmPath = typeof hv?.kvm_path === 'string' ? hv.kvm_path : undefined;
  try {
    return resolveQemuBinary(kvmPath, config.qemuBinaries, 'hvparams.kvm_path');
  } catch (e) {
    // The daemon will not run it; Ganeti, which runs the instance's QEMU itself, still may.
    if (e instanceof GkdError) throw new GkdError(e.code, e.message, { field: 'hvparams.kvm_path', data: { startsAnyway: true } });
    throw e;
  }
}
