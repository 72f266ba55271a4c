/**
 * What each Ganeti hook asks the daemon: one RPC call per hook, chosen by
 * `<hpath>-<phase>`. Only hooks whose methods the daemon serves are listed.
 */
import type { Config } from '../config';
import { RpcCallError } from '../rpc/client';
import type { InstanceSpec } from '../types';
import { describeStaleLinks, type StaleDiskLink } from '../migration/disk-links';
import { isThisNode, peerFormat, type PeerFormat } from './peer-format';
import { HookEnvError, specFromHookEnv, type SpecFromHookEnvOptions } from './hook-env';

/** A hook's verdict and the line Ganeti shows the operator. */
export interface HookOutcome {
  ok: boolean;
  message: string;
  /** The operation goes ahead, but the operator should read the message. */
  warning?: boolean;
}

/** What a hook needs of the daemon: its methods, by name (over the WebSocket or in process). */
export interface HookCaller {
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
}

export interface HookDef {
  phase: 'pre' | 'post';
  /** One line for `kvm-devices hook --help`. */
  summary: string;
  /** Whether the hook concerns one instance (then non-KVM instances are skipped). */
  perInstance: boolean;
  /**
   * What a pre hook does when it cannot judge (daemon unreachable or failing,
   * environment unreadable): `refuse` (the default) or `pass`. Start and
   * reboot pass: they only refuse what QEMU would refuse too, so a dead
   * daemon must not stop every instance of the node.
   */
  whenUnsure?: 'refuse' | 'pass';
  run(env: NodeJS.ProcessEnv, client: HookCaller, config: Config): Promise<HookOutcome>;
}

interface PlanResult {
  devices?: { kind: string; id: string; hvinfo: Record<string, unknown>; hotpluggable?: boolean }[];
}

/** hvparams that decide how NICs are modelled; a problem with one of them is a NIC problem. */
const NIC_HVPARAMS = new Set(['hvparams.nic_type', 'hvparams.vhost_net']);
/**
 * Capacity errors on these fields are about PCI slots or PCIe ports, which the
 * NICs share with the disks: a NIC set that no longer fits is a NIC problem.
 */
const SLOT_FIELDS = new Set(['hvparams.kvm_pci_reservations', 'hvparams.kvm_pcie_spare_ports']);

/** How a refused plan in instance-modify is to be treated. */
type ModifyProblem = { nic: true } | { nic: false; drop: (spec: InstanceSpec) => boolean };

/**
 * Whether a refused `instance.plan` concerns the NICs (count, MACs, UUIDs,
 * NIC type, slots) or something else, and for something else how to set it
 * aside to check the NICs anyway.
 */
function classifyModifyProblem(e: RpcCallError): ModifyProblem {
  const d = e.data as { code?: string; field?: string; device?: string; errors?: { path?: string }[] } | undefined;
  const field = d?.field ?? '';
  const paths = (d?.errors ?? []).map((x) => x.path ?? '');
  if (/^nics\b/.test(field) || (d?.device ?? '').startsWith('nic-') || NIC_HVPARAMS.has(field)) return { nic: true };
  if (paths.some((p) => p.startsWith('/instance/nics') || p.startsWith('/nics'))) return { nic: true };
  if (d?.code === 'GKD_CAPACITY' && SLOT_FIELDS.has(field)) return { nic: true };
  // An hvparam named by the planner (`hvparams.x`) or by a params check (`/instance/hvparams/x`, e.g. a path outside the storage roots).
  const hv = /^hvparams\.([A-Za-z0-9_]+)$/.exec(field) ?? paths.map((p) => /^\/instance\/hvparams\/([A-Za-z0-9_]+)$/.exec(p)).find((m) => m !== null) ?? null;
  if (hv !== null) {
    // Fall back to the default for this hvparam and look again.
    const param = hv[1] as string;
    const drop = (spec: InstanceSpec): boolean => {
      if (spec.hvparams === undefined || !(param in spec.hvparams)) return false;
      delete spec.hvparams[param];
      return true;
    };
    return { nic: false, drop };
  }
  if (/^disks\b/.test(field) || paths.some((p) => p.startsWith('/instance/disks'))) {
    // The NICs are then checked without the disks (slot capacity is optimistic).
    const drop = (spec: InstanceSpec): boolean => {
      if (spec.disks.length === 0) return false;
      spec.disks = [];
      return true;
    };
    return { nic: false, drop };
  }
  return { nic: false, drop: () => false };
}

