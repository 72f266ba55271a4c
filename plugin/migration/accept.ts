/**
 * `migration.accept`, on the target: take the source's runtime, make sure
 * this node can run it exactly, record it, and build (or start) QEMU with
 * `-incoming`. Every refusal happens before QEMU starts.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { GkdError, isGkdError } from '../errors';
import { faultPoint } from '../fault-point';
import { buildArgv, optionName, runtimeName, DEFAULT_RUN_DIR, type BuildOptions } from '../planner';
import { launchQemu, type QemuProcess } from '../process';
import { prepareRunDir } from '../process/host-facts';
import { convertRuntime, detectFormat, validateRuntime } from '../runtime';
import type { RuntimeFormatId, RuntimeV2_16 } from '../types';
import type { MigrationContext } from './context';
import { migrationSettings } from './migration-settings';
import { qemuOffer } from './node-facts';
import { incomingProblem, machineType, targetRefusals, type Refusal } from './target-checks';
import { describeUnplaced, UNPLACED_REASON, unplacedDevices } from './unplaced';

/** Params of {@link acceptMigration}. */
export interface AcceptParams {
  name: string;
  /** The source's runtime, any supported format version (upgraded in memory). */
  runtime: unknown;
  /** `-incoming` URI: `tcp:HOST:PORT`, `unix:/PATH` or `defer`. */
  incoming: string;
  /** QMP socket the target serves; overrides `ctx.qmpSocket(name)`. */
  qmp?: string;
  /** Start QEMU and return once its QMP answers. @default false */
  launch?: boolean;
  /** Node-local command-line parts of this target (serial ports, NIC backends); never from the source. */
  build?: Pick<BuildOptions, 'serials' | 'nicBackends'>;
}

/** What {@link acceptMigration} returns. */
export interface AcceptResult {
  /** The target's argv, with `-incoming`. */
  argv: string[];
  /** The QMP socket the target serves. */
  qmp: string;
  /** The format the runtime arrived in (it is written as 2.16). */
  format: RuntimeFormatId;
  /** Things that do not stop the migration but may (an unversioned machine alias). */
  warnings: string[];
  /** With `launch`: the QEMU process (not JSON: the daemon keeps it and returns the rest). */
  process?: QemuProcess;
  /** With `launch`: its pid and `query-status` (`inmigrate`). */
  pid?: number;
  status?: string;
}

/** True when something listens on the unix socket `path` (a QEMU already serving this instance). */
function listening(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false)); // ECONNREFUSED: a socket file left by a QEMU that is gone
    s.setTimeout(2_000, () => done(false));
  });
}

