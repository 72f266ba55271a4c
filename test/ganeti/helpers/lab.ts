/**
 * The Ganeti suite's node: a real single-node Ganeti 3.0 cluster built by
 * `test/ganeti/lab/ganeti-lab.sh`, the plugin installed on it with
 * `./install.sh --hooks`, and the daemon started the way the installed
 * systemd unit starts it (its ExecStart, default socket and config). Built
 * once per test run and shared by every Ganeti test file; the daemon is
 * stopped when the run ends, the cluster stays for the next run
 * (`ganeti-lab.sh down` removes it).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { QmpClient } from '../../../plugin/qmp';
import { GuestConsole, guestAppend, guestKit, guestSerialArgs, type GuestReady } from '../../helpers/guest';
import { RpcCallError, RpcClient } from '../../../plugin/rpc/client';

const execFileP = promisify(execFile);

/** The repository root (tests run from dist/test/ganeti/helpers). */
export const ROOT = join(__dirname, '..', '..', '..', '..');
export const LAB_SCRIPT = join(ROOT, 'test', 'ganeti', 'lab', 'ganeti-lab.sh');
export const LAB_NS = process.env.GKD_LAB_NS ?? 'gkd-ganeti';
export const NODE = 'node1.example.com';
export const UNIT_FILE = '/etc/systemd/system/ganeti-kvm-devices.service';
export const DAEMON_SOCKET = '/run/ganeti-kvm-devices/rpc.sock';
export const DAEMON_LOG = '/var/log/ganeti-kvm-devices-test.log';
export const RUNTIME_DIR = '/var/run/ganeti/kvm-hypervisor/conf';
export const HOOKS_DIR = '/etc/ganeti/hooks';
/** Ganeti's Python modules (Debian's package). */
export const GANETI_PY = '/usr/share/ganeti/3.0';
export const ORACLE = join(ROOT, 'test', 'ganeti', 'oracle', 'ganeti_oracle.py');

