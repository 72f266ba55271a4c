/**
 * Which QEMU binary the daemon may execute for an instance, and a small
 * cache keyed by the binary's identity on disk.
 *
 * The daemon runs as root and anyone in the socket's group may call it, so
 * the binary it runs (`-machine help`, `-device help`, a launched QEMU) comes
 * from configuration (`qemuBinaries`), never from a request: a request's
 * `hvparams.kvm_path` (or a runtime's kvm_cmd[0]) only selects one of the
 * configured binaries.
 */
import { statSync } from 'node:fs';
import { GkdError } from '../errors';

/** Ganeti's default `kvm_path`; on Debian a link or wrapper to qemu-system-x86_64. */
export const GANETI_DEFAULT_KVM_PATH = '/usr/bin/kvm';

/** The binary a node runs when the configuration names none. */
export const DEFAULT_QEMU_BINARIES: readonly string[] = ['/usr/bin/qemu-system-x86_64'];

/**
 * The configured binary to run for `kvmPath`: `kvmPath` itself when it is
 * in `allowed`; the first configured binary when it is unset or Ganeti's
 * default `/usr/bin/kvm` (an operator who never set kvm_path means "this
 * node's QEMU"); otherwise refused, naming `field`.
 * @throws GkdError `GKD_UNSUPPORTED_VALUE` with `field`
 */
export function resolveQemuBinary(kvmPath: string | undefined, allowed: readonly string[], field: string): string {
  if (allowed.length === 0) throw new GkdError('GKD_UNSUPPORTED_VALUE', 'Cannot run QEMU: the configuration lists no qemuBinaries', { field });
  if (kvmPath === undefined || kvmPath === '' || kvmPath === GANETI_DEFAULT_KVM_PATH) return allowed[0];
  if (allowed.includes(kvmPath)) return kvmPath;
  const shown = kvmPath.length > 200 ? `${kvmPath.slice(0, 200)}…` : kvmPath;
  throw new GkdError('GKD_UNSUPPORTED_VALUE',
    `Cannot use ${field} ${JSON.stringify(shown)}: the daemon runs only the QEMU binaries its configuration lists (qemuBinaries: ${allowed.map((b) => JSON.stringify(b)).join(', ')}) or Ganeti's default ${GANETI_DEFAULT_KVM_PATH}`,
    { field });
}

/** What identifies the file at `path` now (so an in-place upgrade is noticed); undefined when it is absent. */
export function fileIdentity(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch {
    return undefined;
  }
}

/**
 * Facts about a binary, cached per path and refreshed when the file at that
 * path changes (a package upgrade replaces or rewrites it). At most
 * `maxEntries` paths are kept, the least recently used dropped first.
 */
export class BinaryFactsCache<T> {
  readonly #maxEntries: number;
  readonly #entries = new Map<string, { identity: string | undefined; value: Promise<T> }>();

  constructor(maxEntries = 8) {
    this.#maxEntries = maxEntries;
  }

  /** The cached facts of `path`, computed by `compute` when missing or when the file changed. A failure is not kept. */
  get(path: string, compute: () => Promise<T>): Promise<T> {
    const identity = fileIdentity(path);
    const hit = this.#entries.get(path);
    if (hit !== undefined) {
      this.#entries.delete(path);
      if (hit.identity === identity) {
        this.#entries.set(path, hit);
        return hit.value;
      }
    }
    const value = compute();
    const entry = { identity, value };
    this.#entries.set(path, entry);
    value.catch(() => {
      if (this.#entries.get(path) === entry) this.#entries.delete(path);
    });
    while (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
    return value;
  }

  /** How many paths are cached. */
  get size(): number {
    return this.#entries.size;
  }
}