/**
 * instance-modify: the NIC set Ganeti is about to apply must plan. Only NIC
 * problems refuse (count, MACs, UUIDs, NIC type, slots): anything else the
 * planner would refuse (say hvparams.cdrom_image_path) concerns the next
 * start, not this modify, and is reported as a note. Ganeti does not export
 * whether the modify hot-plugs, so NICs whose model cannot be hot-plugged on
 * a running instance are reported, not refused.
 */
async function modifyCheck(env: NodeJS.ProcessEnv, client: HookCaller): Promise<HookOutcome> {
  const spec = specFromHookEnv(env);
  const notes: string[] = [];
  let plan: PlanResult | undefined;
  // Each round sets one non-NIC problem aside; a handful of rounds covers any real spec.
  for (let round = 0; plan === undefined; round++) {
    try {
      plan = await client.call<PlanResult>('instance.plan', { instance: spec });
    } catch (e) {
      if (!(e instanceof RpcCallError)) throw e;
      const problem = classifyModifyProblem(e);
      if (problem.nic) throw e;
      notes.push(e.message);
      if (round >= 8 || !problem.drop(spec)) {
        return { ok: true, message: `${spec.name}: NICs not checked; not about the NICs, refused at the next start: ${notes.join('; ')}` };
      }
    }
  }
  const cold = (plan.devices ?? []).filter((d) => d.kind === 'nic' && d.hotpluggable === false).map((d) => `${d.id} (${String(d.hvinfo.driver)})`);
  const note = cold.length > 0 && env.GANETI_INSTANCE_STATUS === 'up'
    ? `; not hot-pluggable, applies at the next restart: ${cold.join(', ')}` : '';
  const other = notes.length > 0 ? `; not about the NICs, refused at the next start: ${notes.join('; ')}` : '';
  return { ok: true, message: `${spec.name}: ${spec.nics.length} NIC(s) fit${note}${other}` };
}

/**
 * Whose layout a preflight judges. `new`: an instance Ganeti is about to
 * create, refused whenever it does not plan (a layout that does not fit is
 * better refused before it exists). `existing`: an instance Ganeti already
 * has and now (re)starts; it is refused only when QEMU would refuse it as
 * well, anything else this planner would lay out differently is reported
 * and the start goes ahead.
 */
type PreflightMode = 'new' | 'existing';

/**
 * Layouts the planner would place but Ganeti 3.0 builds in a way QEMU
 * refuses: the start fails whatever the planner thinks, so the hook says
 * why before Ganeti tries.
 */
function ganetiStartFailure(spec: InstanceSpec): string | undefined {
  const nicType = spec.hvparams?.nic_type;
  if (nicType === 'ne2k_isa' && spec.nics.length > 0) {
    return `Cannot start ${spec.nics.length} NIC(s) with hvparams.nic_type "ne2k_isa": Ganeti puts them on the PCI bus (bus=pci.0), where QEMU refuses an ISA card; use another nic_type`;
  }
  return undefined;
}