/** The `GKD_MIGRATION_REFUSED` of an accept of `name`, naming the first problem's field (and device). */
export function refused(name: string, problems: Refusal[], cause?: unknown): GkdError {
  const first = problems[0];
  const text = problems.map((p) => (p.device === undefined ? `${p.field}: ${p.reason}` : `${p.field} "${p.device}": ${p.reason}`)).join('; ');
  return new GkdError('GKD_MIGRATION_REFUSED', `Cannot accept the migration of "${name}": ${text}`, {
    field: first.field,
    ...(first.device === undefined ? {} : { device: first.device }),
    data: { refusals: problems },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Detects, validates and upgrades the incoming runtime, refusing with the field at fault. */
function incomingRuntime(name: string, value: unknown): { format: RuntimeFormatId; runtime: RuntimeV2_16 } {
  try {
    const format = detectFormat(value);
    validateRuntime(value, format);
    const runtime = format === '2.16' ? structuredClone(value as RuntimeV2_16) : convertRuntime(structuredClone(value), '2.16', { uuid: randomUUID, name }).value;
    return { format, runtime };
  } catch (e) {
    if (!isGkdError(e)) throw e;
    const field = e.field === undefined ? 'runtime' : e.field.startsWith('runtime') ? e.field : `runtime${e.field.startsWith('[') ? '' : '.'}${e.field}`;
    throw refused(name, [{ field, reason: e.message }], e);
  }
}

/**
 * Checks that this node can honour the source's runtime (format known,
 * `-name` is `name`, every device with an id, machine type and device
 * models in the local QEMU, disk paths present, migration hvparams valid, a
 * usable `incoming`, the instance not already running here, no runtime file
 * for it here), creates instance `name`'s runtime file under the instance
 * lock, and returns the argv with `-incoming`. With `launch`, starts QEMU
 * and returns once QMP answers (status `inmigrate`); if QEMU does not
 * start, the runtime file is removed. Without `launch`, the caller starts
 * QEMU, and if the migration then fails, removes the file
 * (`instance.cleanup`), as Ganeti does after a failed migration.
 *
 * @throws GkdError `GKD_MIGRATION_REFUSED` naming the field (and device)
 *   before anything is written or started; `GKD_LAUNCH_FAILED` with QEMU's
 *   stderr; `GKD_INSTANCE_BUSY` when another operation holds the instance
 */
/** Disk files and kernel images of `runtime` this node may not hand to QEMU (ctx.pathProblem). */
async function hostPathRefusals(ctx: MigrationContext, runtime: RuntimeV2_16): Promise<Refusal[]> {
  if (ctx.pathProblem === undefined) return [];
  const out: Refusal[] = [];
  for (const [i, entry] of runtime[3].entries()) {
    const [, link, uri] = entry;
    if ((uri === null || uri === undefined) && typeof link === 'string') {
      const problem = await ctx.pathProblem(link, 'disk');
      if (problem !== undefined) out.push({ field: `runtime[3][${i}][1]`, reason: `disk path "${link}" ${problem}` });
    }
  }
  const cmd = runtime[0];
  if (ctx.commandProblems !== undefined) {
    // The whole kvm_cmd: it is written into the runtime file, from which Ganeti starts QEMU elsewhere.
    for (const p of await ctx.commandProblems(cmd.slice(1).map(String), 1)) out.push({ field: `runtime[0][${p.index}]`, reason: p.message });
    return out;
  }
  for (let j = 0; j + 1 < cmd.length; j++) {
    // QEMU takes every option with one dash or two: --kernel opens the file as -kernel does.
    const opt = optionName(String(cmd[j]));
    const kind = opt === '-kernel' || opt === '-initrd' ? 'kernel' : opt === '-cdrom' ? 'disk' : undefined;
    if (kind === undefined) continue;
    const path = String(cmd[j + 1]);
    const problem = await ctx.pathProblem(path, kind);
    if (problem !== undefined) out.push({ field: `runtime[0][${j + 1}]`, reason: `${String(cmd[j])} "${path}" ${problem}` });
  }
  return out;
}

export async function acceptMigration(ctx: MigrationContext, params: AcceptParams): Promise<AcceptResult> {
  const { name, incoming } = params;
  const problem = incomingProblem(incoming);
  if (problem !== undefined) throw refused(name, [{ field: 'incoming', reason: problem }]);
  const { format, runtime } = incomingRuntime(name, params.runtime);
  let recordedName: string;
  try {
    recordedName = runtimeName(runtime);
  } catch (e) {
    throw refused(name, [{ field: 'runtime[0]', reason: (e as Error).message }], e);
  }
  if (recordedName !== name) throw refused(name, [{ field: 'runtime[0]', reason: `kvm_cmd names instance "${recordedName}"` }]);
  // Devices without an id (a 2.9 file; 2.10 devices without a slot): nothing here could place them as the source did.
  const unplaced = unplacedDevices(runtime, format);
  if (unplaced.length > 0) {
    throw new GkdError('GKD_MIGRATION_REFUSED', `Cannot accept the migration of "${name}": ${describeUnplaced(unplaced)}`, {
      field: `runtime${unplaced[0].path}`,
      data: { refusals: unplaced.map((u) => ({ field: `runtime${u.path}`, reason: `${u.label} has no device id: ${UNPLACED_REASON}` })) },
    });
  }
  let settings: ReturnType<typeof migrationSettings>;
  try {
    settings = migrationSettings(runtime[2]);
  } catch (e) {
    throw refused(name, [{ field: `runtime[2].${(e as GkdError).field?.replace(/^hvparams\./, '') ?? ''}`, reason: (e as Error).message }], e);
  }

  let qemu: string;
  try {
    qemu = ctx.qemuBinary === undefined ? String(runtime[0][0]) : ctx.qemuBinary(String(runtime[0][0]), 'runtime[0][0]');
  } catch (e) {
    throw refused(name, [{ field: 'runtime[0][0]', reason: (e as Error).message }], e);
  }
  const pathRefusals = await hostPathRefusals(ctx, runtime);
  if (pathRefusals.length > 0) throw refused(name, pathRefusals);
  const offer = await qemuOffer(qemu).catch((e: Error) => {
    throw refused(name, [{ field: 'runtime[0][0]', reason: `QEMU binary "${qemu}" cannot be run here: ${e.message}` }], e);
  });
  const problems = targetRefusals(runtime, offer, existsSync);
  if (problems.length > 0) throw refused(name, problems);
  const warnings: string[] = [];
  const machine = machineType(runtime[0]);
  if (machine !== undefined && offer.aliases[machine] !== undefined) {
    // The source's alias may name another version than ours; QEMU only finds out once the stream arrives.
    warnings.push(`kvm_cmd has the machine alias "${machine}" (here "${offer.aliases[machine]}"); the source must run the same version`);
  }

  const qmp = params.qmp ?? ctx.qmpSocket(name);
  if (await listening(qmp)) {
    throw refused(name, [{ field: 'name', reason: `a QEMU already serves its QMP socket "${qmp}" on this node` }]);
  }
  const node = ctx.node ?? {};
  let argv: string[];
  try {
    argv = buildArgv(runtime, { ...node, ...params.build, qmp, incoming });
    // The configured binary kvm_cmd[0] stands for (node-local, like the sockets).
    argv[0] = qemu;
  } catch (e) {
    if (!isGkdError(e)) throw e;
    throw refused(name, [{ field: e.field === undefined ? 'runtime' : `runtime ${e.field}`, ...(e.device === undefined ? {} : { device: e.device }), reason: e.message }], e);
  }

  return ctx.store.withLock(name, async () => {
    // Never over another runtime file: it belongs to a QEMU of this instance on this node, or to a failed migration nobody cleaned up.
    const path = ctx.store.path(name);
    const exists = (): GkdError =>
      refused(name, [{ field: 'name', reason: `a runtime file for it already exists on this node ("${path}"); if no QEMU runs the instance here, remove it (instance.cleanup) and retry` }]);
    if (existsSync(path)) throw exists();
    // Recorded before the runtime file is written, closed however this call ends: a daemon killed in
    // between leaves a file nobody asked for, which the next reconcile removes if no QEMU serves it.
    const entry = await ctx.journal?.open(name, { op: 'accept', step: 'runtime write', socket: qmp });
    try {
      return await writeAndLaunch();
    } finally {
      if (entry !== undefined) await ctx.journal?.close(name, entry.seq);
    }
  });

  async function writeAndLaunch(): Promise<AcceptResult> {
    const path = ctx.store.path(name);
    try {
      await ctx.store.write(name, runtime, { expect: null });
    } catch (e) {
      if (existsSync(path)) {
        throw refused(name, [{ field: 'name', reason: `a runtime file for it already exists on this node ("${path}"); if no QEMU runs the instance here, remove it (instance.cleanup) and retry` }]);
      }
      throw e;
    }
    faultPoint('migration-target:written');
    if (params.launch !== true) return { argv, qmp, format, warnings };
    let proc: QemuProcess;
    try {
      prepareRunDir(node.runDir ?? DEFAULT_RUN_DIR);
      proc = await (ctx.launcher ?? launchQemu)(argv, { qmpSocket: qmp });
    } catch (e) {
      await ctx.store.remove(name).catch(() => undefined);
      throw e;
    }
    faultPoint('migration-target:launched');
    try {
      ctx.connections.adopt?.(qmp, proc.qmp);
      // Capabilities such as postcopy-ram or xbzrle must be on at both ends before the stream starts.
      if (settings.capabilities.length > 0) {
        await proc.qmp.execute('migrate-set-capabilities', { capabilities: settings.capabilities.map((capability) => ({ capability, state: true })) });
      }
      const status = (await proc.qmp.execute<{ status: string }>('query-status')).status;
      return { argv, qmp, format, warnings, process: proc, pid: proc.pid, status };
    } catch (e) {
      await proc.stop();
      await ctx.store.remove(name).catch(() => undefined);
      throw e;
    }
  }
}
