/**
 * Reads the environment Ganeti gives hook scripts into an instance spec.
 *
 * Ganeti exports each value as a string (`GANETI_INSTANCE_HV_<param>`,
 * `GANETI_INSTANCE_DISK<n>_UUID`, …; see Ganeti's `BuildInstanceHookEnv`).
 * Types are restored from the planner's defaults table; hvparams this
 * release does not know stay strings, untouched. Pure: takes the
 * environment as an argument.
 */
import { HVPARAM_DEFAULTS } from '../planner';
import type { DiskSpec, InstanceSpec, NicSpec } from '../types';

/** Where Ganeti links an instance's disks for the hypervisor (`<dir>/<name>:<index>`). */
export const INSTANCE_DISKS_DIR = '/var/run/ganeti/instance-disks';

/** Integer beparams (Ganeti's `BE_*` of type int). */
const INT_BEPARAMS = new Set(['maxmem', 'minmem', 'memory', 'vcpus', 'spindle_use']);
const BOOL_BEPARAMS = new Set(['auto_balance', 'always_failover']);

/** A missing or malformed variable, named for the hook's output. */
export class HookEnvError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(message);
    this.name = 'HookEnvError';
    this.variable = variable;
  }
}

/** The Ganeti hook context every hook reads. */
export interface HookContext {
  /** `GANETI_HOOKS_PATH`, e.g. `instance-start`. */
  hpath?: string;
  /** `GANETI_HOOKS_PHASE`: `pre` or `post`. */
  phase?: string;
  /** `GANETI_INSTANCE_NAME`. */
  instance?: string;
  /** `GANETI_INSTANCE_HYPERVISOR`, e.g. `kvm`. */
  hypervisor?: string;
  /** `GANETI_INSTANCE_STATUS`, e.g. `up`. */
  status?: string;
}

/** The common hook variables. */
export function hookContext(env: NodeJS.ProcessEnv): HookContext {
  return {
    hpath: env.GANETI_HOOKS_PATH,
    phase: env.GANETI_HOOKS_PHASE,
    instance: env.GANETI_INSTANCE_NAME,
    hypervisor: env.GANETI_INSTANCE_HYPERVISOR,
    status: env.GANETI_INSTANCE_STATUS,
  };
}

export interface SpecFromHookEnvOptions {
  /** Where the instance's disk links live. @default INSTANCE_DISKS_DIR */
  disksDir?: string;
  /**
   * Give a disk or NIC whose UUID Ganeti exports empty (or not at all) a
   * placeholder UUID instead of refusing (see {@link placeholderUuid}).
   * Only for instance-add: at that point the devices have no UUID yet.
   */
  placeholderUuids?: boolean;
}

/**
 * A deterministic stand-in UUID for device `index` of `kind`, for
 * instance-add. Ganeti's add hook environment carries `DISK<n>_UUID` empty:
 * `BuildDiskEnv` reads `disk.get("uuid", "")` from the dicts `ComputeDisks`
 * builds, which have no UUID yet (it is assigned when the disk objects are
 * generated in Exec, after the pre hooks). Placement needs only each device's
 * index, size and mode; the ids just have to be valid and distinct, so the
 * index goes in the UUID's first group (device ids keep the first three).
 * The kind is in the last group only to make the value recognisable.
 */
export function placeholderUuid(kind: 'disk' | 'nic', index: number): string {
  const tag = kind === 'disk' ? 'd15c' : '0e1c';
  return `${index.toString(16).padStart(8, '0')}-0000-4000-8000-${tag}00000000`;
}

/**
 * Builds the instance spec the planner reads from a Ganeti hook environment.
 * @throws HookEnvError naming the variable when one is missing or malformed
 */