/** Preflight: the instance as Ganeti describes it must plan (slots, controller limits, ids). */
async function preflight(env: NodeJS.ProcessEnv, client: HookCaller, mode: PreflightMode, options: SpecFromHookEnvOptions = {}): Promise<HookOutcome> {
  const spec = specFromHookEnv(env, options);
  // Ganeti attaches a running instance's CD-ROMs itself (-drive media=cdrom on IDE): nothing to place.
  if (mode === 'existing' && spec.hvparams !== undefined) for (const k of CDROM_PARAMS) delete spec.hvparams[k];
  const failure = ganetiStartFailure(spec);
  if (failure !== undefined) return { ok: false, message: `${spec.name}: ${failure}` };
  let plan: PlanResult;
  try {
    plan = await client.call<PlanResult>('instance.plan', { instance: spec });
  } catch (e) {
    if (!(e instanceof RpcCallError) || !startsAnyway(e)) throw e;
    // QEMU starts this layout as Ganeti builds it: capacity refusals still stop a new layout.
    if (mode === 'new' && codeOf(e) === 'GKD_CAPACITY') throw e;
    return { ok: true, warning: true, message: `${spec.name}: WARNING: ${e.message}; QEMU starts it as Ganeti builds it, so the ${mode === 'new' ? 'add' : 'start'} goes ahead` };
  }
  const devices = plan.devices ?? [];
  const where = devices.map((d) => `${d.id}@${String(d.hvinfo.bus)}${d.hvinfo.addr === undefined ? `:${String(d.hvinfo['scsi-id'])}` : `:${String(d.hvinfo.addr)}`}`);
  return {
    ok: true,
    message: `${spec.name}: ${spec.disks.length} disk(s) and ${spec.nics.length} NIC(s) fit${where.length ? ` (${where.join(', ')})` : ''}`,
  };
}

/** The hvparams naming CD-ROM images, by drive slot. */
const CDROM_PARAMS = ['cdrom_image_path', 'cdrom2_image_path'] as const;

/**
 * A CD-ROM image changed by `gnt-instance modify -H cdrom_image_path=…` on a
 * running instance: Ganeti 3.0 applies it only at the next start; this
 * changes the medium now (an empty value ejects). Returns a line per drive.
 */
async function cdromChanges(env: NodeJS.ProcessEnv, after: NodeJS.ProcessEnv, client: HookCaller): Promise<{ lines: string[]; failed: boolean }> {
  const lines: string[] = [];
  let failed = false;
  if (after.GANETI_INSTANCE_STATUS !== 'up' && after.GANETI_INSTANCE_STATUS !== 'running') return { lines, failed };
  for (const [i, param] of CDROM_PARAMS.entries()) {
    const was = env[`GANETI_INSTANCE_HV_${param}`] ?? '';
    const now = after[`GANETI_INSTANCE_HV_${param}`] ?? '';
    if (was === now) continue;
    try {
      await client.call('cdrom.change', { name: instanceName(env), slot: i + 1, path: now === '' ? null : now });
      lines.push(now === '' ? `CD-ROM ${i + 1} ejected` : `CD-ROM ${i + 1} now "${now}"`);
    } catch (e) {
      // Not running here (another node's hook run), or no such drive: the change applies at the next start.
      if (notRunningHere(e)) continue;
      failed = true;
      lines.push(`WARNING: CD-ROM ${i + 1} not changed live, it applies at the next start: ${(e as Error).message}`);
    }
  }
  return { lines, failed };
}

/** Whether a planner refusal concerns a layout QEMU still starts (the planner says so in `data.startsAnyway`). */
function startsAnyway(e: RpcCallError): boolean {
  return (e.data as { startsAnyway?: unknown } | undefined)?.startsAnyway === true;
}

/**
 * instance-reboot: a full reboot (`--type=full`) stops QEMU and starts it from a
 * runtime file Ganeti writes anew, so it is checked like a start; soft and hard
 * reboots keep the running QEMU and its devices.
 */
async function rebootCheck(env: NodeJS.ProcessEnv, client: HookCaller): Promise<HookOutcome> {
  const type = env.GANETI_REBOOT_TYPE ?? '';
  if (type !== 'full') return { ok: true, message: `${instanceName(env)}: ${type || 'soft'} reboot keeps QEMU and its devices, nothing to check` };
  return preflight(env, client, 'existing');
}

/**
 * The environment Ganeti gives a post hook describes the instance before the
 * operation as GANETI_INSTANCE_* and after it as GANETI_POST_INSTANCE_*: the
 * latter, under the usual names.
 */
