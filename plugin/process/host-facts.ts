/**
 * Facts about this node the pure planner needs but must not look up
 * itself: which disk paths are block devices, and which versioned machine
 * type each alias (`pc`, `q35`) names in the local QEMU.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { BinaryFactsCache } from './qemu-binary';

/** True when `path` (after symlinks, as Ganeti's instance-disks links are) is a block device. */
export function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

// Keyed by the binary's path and refreshed when the file changes: QEMU upgraded in place may map
// `pc` to a newer version. Bounded, though only configured binaries reach it from the daemon.
const aliasCache = new BinaryFactsCache<Record<string, string>>();

/**
 * Alias → versioned machine type from `QEMU -machine help`
 * (`pc  Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)`), plus
 * `""` → the default machine. Resolves to `{}` when QEMU can't be run, so
 * planning still works on a node without QEMU (the alias stays unfrozen).
 */
export function localMachineAliases(qemu: string): Promise<Record<string, string>> {
  return aliasCache.get(qemu, () => new Promise((resolve) => {
    execFile(qemu, ['-machine', 'help'], { timeout: 10_000 }, (err, stdout) => {
      if (err) return resolve({});
      resolve(parseMachineHelp(stdout).aliases);
    });
  }));
}

/** Parses `-machine help` output into alias map and the set of machine names. */
export function parseMachineHelp(text: string): { aliases: Record<string, string>; machines: Set<string> } {
  const aliases: Record<string, string> = {};
  const machines = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (m === null || line.startsWith('Supported machines')) continue;
    machines.add(m[1]);
    const a = /\(alias of (\S+)\)/.exec(m[2]);
    if (a !== null) aliases[m[1]] = a[1];
    if (/\(default\)/.test(m[2]) && aliases[''] === undefined) aliases[''] = m[1];
  }
  return { aliases, machines };
}

/** Creates the node-local dirs an argv built with `runDir` needs (`pid/`, `ctrl/`), as Ganeti's ensure-dirs does. */
export function prepareRunDir(runDir: string): void {
  for (const sub of ['pid', 'ctrl']) mkdirSync(`${runDir}/${sub}`, { recursive: true, mode: 0o750 });
}