/** What one command printed and how it ended. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `cmd` inside the lab's network namespace (Ganeti's commands must). */
export async function inLab(cmd: string, args: string[], timeoutMs = 180_000): Promise<Run> {
  const t0 = performance.now();
  try {
    const r = await execFileP('ip', ['netns', 'exec', LAB_NS, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
  } catch (e) {
    const x = e as { code?: number | string; stdout?: string; stderr?: string; killed?: boolean };
    const code = typeof x.code === 'number' ? x.code : -1;
    return { code, stdout: x.stdout ?? '', stderr: `${x.stderr ?? ''}${x.killed ? ' [timed out]' : ''}`, ms: performance.now() - t0 };
  }
}

/** The Ganeti commands each test ran, in order, for the suite's closing list (summary.test.ts). */
export const ganetiCommands: string[] = [];

/** Each hvinfo comparison with Ganeti's runtime file, for the suite's closing list. */
export const hvinfoComparisons: string[] = [];

/** When the suite first asked for the lab (ms, performance clock), and when its last Ganeti command ended. */
export const suiteClock: { start?: number; last?: number } = {};

/** Runs a Ganeti command (`gnt-instance …`) in the lab and fails with its output when it fails. */
export async function gnt(cmd: string, ...args: string[]): Promise<Run> {
  const r = await gntTry(cmd, ...args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Runs a Ganeti command and returns however it ended. */
export async function gntTry(cmd: string, ...args: string[]): Promise<Run> {
  const r = await inLab(cmd, args);
  suiteClock.last = performance.now();
  ganetiCommands.push(`${cmd} ${args.join(' ')} -> exit ${r.code} (${Math.round(r.ms)} ms)`);
  return r;
}

let ready: Promise<void> | undefined;
let daemon: ChildProcess | undefined;

/**
 * Builds the lab (once per run), installs the plugin with its hooks and
 * starts the daemon as the installed unit would. Needs root.
 */
export function ensureGanetiNode(): Promise<void> {
  suiteClock.start ??= performance.now();
  ready ??= setUp();
  return ready;
}

async function setUp(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the Ganeti suite needs root: it builds a Ganeti cluster in a network namespace (set GKD_SKIP_GANETI=1 to leave it out)');
  const up = spawnSync('bash', [LAB_SCRIPT, 'up'], { encoding: 'utf8', timeout: 900_000 });
  if (up.status !== 0) throw new Error(`ganeti-lab.sh up failed:\n${up.stdout}\n${up.stderr}`);
  // As an operator installs it: the checkout's install.sh with the hooks, into /usr/local.
  const inst = spawnSync('sh', [join(ROOT, 'install.sh'), '--hooks'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (inst.status !== 0) throw new Error(`install.sh --hooks failed:\n${inst.stdout}\n${inst.stderr}`);
  await startDaemon();
}

/** The installed unit's ExecStart, split into argv (no quoting in what install.sh writes). */
export function unitExecStart(): string[] {
  const unit = readFileSync(UNIT_FILE, 'utf8');
  const line = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  if (line === undefined) throw new Error(`${UNIT_FILE} has no ExecStart`);
  return line.slice('ExecStart='.length).trim().split(/\s+/);
}

/**
 * Starts a node's daemon from the unit's ExecStart (systemd is not running
 * here) behind `enter` (the argv that puts it into the node's namespaces and
 * execs it, so the child is the daemon itself), logging to `log`, and waits
 * for its socket. It is stopped when this process exits.
 */
export async function spawnNodeDaemon(enter: string[], socket: string, log: string): Promise<ChildProcess> {
  const [cmd, ...args] = [...enter, ...unitExecStart()];
  const out = openSync(log, 'a');
  const child = spawn(cmd as string, args, { stdio: ['ignore', out, out], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  closeSync(out);
  process.once('exit', () => child.kill('SIGTERM'));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the daemon exited (${child.exitCode}); see ${log}`);
    try {
      const c = await RpcClient.connect(socket, { connectTimeoutMs: 500 });
      await c.close();
      return child;
    } catch {
      if (Date.now() > deadline) throw new Error(`the daemon did not listen on ${socket} within 20 s; see ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Stops a daemon started by {@link spawnNodeDaemon} (SIGTERM, as systemd would). */
export async function stopNodeDaemon(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

/** Starts node 1's daemon inside the node's network namespace, as on a real node: the hooks it runs reach other nodes where Ganeti does. */
export async function startDaemon(): Promise<void> {
  if (daemon !== undefined && daemon.exitCode === null) return;
  daemon = await spawnNodeDaemon(['ip', 'netns', 'exec', LAB_NS], DAEMON_SOCKET, DAEMON_LOG);
}

/** Stops the daemon started by {@link startDaemon}. */
export async function stopDaemon(): Promise<void> {
  await stopNodeDaemon(daemon);
}

/** One JSON-RPC call to the daemon on `socket`. */
export async function callAt<T = Record<string, unknown>>(socket: string, method: string, params: Record<string, unknown>): Promise<T> {
  const c = await RpcClient.connect(socket, { callTimeoutMs: 120_000 });
  try {
    return await c.call<T>(method, params);
  } finally {
    await c.close();
  }
}

/** A call to the daemon on `socket` expected to fail: its error data (with `code`). */
export async function callErrorAt(socket: string, method: string, params: Record<string, unknown>): Promise<{ code: string; message: string; [k: string]: unknown }> {
  try {
    await callAt(socket, method, params);
  } catch (e) {
    if (e instanceof RpcCallError) return { ...(e.data as Record<string, unknown>), message: e.message } as { code: string; message: string };
    throw e;
  }
  throw new Error(`${method} succeeded where a refusal was expected`);
}

/** One JSON-RPC call to node 1's daemon. */
export function call<T = Record<string, unknown>>(method: string, params: Record<string, unknown>): Promise<T> {
  return callAt<T>(DAEMON_SOCKET, method, params);
}

/** A call to node 1's daemon expected to fail: its error data (with `code`). */
export function callError(method: string, params: Record<string, unknown>): Promise<{ code: string; message: string; [k: string]: unknown }> {
  return callErrorAt(DAEMON_SOCKET, method, params);
}

/** A daemon log's size now: pass it to {@link callsLoggedSince} to see the calls made after. */
export function logSize(log: string): number {
  return existsSync(log) ? statSync(log).size : 0;
}

/** Node 1's daemon log size (see {@link daemonCallsSince}). */
export function logMark(): number {
  return logSize(DAEMON_LOG);
}

/** One call the daemon logged. */
export interface LoggedCall {
  method: string;
  instance?: string;
  outcome: string;
}

/** The calls a daemon logged in `log` since `mark`. */
export function callsLoggedSince(log: string, mark: number): LoggedCall[] {
  const text = readFileSync(log).subarray(mark).toString('utf8');
  const calls: LoggedCall[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as { msg?: string; method?: string; instance?: string; outcome?: string };
    if (o.msg === 'call' && typeof o.method === 'string') calls.push({ method: o.method, instance: o.instance, outcome: o.outcome ?? '' });
  }
  return calls;
}

/** The calls node 1's daemon logged since `mark`. */
export function daemonCallsSince(mark: number): LoggedCall[] {
  return callsLoggedSince(DAEMON_LOG, mark);
}

/** Options for {@link addInstance}. */
export interface AddOptions {
  template?: 'file' | 'sharedfile' | 'diskless';
  disks?: number;
  diskSizeMb?: number;
  nics?: number;
  /** `-H kvm:` hvparams. */
  hv?: Record<string, string | number>;
  start?: boolean;
  /** -B memory, in MiB. @default 64 */
  memoryMb?: number;
}

/** `gnt-instance add` with Ganeti's defaults except what `o` names; returns the command's run. */
export async function addInstance(name: string, o: AddOptions = {}): Promise<Run> {
  return gntTry('gnt-instance', ...addArgs(name, o));
}

/** The argv of `gnt-instance add` for {@link addInstance}. */
export function addArgs(name: string, o: AddOptions = {}): string[] {
  const template = o.template ?? 'file';
  const args = ['add', '-t', template, '-o', 'noop', '--no-name-check', '--no-ip-check', '-B', `memory=${o.memoryMb ?? 64}M`, '--no-install', '-n', NODE];
  if (template !== 'diskless') {
    for (let i = 0; i < (o.disks ?? 1); i++) args.push('--disk', `${i}:size=${o.diskSizeMb ?? 4}M`);
  }
  const nics = o.nics ?? 1;
  if (nics === 0) args.push('--no-nics');
  for (let i = 0; i < nics; i++) args.push('--net', `${i}:mode=bridged,link=br0`);
  // Ganeti splits -H at commas; a comma inside a value is written "\,".
  if (o.hv !== undefined && Object.keys(o.hv).length > 0) args.push('-H', `kvm:${Object.entries(o.hv).map(([k, v]) => `${k}=${String(v).replace(/,/g, '\\,')}`).join(',')}`);
  if (o.start === false) args.push('--no-start');
  args.push(name);
  return args;
}

/** Adds instance `name` afresh (an earlier one is removed) and starts it; fails with Ganeti's output. */
export async function startInstance(name: string, o: AddOptions = {}): Promise<void> {
  await removeInstance(name);
  const r = await addInstance(name, o);
  if (r.code !== 0) throw new Error(`gnt-instance add ${name} failed:\n${r.stdout}${r.stderr}`);
  await gnt('gnt-instance', 'start', name);
}

/** Removes an instance whatever its state (no guest OS answers ACPI: no shutdown timeout). */
export async function removeInstance(name: string): Promise<void> {
  const r = await gntTry('gnt-instance', 'remove', '-f', '--shutdown-timeout=0', name);
  if (r.code !== 0 && !/does not exist|not known/i.test(r.stderr + r.stdout)) throw new Error(`gnt-instance remove ${name} failed:\n${r.stdout}${r.stderr}`);
}

/** The runtime file Ganeti wrote for `name`, parsed. */
export function ganetiRuntime(name: string): [unknown[], Array<Record<string, unknown>>, Record<string, unknown>, Array<[Record<string, unknown>, string, string | null]>] {
  return JSON.parse(readFileSync(join(RUNTIME_DIR, `${name}.runtime`), 'utf8'));
}

/** The QMP socket Ganeti gives instance `name`. */
export function qmpSocket(name: string): string {
  return `/var/run/ganeti/kvm-hypervisor/ctrl/${name}.qmp`;
}

/** The pid of the QEMU running `name`, from Ganeti's pid file. */
export function qemuPid(name: string): number | undefined {
  try {
    const pid = Number(readFileSync(`/var/run/ganeti/kvm-hypervisor/pid/${name}`, 'utf8').trim());
    return existsSync(`/proc/${pid}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Runs Ganeti's own KVM code on a runtime file (see oracle/ganeti_oracle.py). */
export function ganetiOracle(command: 'rebuild' | 'upgrade', runtimeFile: string): Record<string, unknown> {
  const r = spawnSync('/usr/bin/python3', [ORACLE, command, runtimeFile], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`Ganeti's code failed on ${runtimeFile}:\n${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** The hook scripts install.sh put into Ganeti's hooks dir, as `<hpath>-<phase>`. */
export function installedHooks(): string[] {
  return readdirSync(HOOKS_DIR).filter((d) => existsSync(join(HOOKS_DIR, d, 'kvm-devices'))).map((d) => d.replace(/\.d$/, '')).sort();
}

/** Whether the Ganeti suite is left out on purpose (GKD_SKIP_GANETI=1). */
export const SKIP_GANETI = process.env.GKD_SKIP_GANETI === '1';

/**
 * One short QMP exchange on Ganeti's socket for `name` (QEMU serves one
 * client at a time and Ganeti gives up after 5 s: connect, ask, leave).
 */
export async function qmpOnce<T = unknown>(name: string, command: string, args?: Record<string, unknown>): Promise<T> {
  const q = await QmpClient.connect(qmpSocket(name));
  try {
    return (await q.execute(command, args)) as T;
  } finally {
    await q.close();
  }
}

/**
 * Waits until the guest's Linux drives the instance's first virtio NIC
 * (its virtio status has DRIVER_OK): the kernel, ACPI included, is up, so
 * PCI hot-unplug requests are answered. Without a guest OS QEMU never
 * releases an unplugged PCI device (Ganeti then reports hotplug:failed).
 */
export async function waitForGuestDriver(name: string, timeoutMs = 90_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const list = await qmpOnce<Array<{ name: string; path: string }>>(name, 'x-query-virtio');
    const nic = list.find((d) => d.name === 'virtio-net');
    if (nic !== undefined) {
      const st = await qmpOnce<{ status: { statuses?: string[] } }>(name, 'x-query-virtio-status', { path: nic.path });
      if ((st.status.statuses ?? []).some((x) => /DRIVER_OK/.test(x))) return Date.now() - t0;
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`the guest of ${name} did not bring up its virtio NIC within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * hvparams that boot the guest kit under Ganeti, with the guest's command
 * channel: ttyS0 is Ganeti's own serial console (serial_console=true, a unix
 * socket Ganeti creates), ttyS1 a second port from kvm_extra (Ganeti appends
 * kvm_extra after its own -serial). `console()` copies Ganeti's socket into
 * the log file the guest console reads; call it right after the start (the
 * socket drops what the guest says while nobody is connected).
 */
export function guestHv(name: string, extraKernelArgs?: string): { hv: Record<string, string>; console: (o?: ConsoleOn) => Promise<GuestConsole> } {
  const kit = guestKit();
  const ganetiDir = '/var/run/ganeti/kvm-hypervisor/ctrl';
  const cmdArg = guestSerialArgs({ serialLog: '', cmdSocket: `${ganetiDir}/${name}.gk-cmd` }).slice(2).join(' ');
  return {
    hv: {
      kernel_path: kit.kernel, initrd_path: kit.initrd, root_path: '/dev/ram0', kernel_args: guestAppend(extraKernelArgs),
      serial_console: 'true', kvm_extra: cmdArg,
    },
    console: (o) => guestConsoleOf(name, o),
  };
}

/** Where a guest console attaches: which node's QEMU, and a guest already up there. */
export interface ConsoleOn {
  /** The node's run dir as this process sees it. @default '/var/run/ganeti' (node 1) */
  runDir?: string;
  /** Continue a guest that is already up (after a migration): its readiness from the earlier console. */
  ready?: GuestReady;
}

/**
 * A console on the guest of `name` as {@link guestHv} set it up: Ganeti's
 * serial socket copied into a log file, the command channel on ttyS1.
 */
export async function guestConsoleOf(name: string, o: ConsoleOn = {}): Promise<GuestConsole> {
  const dir = `${o.runDir ?? '/var/run/ganeti'}/kvm-hypervisor/ctrl`;
  const paths = { serialLog: `/var/log/ganeti/kvm/${name}.gk-serial.log`, cmdSocket: `${dir}/${name}.gk-cmd` };
  writeFileSync(paths.serialLog, '');
  const sock = connect(`${dir}/${name}.serial`);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.on('data', (b: Buffer) => appendFileSync(paths.serialLog, b));
  sock.on('error', () => undefined);
  const con = new GuestConsole({ ...paths, ...(o.ready === undefined ? {} : { ready: o.ready }) });
  const close = con.close.bind(con);
  con.close = () => {
    sock.destroy();
    close();
  };
  return con;
}

/**
 * Adds instance `name` booting the guest kit (see {@link guestHv}; 128 MiB,
 * which the guest kernel needs, unless `o` says otherwise), starts it and
 * waits until the guest's command channel answers.
 */
export async function startGuestInstance(name: string, o: AddOptions & { kernelArgs?: string } = {}): Promise<GuestConsole> {
  const { kernelArgs, ...add } = o;
  const g = guestHv(name, kernelArgs);
  await startInstance(name, { memoryMb: 128, ...add, hv: { ...g.hv, ...add.hv } });
  const con = await g.console();
  await con.waitReady(90_000);
  return con;
}