export function afterOperation(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('GANETI_INSTANCE_') && !k.startsWith('GANETI_POST_')) out[k] = v;
  for (const [k, v] of Object.entries(env)) if (k.startsWith('GANETI_POST_INSTANCE_')) out[`GANETI_${k.slice('GANETI_POST_'.length)}`] = v;
  return out;
}

/**
 * instance-modify (post): Ganeti shows a pre hook only the disks before the
 * change, so a disk added or removed is checked here, on the instance as it
 * now is. A post hook cannot undo the change: a layout that would not start
 * again is reported as a failure (Ganeti prints it as a warning).
 */
async function modifyAfter(env: NodeJS.ProcessEnv, client: HookCaller): Promise<HookOutcome> {
  const after = afterOperation(env);
  if (after.GANETI_INSTANCE_NAME === undefined) return { ok: true, message: `${instanceName(env)}: Ganeti exported no state after the change, nothing to check` };
  const cd = await cdromChanges(env, after, client);
  const extra = cd.lines.length > 0 ? `; ${cd.lines.join('; ')}` : '';
  try {
    const outcome = await preflight(after, client, 'existing');
    if (!outcome.ok) return { ok: false, message: `${instanceName(env)}: WARNING: after this change the instance would not start again: ${outcome.message}${extra}` };
    // Ganeti shows a post hook's output only when it fails: a warning must fail to be seen.
    return { ...outcome, message: `${outcome.message}${extra}`, ok: outcome.ok && outcome.warning !== true && !cd.failed };
  } catch (e) {
    if (!(e instanceof RpcCallError)) throw e;
    return { ok: false, message: `${instanceName(env)}: WARNING: after this change the instance would not start again: ${e.message}` };
  }
}

/**
 * Whether a refusal says the instance does not run on this node: no runtime
 * file here, or nothing listening on its QMP socket. Ganeti runs a hook on the
 * master and on every node of the instance, so the other nodes meet this.
 */
function notRunningHere(e: unknown): boolean {
  const code = codeOf(e);
  return code === 'GKD_RUNTIME_NOT_FOUND' || code === 'GKD_QMP_CONNECT';
}

/** The daemon's error code, when `e` is an answer from it. */
function codeOf(e: unknown): string | undefined {
  const d = (e as { data?: { code?: unknown } }).data;
  return typeof d?.code === 'string' ? d.code : undefined;
}

/** The instance's runtime file must be expressible in the format this node's Ganeti reads. */
async function readableHere(env: NodeJS.ProcessEnv, client: HookCaller, config: Config): Promise<HookOutcome> {
  const name = instanceName(env);
  try {
    const r = await client.call<{ from: string; to: string }>('runtime.convert', { name, to: config.ganetiFormat });
    return { ok: true, message: `${name}: runtime format ${r.from} is readable as ${r.to}` };
  } catch (e) {
    // Only the node running the instance has its runtime file; elsewhere there is nothing to check.
    if (codeOf(e) === 'GKD_RUNTIME_NOT_FOUND') return { ok: true, message: `${name}: no runtime file on this node, nothing to check` };
    throw e;
  }
}

/**
 * disk-grow (post): Ganeti 3.0 grows the storage but never tells a running
 * QEMU, so the guest sees the old size until a full restart. On the node
 * running the instance, disk.resize makes QEMU see the storage's new size.
 */
async function growDisk(env: NodeJS.ProcessEnv, client: HookCaller): Promise<HookOutcome> {
  const name = instanceName(env);
  const raw = env.GANETI_DISK ?? '';
  if (!/^\d+$/.test(raw)) throw new HookEnvError('GANETI_DISK', `Cannot read the Ganeti hook environment: GANETI_DISK="${raw}" is not a disk index`);
  try {
    const r = await client.call<{ device: string; before: number; after: number; resized: boolean }>('disk.resize', { name, index: Number(raw) });
    return { ok: true, message: `${name}: ${r.device} ${r.resized ? `grown in QEMU from ${r.before} to ${r.after} bytes` : `already ${r.after} bytes in QEMU`}` };
  } catch (e) {
    // Only the node running the instance has its runtime file and QEMU; a stopped instance sees the new size at its next start.
    if (notRunningHere(e)) return { ok: true, message: `${name}: not running on this node, the new size applies at its next start` };
    // An IDE disk stays at its old size in QEMU, as without the plugin: growing it live would leave the guest a disk it detaches.
    if ((e as { data?: { field?: unknown } }).data?.field === 'allowIdeReprobe') {
      return { ok: true, message: `${name}: disk ${raw} is an IDE disk: not grown live (the guest could only see it by detaching the disk); the new size applies at the next full restart` };
    }
    throw e;
  }
}

