/**
 * Runs one Ganeti hook: the policy around the checks of hook-table.ts.
 * Shared by `kvm-devices hook NAME` (talking to the daemon over its
 * WebSocket) and the daemon's `POST /hook/NAME` endpoint (calling its own
 * methods in process), so both judge alike and print the same line.
 *
 * Policy when the daemon cannot judge (unreachable, too slow, failing, or
 * the environment is unusable): pre hooks fail closed (exit 1: an unchecked
 * add, modify or migration could put devices where a later hotplug or
 * migration breaks) unless their table entry says `whenUnsure: 'pass'`
 * (start, reboot); post hooks fail open (exit 0: Ganeti only logs post
 * failures, and cleanup is repeated by the next one).
 */
import type { Config } from '../config';
// The client module alone: loading the daemon side (planner, ajv, pino) would
// add ~100 ms to every CLI hook run.
import { RpcCallError } from '../rpc/client';
import { HookEnvError, hookContext } from './hook-env';
import type { HookCaller, HookDef } from './hook-table';

/** What a hook run prints on stdout and its exit status (0 pass, 1 refused). */
export interface HookResult {
  status: number;
  out: string;
}

/** The hook's way to the daemon: a connected caller, or a rejection saying why there is none. */
export type HookConnect = (config: Config) => Promise<HookCaller & { close(): Promise<void> }>;

export interface RunHookOptions {
  /**
   * The hook's configuration, or how to build it from `env` (the CLI reads
   * GKD_CONFIG / the system file; the endpoint uses the text the script sent).
   */
  config: (env: NodeJS.ProcessEnv) => Config;
  connect: HookConnect;
}

/** Whether hook `def` refuses (exit 1) when the daemon cannot judge. */
export function failsClosed(def: HookDef): boolean {
  return def.phase === 'pre' && def.whenUnsure !== 'pass';
}

/** Runs hook `name` against `env`: one line of output and the exit status. */
export async function runHook(name: string, def: HookDef, env: NodeJS.ProcessEnv, options: RunHookOptions): Promise<HookResult> {
  // Daemon trouble (unreachable, timeout, internal error, unreadable environment) refuses a pre hook
  // only where the check guards something the operation cannot take back; a real refusal from the
  // daemon always refuses a pre hook.
  const failClosed = failsClosed(def);
  const say = (ok: boolean, message: string): HookResult => ({
    // A failing post hook cannot refuse anything: Ganeti prints it as a warning.
    out: `kvm-devices ${name}: ${ok ? 'ok' : def.phase === 'pre' ? 'refused' : 'warning'}: ${message}\n`,
    status: ok ? 0 : 1,
  });
  const unsure = (why: string): HookResult => {
    const policy = failClosed ? 'pre hook: failing closed' : def.phase === 'pre' ? 'this pre hook only refuses what QEMU would refuse: passing' : 'post hook: failing open';
    return say(!failClosed, `${why} (${policy})`);
  };
  const ctx = hookContext(env);
  if (def.perInstance && ctx.hypervisor !== undefined && ctx.hypervisor !== 'kvm') {
    return say(true, `${ctx.instance ?? 'instance'} uses hypervisor "${ctx.hypervisor}", nothing to check`);
  }
  let config: Config;
  try {
    config = options.config(env);
  } catch (e) {
    return unsure(`cannot read the configuration: ${(e as Error).message}`);
  }
  let client: Awaited<ReturnType<HookConnect>>;
  try {
    client = await options.connect(config);
  } catch (e) {
    return unsure(`daemon unreachable: ${(e as Error).message}`);
  }
  try {
    const outcome = await def.run(env, client, config);
    return say(outcome.ok, outcome.message);
  } catch (e) {
    if (e instanceof RpcCallError && !daemonTrouble(e)) return say(def.phase !== 'pre', describe(e));
    if (e instanceof RpcCallError) return unsure(describe(e));
    if (e instanceof HookEnvError) return unsure(e.message);
    return unsure((e as Error).message);
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** Answers that say the daemon could not judge, rather than that it refuses. */
function daemonTrouble(e: RpcCallError): boolean {
  const code = (e.data as { code?: unknown } | undefined)?.code;
  return code === 'GKD_INTERNAL' || code === 'GKD_SHUTTING_DOWN' || code === 'GKD_OVERLOADED';
}

/** The daemon's reason with its stable code and the field or device it names. */
function describe(e: RpcCallError): string {
  const d = e.data as { code?: string; field?: string; device?: string; errors?: { path: string; message: string }[] } | undefined;
  const bits = [d?.code ?? String(e.code)];
  if (d?.field !== undefined) bits.push(`field ${d.field}`);
  if (d?.device !== undefined) bits.push(`device ${d.device}`);
  const paths = (d?.errors ?? []).slice(0, 3).map((x) => `${x.path} ${x.message}`);
  return `${e.message} [${bits.join(', ')}]${paths.length ? `: ${paths.join('; ')}` : ''}`;
}
