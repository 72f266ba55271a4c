/**
 * Ganeti 3.0's own KVM code as an oracle: `test/ganeti-code/rebuild-devices.py`
 * reads a runtime file with Ganeti's installed Python modules and prints
 * what a Ganeti migration target would build from it.
 *
 * Ganeti's code comes from the Debian package `ganeti` (`.ci/run` installs
 * it). When it is missing, {@link ganetiRebuild} fails with a message that
 * says so: a test that needs the oracle never passes without it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { serializeRuntime } from '../../plugin/runtime';

/** Where Ganeti's Python code lives; `GANETI_PY` overrides it. */
export const GANETI_PY = process.env.GANETI_PY ?? '/usr/share/ganeti/3.0';

/** The script, found from both `test/helpers` and `dist/test/helpers`. */
const SCRIPT = resolve(__dirname, __dirname.includes('/dist/') ? '../../../test/ganeti-code/rebuild-devices.py' : '../ganeti-code/rebuild-devices.py');

export interface GanetiNic {
  mac: string;
  nicparams: Record<string, unknown>;
  mode: string;
  link: string;
  hvinfo: Record<string, unknown>;
  uuid: string;
  /** What Ganeti puts after `-device` for it, or null without hvinfo id. */
  device: string | null;
}

export interface GanetiDisk {
  dev_type: string | null;
  logical_id: unknown[] | null;
  iv_name: string | null;
  mode: string;
  hvinfo: Record<string, unknown>;
  uuid: string;
  link: string;
  uri: string | null;
}

/** What Ganeti's code made of a runtime file. */
export interface GanetiRebuild {
  nics: GanetiNic[];
  disks: GanetiDisk[];
  /** `_GenerateKVMBlockDevicesOptions`: `-boot`, `-device`, `-drive` options. */
  block_options: string[];
}

/**
 * Runs Ganeti's code on `runtime` (a value, serialized as Ganeti writes it,
 * or the file's text).
 * @throws Error naming the missing package, or with Ganeti's traceback
 */
export function ganetiRebuild(runtime: unknown): GanetiRebuild {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-ganeti-'));
  try {
    const file = join(dir, 'instance.runtime');
    writeFileSync(file, typeof runtime === 'string' ? runtime : serializeRuntime(runtime));
    let out: string;
    try {
      out = execFileSync('/usr/bin/python3', [SCRIPT, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GANETI_PY } });
    } catch (e) {
      const err = e as { status?: number; stderr?: string };
      if (err.status === 3) throw new Error(`Ganeti's Python code is needed for this test and is not installed at ${GANETI_PY}: install the Debian package "ganeti"`);
      throw new Error(`Ganeti's code failed on the runtime file: ${err.stderr ?? String(e)}`);
    }
    return JSON.parse(out) as GanetiRebuild;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `-device`/`-drive` values of an option list, in order. */
export function optionValues(argv: readonly string[], option: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length - 1; i++) if (argv[i] === option) out.push(argv[i + 1]);
  return out;
}

/** `driver,k=v,…` → ordered [key, value] pairs, `driver` first (no escaped commas in these tests). */
export function optionPairs(value: string, head = 'driver'): Array<[string, string]> {
  return value.split(',').map((p, i) => {
    const eq = p.indexOf('=');
    return i === 0 && eq < 0 ? [head, p] : [p.slice(0, eq), p.slice(eq + 1)];
  });
}