/** The instance tag that lets a migration or failover go ahead despite drift. */
export const ALLOW_DRIFT_TAG = 'kvm-devices:allow-drift';

interface VerifyAnswer {
  clean: boolean;
  differences: Array<{ device: string; detail: string }>;
  /** Block nodes / netdevs of ours attached to nothing: not part of the device state a target rebuilds. */
  leaks?: Array<{ name: string }>;
  /** Disks whose runtime link name Ganeti's target would not create. */
  staleLinks?: StaleDiskLink[];
}

/**
 * instance-migrate / instance-failover: the runtime file must be readable in
 * this node's format and, where the instance's QEMU runs on this node, agree
 * with it: the target rebuilds the devices from the file, so a device only
 * QEMU has (a device_add behind Ganeti's back, a half-done hotplug) makes the
 * target refuse the stream late, with the guest paused. What Ganeti itself
 * does (its fd-passed disks, its hot-plugged devices, its default devices) is
 * no drift. The tag {@link ALLOW_DRIFT_TAG} lets an operator go ahead anyway.
 */
async function migrateCheck(env: NodeJS.ProcessEnv, client: HookCaller, config: Config): Promise<HookOutcome> {
  const peers = await formatsAgree(env, config);
  if (peers !== undefined && !peers.ok) return peers;
  const local = await migrateCheckHere(env, client, config);
  if (peers === undefined || !local.ok) return local;
  return { ...local, message: `${local.message}; ${peers.message}`, ...(local.warning === true || peers.warning === true ? { warning: true } : {}) };
}

/**
 * On the master's run of the hook: the plugins on the source and the target
 * must be configured for the same runtime format (a cluster half way
 * through gnt-cluster upgrade is not), else the file Ganeti ships would be
 * read and written in the wrong one. Asked over SSH (see peer-format.ts);
 * a node that cannot be asked is a warning, not a refusal. Undefined on
 * other nodes and for operations without both nodes.
 */
async function formatsAgree(env: NodeJS.ProcessEnv, config: Config): Promise<HookOutcome | undefined> {
  const master = env.GANETI_MASTER ?? '';
  const cluster = env.GANETI_CLUSTER ?? '';
  const nodes = [env.GANETI_OLD_PRIMARY ?? '', env.GANETI_NEW_PRIMARY ?? ''];
  if (master === '' || cluster === '' || nodes.includes('') || nodes[0] === nodes[1] || !isThisNode(master)) return undefined;
  const answers = await Promise.all(nodes.map((n) => (isThisNode(n) ? Promise.resolve<PeerFormat>({ node: n, format: config.ganetiFormat }) : peerFormat(n, cluster))));
  const known = answers.filter((a): a is { node: string; format: string } => 'format' in a);
  if (new Set(known.map((a) => a.format)).size > 1) {
    return {
      ok: false,
      message: `${instanceName(env)}: the plugin on ${known.map((a) => `${a.node} is configured for runtime format ${a.format}`).join(', on ')}: ` +
        'a runtime file moved between them would be read in the wrong format. Finish the upgrade on every node ' +
        '(or correct ganetiFormat in /etc/ganeti-kvm-devices/config.json) before moving instances',
    };
  }
  const failed = answers.filter((a): a is { node: string; error: string } => 'error' in a);
  if (failed.length > 0) {
    return { ok: true, warning: true, message: `WARNING: could not compare runtime formats across nodes (${failed.map((f) => `${f.node}: ${f.error}`).join('; ')})` };
  }
  return { ok: true, message: `runtime format ${known[0]?.format ?? '?'} on ${nodes.join(' and ')}` };
}