export function specFromHookEnv(env: NodeJS.ProcessEnv, options: SpecFromHookEnvOptions = {}): InstanceSpec {
  checkHookEnvBudget(env);
  const disksDir = options.disksDir ?? INSTANCE_DISKS_DIR;
  const uuidOf = (variable: string, kind: 'disk' | 'nic', index: number): string => {
    const v = env[variable];
    if (options.placeholderUuids === true && (v === undefined || v === '')) return placeholderUuid(kind, index);
    return need(env, variable);
  };
  const name = need(env, 'GANETI_INSTANCE_NAME');
  const hvparams: Record<string, unknown> = {};
  const beparams: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if (k.startsWith('GANETI_INSTANCE_HV_')) {
      const p = k.slice('GANETI_INSTANCE_HV_'.length);
      hvparams[p] = hvValue(p, v);
    } else if (k.startsWith('GANETI_INSTANCE_BE_')) {
      const p = k.slice('GANETI_INSTANCE_BE_'.length);
      beparams[p] = INT_BEPARAMS.has(p) ? int(k, v) : BOOL_BEPARAMS.has(p) ? v === 'True' : v;
    }
  }
  // Older Ganeti exports only the summary variables, not every BE_ param.
  if (beparams.maxmem === undefined && env.GANETI_INSTANCE_MAXMEM) beparams.maxmem = int('GANETI_INSTANCE_MAXMEM', env.GANETI_INSTANCE_MAXMEM);
  if (beparams.vcpus === undefined && env.GANETI_INSTANCE_VCPUS) beparams.vcpus = int('GANETI_INSTANCE_VCPUS', env.GANETI_INSTANCE_VCPUS);

  const disks: DiskSpec[] = [];
  const diskCount = count('GANETI_INSTANCE_DISK_COUNT', env.GANETI_INSTANCE_DISK_COUNT ?? '0');
  for (let i = 0; i < diskCount; i++) {
    const pre = `GANETI_INSTANCE_DISK${i}_`;
    const disk: DiskSpec = { uuid: uuidOf(`${pre}UUID`, 'disk', i), path: `${disksDir}/${name}:${i}`, uri: null };
    if (env[`${pre}MODE`]) disk.mode = env[`${pre}MODE`] === 'ro' ? 'ro' : 'rw';
    if (env[`${pre}SIZE`]) disk.size = int(`${pre}SIZE`, env[`${pre}SIZE`] as string);
    if (env[`${pre}NAME`]) disk.name = env[`${pre}NAME`];
    disks.push(disk);
  }
  const nics: NicSpec[] = [];
  const nicCount = count('GANETI_INSTANCE_NIC_COUNT', env.GANETI_INSTANCE_NIC_COUNT ?? '0');
  for (let i = 0; i < nicCount; i++) {
    const pre = `GANETI_INSTANCE_NIC${i}_`;
    const nicparams: Record<string, unknown> = {};
    for (const p of ['MODE', 'LINK', 'VLAN']) {
      const v = env[`${pre}${p}`];
      if (v) nicparams[p.toLowerCase()] = v;
    }
    const nic: NicSpec = { uuid: uuidOf(`${pre}UUID`, 'nic', i), mac: need(env, `${pre}MAC`), nicparams };
    if (env[`${pre}NAME`]) nic.name = env[`${pre}NAME`];
    const ip = env[`${pre}IP`];
    nic.ip = ip && ip !== 'None' ? ip : null;
    nics.push(nic);
  }
  // Ganeti's hook environment carries no instance UUID; the planner then omits -uuid.
  const spec = { name, hvparams, beparams, disks, nics } as Partial<InstanceSpec> & Pick<InstanceSpec, 'name' | 'disks' | 'nics'>;
  if (env.GANETI_INSTANCE_UUID) spec.uuid = env.GANETI_INSTANCE_UUID;
  return spec as InstanceSpec;
}

/** Restores an hvparam's type from the planner's defaults; unknown params stay strings. */
function hvValue(param: string, raw: string): unknown {
  if (!Object.prototype.hasOwnProperty.call(HVPARAM_DEFAULTS, param)) return raw;
  const def: unknown = (HVPARAM_DEFAULTS as Record<string, unknown>)[param];
  if (typeof def === 'boolean') return raw === 'True' || raw === 'true';
  // Numeric params (and `auto`-or-number ones) arrive as decimal strings.
  if ((typeof def === 'number' || def === 'auto') && /^-?\d+$/.test(raw)) return Number(raw);
  return raw;
}

/** Longest value of one GANETI_* variable read; real ones are at most a few KiB (kvm_extra, kernel_args). */
export const MAX_HOOK_VALUE = 64 * 1024;
/** Largest DISK_COUNT / NIC_COUNT read: far above Ganeti's limits (16 disks, 8 NICs), which the planner names. */
export const MAX_HOOK_DEVICES = 64;

/** Refuses an oversize GANETI_* variable, naming it, before anything is built from the environment. */
function checkHookEnvBudget(env: NodeJS.ProcessEnv): void {
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith('GANETI_') && v !== undefined && v.length > MAX_HOOK_VALUE) {
      throw new HookEnvError(k, `Cannot read the Ganeti hook environment: ${k} is ${v.length} characters long, over the limit of ${MAX_HOOK_VALUE}`);
    }
  }
}

/** A device count: a whole number up to MAX_HOOK_DEVICES (a huge one would make the loops below endless). */
function count(variable: string, raw: string): number {
  const n = int(variable, raw);
  if (n > MAX_HOOK_DEVICES) throw new HookEnvError(variable, `Cannot read the Ganeti hook environment: ${variable}=${raw.length > 20 ? `${raw.slice(0, 20)}…` : raw} is over the limit of ${MAX_HOOK_DEVICES}`);
  return n;
}

function need(env: NodeJS.ProcessEnv, variable: string): string {
  const v = env[variable];
  if (v === undefined || v === '') throw new HookEnvError(variable, `Cannot read the Ganeti hook environment: ${variable} is not set`);
  return v;
}

function int(variable: string, raw: string): number {
  if (!/^\d{1,15}$/.test(raw)) throw new HookEnvError(variable, `Cannot read the Ganeti hook environment: ${variable}="${raw.length > 40 ? `${raw.slice(0, 40)}…` : raw}" is not a whole number of at most 15 digits`);
  return Number(raw);
}
