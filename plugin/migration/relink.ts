/**
 * Repair of stale disk link names (see ./disk-links): on the node that runs
 * the instance, link each such disk under the name a target will create and
 * point the runtime file at it. QEMU keeps the file it has open; only what
 * a target rebuilds changes.
 */
import { lstatSync, readlinkSync, realpathSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GkdError } from '../errors';
import type { RuntimeV2_16 } from '../types';
import type { StaleDiskLink } from './disk-links';

/** What {@link relinkDisks} did: the new runtime and one line per disk. */
export interface Relinked {
  runtime: RuntimeV2_16;
  lines: string[];
}

/** The file a path leads to, or undefined when it leads nowhere. */
function resolved(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Links every stale disk under its expected name and returns the runtime
 * naming those links. An expected name already taken by a link to a file
 * no disk of the instance uses (the removed disk's) is replaced; taken by
 * anything else, nothing is changed and GKD_DRIFT names the disk.
 */
export function relinkDisks(runtime: RuntimeV2_16, stale: StaleDiskLink[]): Relinked {
  const files = new Set(runtime[3].map(([, p]) => resolved(p)).filter((f): f is string => f !== undefined));
  const plan: Array<{ s: StaleDiskLink; file: string }> = [];
  for (const s of stale) {
    const file = resolved(s.path);
    if (file === undefined) throw new GkdError('GKD_DRIFT', `Cannot relink disk ${s.index} (${s.uuid}): ${s.path} leads nowhere on this node`, { field: `runtime[3][${s.index}][1]` });
    let taken: 'free' | 'same' | 'stale' | 'busy' = 'free';
    try {
      const st = lstatSync(s.expected);
      const to = resolved(s.expected);
      if (!st.isSymbolicLink()) taken = 'busy';
      else if (to === file) taken = 'same';
      else if (to === undefined || !files.has(to)) taken = 'stale';
      else taken = 'busy';
    } catch {
      taken = 'free';
    }
    if (taken === 'busy') {
      throw new GkdError('GKD_DRIFT', `Cannot relink disk ${s.index} (${s.uuid}) as ${s.expected}: that name belongs to another disk of the instance`, { field: `runtime[3][${s.index}][1]` });
    }
    plan.push({ s, file: taken === 'same' ? '' : file });
  }
  const next = structuredClone(runtime);
  const lines: string[] = [];
  for (const { s, file } of plan) {
    if (file !== '') {
      // Create beside it, then rename over: the name never points nowhere.
      const tmp = join(dirname(s.expected), `.${s.uuid}.relink`);
      rmSync(tmp, { force: true });
      symlinkSync(readlinkTarget(s.path, file), tmp);
      renameSync(tmp, s.expected);
    }
    next[3][s.index][1] = s.expected;
    lines.push(`disk ${s.index} (${s.uuid}): ${s.path} -> ${s.expected}`);
  }
  return { runtime: next, lines };
}

/** What the new link points at: the old link's own target when it is a link (as Ganeti made it), else the file. */
function readlinkTarget(path: string, file: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return file;
  }
}