async function migrateCheckHere(env: NodeJS.ProcessEnv, client: HookCaller, config: Config): Promise<HookOutcome> {
  const readable = await readableHere(env, client, config);
  if (/no runtime file on this node/.test(readable.message)) return readable;
  const name = instanceName(env);
  let v: VerifyAnswer;
  try {
    v = await client.call<VerifyAnswer>('instance.verify', { name });
  } catch (e) {
    // A stopped instance (a failover of it) has no QEMU to compare with: nothing can drift.
    // A QEMU that exits while being read has nothing left to drift from either.
    if (notRunningHere(e) || codeOf(e) === 'GKD_QMP_CLOSED') return { ok: true, message: `${readable.message}; no QEMU runs it here, no drift to check` };
    throw e;
  }
  // Ganeti's own target would exit at once on these ("Failed to accept instance"): refused whatever
  // the tags say, since going ahead cannot work; the repair relinks them while the guest runs.
  if (v.staleLinks !== undefined && v.staleLinks.length > 0) {
    return {
      ok: false,
      message: `${name}: Ganeti's target QEMU would not start: the runtime file names a disk by a link the target does not create ` +
        `(${describeStaleLinks(v.staleLinks)}; left by hot-removing a disk that was not the last). ` +
        `Relink them ("kvm-devices call instance.verify '{\"name\":\"${name}\",\"repair\":true}'") or restart the instance, then migrate`,
    };
  }
  // Leaked backends (attached to no device) do not reach the migration stream: noted, never refused.
  if (v.differences.length === 0) {
    const leaks = (v.leaks ?? []).map((l) => l.name);
    const note = leaks.length === 0 ? '' : `; unused backends left by an interrupted hotplug (${leaks.join(', ')}) do not affect the migration, instance.verify with repair deletes them`;
    return { ok: true, message: `${readable.message}; QEMU and the runtime file agree${note}` };
  }
  const list = v.differences.map((d) => d.detail).join('; ');
  const tags = (env.GANETI_INSTANCE_TAGS ?? '').split(/\s+/);
  if (tags.includes(ALLOW_DRIFT_TAG)) {
    return { ok: true, warning: true, message: `${name}: WARNING: going ahead despite drift (tag ${ALLOW_DRIFT_TAG}): ${list}` };
  }
  return {
    ok: false,
    message: `${name}: QEMU and the runtime file disagree, so the target could not rebuild the same devices: ${list}. ` +
      `Repair the runtime file ("kvm-devices call instance.verify '{\"name\":\"${name}\",\"repair\":true}'"), restart the instance, ` +
      `or go ahead anyway with "gnt-instance add-tags ${name} ${ALLOW_DRIFT_TAG}"`,
  };
}

/**
 * Removes the stopped or removed instance's runtime file (idempotent). While
 * its QEMU still runs the daemon refuses (the file is Ganeti's record of a
 * live guest) and the hook passes with a note: a post hook must never undo
 * what Ganeti just did.
 */
async function cleanup(env: NodeJS.ProcessEnv, client: HookCaller): Promise<HookOutcome> {
  const name = instanceName(env);
  try {
    const r = await client.call<{ removed: boolean }>('instance.cleanup', { name });
    return { ok: true, message: `${name}: ${r.removed ? 'runtime file removed' : 'no runtime file on this node'}` };
  } catch (e) {
    if (codeOf(e) === 'GKD_INSTANCE_RUNNING') return { ok: true, message: `${name}: runtime file kept: ${(e as Error).message}` };
    throw e;
  }
}

interface ListResult {
  dir: string;
  files: { name: string; format?: string; matches?: boolean; error?: { code: string; message: string } }[];
}

/** After `gnt-cluster upgrade`: runtime files not in this node's format (or unreadable). */
async function verifyFormats(_env: NodeJS.ProcessEnv, client: HookCaller, config: Config): Promise<HookOutcome> {
  const r = await client.call<ListResult>('runtime.list', { expect: config.ganetiFormat });
  const bad = r.files.filter((f) => f.matches === false);
  if (bad.length === 0) return { ok: true, message: `${r.files.length} runtime file(s) in ${r.dir}, all in format ${config.ganetiFormat}` };
  const lines = bad.map((f) => (f.error ? `${f.name}: ${f.error.code} ${f.error.message}` : `${f.name}: format ${f.format ?? '?'}`));
  return {
    ok: false,
    message: `${bad.length} of ${r.files.length} runtime file(s) in ${r.dir} are not in format ${config.ganetiFormat} ` +
      `(convert with "kvm-devices runtime upgrade-all --to ${config.ganetiFormat} ${r.dir}"):\n  ${lines.join('\n  ')}`,
  };
}

function instanceName(env: NodeJS.ProcessEnv): string {
  const name = env.GANETI_INSTANCE_NAME;
  if (name === undefined || name === '') throw new HookEnvError('GANETI_INSTANCE_NAME', 'Cannot read the Ganeti hook environment: GANETI_INSTANCE_NAME is not set');
  return name;
}

/** The hooks this release implements, by `<hpath>-<phase>`. */
export const HOOKS: Record<string, HookDef> = {
  'instance-start-pre': {
    phase: 'pre', perInstance: true, whenUnsure: 'pass',
    summary: 'preflight: refuses what QEMU would refuse too; warns about layouts this planner would not create',
    run: (env, client) => preflight(env, client, 'existing'),
  },
  'instance-add-pre': {
    phase: 'pre', perInstance: true,
    summary: 'preflight for a new instance: its disks and NICs fit (slots, controller limits, ids)',
    // Ganeti exports the new disks' UUIDs empty at add time: placeholders stand in.
    run: (env, client) => preflight(env, client, 'new', { placeholderUuids: true }),
  },
  'instance-reboot-pre': {
    phase: 'pre', perInstance: true, whenUnsure: 'pass',
    summary: 'a full reboot is checked like instance-start-pre; soft and hard reboots keep QEMU',
    run: (env, client) => rebootCheck(env, client),
  },
  'instance-modify-post': {
    phase: 'post', perInstance: true,
    summary: 'the instance as changed (disks added or removed included) would start again, else a warning; a changed CD-ROM image of a running instance is changed live',
    run: (env, client) => modifyAfter(env, client),
  },
  'instance-modify-pre': {
    phase: 'pre', perInstance: true,
    summary: 'the requested NIC set (Ganeti exports the new NICs) still fits; other problems and NICs that cannot be hot-plugged are noted',
    run: (env, client) => modifyCheck(env, client),
  },
  'instance-migrate-pre': {
    phase: 'pre', perInstance: true,
    summary: `the runtime file is readable in this node's Ganeti format and agrees with the running QEMU (tag ${ALLOW_DRIFT_TAG} bypasses the drift check)`,
    run: migrateCheck,
  },
  'instance-failover-pre': {
    phase: 'pre', perInstance: true,
    summary: 'as instance-migrate-pre (a stopped instance has no QEMU to drift from)',
    run: migrateCheck,
  },
  'disk-grow-post': {
    phase: 'post', perInstance: true,
    summary: 'makes the running QEMU see the grown disk at once (block_resize to the storage\'s size)',
    run: (env, client) => growDisk(env, client),
  },
  'instance-stop-post': {
    phase: 'post', perInstance: true,
    summary: "cleanup: removes the stopped instance's runtime file",
    run: (env, client) => cleanup(env, client),
  },
  'instance-remove-post': {
    phase: 'post', perInstance: true,
    summary: "cleanup: removes the removed instance's runtime file",
    run: (env, client) => cleanup(env, client),
  },
  'cluster-verify-post': {
    phase: 'post', perInstance: false,
    summary: "reports runtime files not in this node's Ganeti format (after gnt-cluster upgrade)",
    run: verifyFormats,
  },
};
