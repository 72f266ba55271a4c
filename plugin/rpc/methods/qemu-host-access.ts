/**
 * What QEMU options in a request may make a root QEMU touch on the host:
 * the rule for `hvparams.kvm_extra` (instance.start) and an incoming
 * runtime's kvm_cmd (migration.accept). See docs/security.md.
 *
 * Why: both end up in a runtime file and on a command line that QEMU runs
 * as root: the daemon's own QEMU in launch mode, or Ganeti's, which starts
 * a migration target from the kvm_cmd it read out of this node's runtime
 * file. Without this rule a member of the socket's group could have QEMU
 * read any host file into a guest (`-drive file=/etc/shadow`), write guest
 * output over any host file (`-chardev file,path=/etc/cron.d/x`), connect
 * the guest to a root-only socket (another instance's QMP monitor, whose
 * `migrate exec:` runs commands), or run a program outright (a tap's
 * `script=`). The disk, CD-ROM and kernel paths of a request are confined
 * in confine.ts; this extends the same roots to every option.
 *
 * The rule, per option value that names something on the host:
 * - `exec`: QEMU runs a program: refused outright;
 * - `connect`: QEMU connects to an existing Unix socket: refused outright
 *   (the node's root-only sockets are exactly what must stay out of reach);
 * - `socket`: QEMU listens on a Unix socket: under runDir (Ganeti's run dir
 *   too), never in a runtime dir (QEMU unlinks the path before binding);
 * - `monitor`: QEMU serves a monitor (QMP or human) on a Unix socket:
 *   only in the `ctrl/` directories of those run dirs, where Ganeti keeps
 *   them and where no migration socket may be (migration-uri.ts), so a
 *   migration stream (guest RAM) is never poured into a monitor;
 * - `disk`: a file QEMU may write (drives, chardev files, memory backing,
 *   logs of unknown options): under storageRoots;
 * - `read`: a file QEMU only reads (firmware, ROMs, ACPI tables, secrets):
 *   under storageRoots or kernelRoots; `kernel`: -kernel/-initrd under
 *   kernelRoots (as hvparams.kernel_path);
 * - `pidfile`, `log`: Ganeti's own node-local options in a kvm_cmd, under
 *   `<runDir>/pid/` and Ganeti's KVM log dir;
 * - `opaque`: a value naming a file that is not a plain absolute path
 *   (relative, `json:{…}`, `fat:`, an unknown protocol): refused.
 * As a conservative fallback, any other value beginning with "/" is a
 * `disk`: an option this table does not know may well write there.
 *
 * Paths are checked by confinementProblem (absolute, no "." or "..", not
 * through a symlink out of the roots). The table reads options with the
 * kvm_extra parser (shellSplit's output, splitOptions, setOptions).
 */
import { join } from 'node:path';
import type { Config } from '../../config';
import { DEFAULT_RUN_DIR, optionName, shellSplit, splitOptions } from '../../planner';
import { confinementProblem, pathRefused } from './confine';

/** What a value makes QEMU do with the host (see the module comment). */
export type AccessKind = 'exec' | 'connect' | 'socket' | 'monitor' | 'disk' | 'read' | 'kernel' | 'pidfile' | 'log' | 'opaque';

/** One thing an option value makes QEMU touch. */
export interface HostAccess {
  /** Index in the args of the option's value (where a message points). */
  index: number;
  /** The option as written with its value, for messages. */
  option: string;
  kind: AccessKind;
  /** The key or form inside the value (`path=`, `script=`, `file:`), or the option for a positional value. */
  what: string;
  /** The host path, when the kind names one. */
  path?: string;
  /** Why, for kinds refused outright. */
  reason?: string;
}

/** Ganeti's directory for QEMU's own log (`-D`), as Ganeti 3.0 writes it into kvm_cmd. */
export const GANETI_KVM_LOG_DIR = '/var/log/ganeti/kvm/';

/** Options whose whole value is one host path (QEMU reads no `k=v` syntax in it). */
const POSITIONAL = new Map<string, AccessKind>([
  ['-kernel', 'kernel'], ['-initrd', 'kernel'],
  ['-bios', 'read'], ['-dtb', 'read'], ['-L', 'read'], ['-readconfig', 'read'],
  ['-pflash', 'disk'], ['-mem-path', 'disk'], ['-cdrom', 'disk'], ['-mtdblock', 'disk'], ['-sd', 'disk'],
  ['-hda', 'disk'], ['-hdb', 'disk'], ['-hdc', 'disk'], ['-hdd', 'disk'], ['-fda', 'disk'], ['-fdb', 'disk'],
  ['-pidfile', 'pidfile'], ['-D', 'log'],
]);

/** Positional options QEMU looks a bare name (no "/") up for in its own data directory. */
const DATA_DIR_LOOKUP = new Set(['-bios', '-L', '-option-rom', '-k']);

/** Options whose character device serves a monitor (QMP or human). */
const MONITOR_OPTIONS = new Set(['-monitor', '-qmp', '-qmp-pretty']);

/** Options that take a character device in QEMU's short form (`file:…`, `unix:…`, `/dev/…`). */
const CHARDEV_SHORT = new Set(['-serial', '-parallel', '-monitor', '-qmp', '-qmp-pretty', '-debugcon', '-gdb']);

/** Options that make QEMU run something or change what root means for it: refused whatever their value. */
const REFUSED_OPTIONS = new Map<string, string>([
  ['-plugin', 'loads a shared object into QEMU (code run as root)'],
  ['-runas', 'changes the user QEMU runs as; the daemon and Ganeti set it themselves'],
  ['-run-with', 'changes the user or root directory QEMU runs with; the daemon and Ganeti set them themselves'],
  ['-chroot', 'moves QEMU into another root directory, where the paths checked here mean other files'],
]);

/** Keys whose value QEMU runs as a program (unless `no` or empty). */
const EXEC_KEYS = new Set(['script', 'downscript', 'helper']);

/** Keys naming a host file or directory (last segment of a dotted key). */
const FILE_KEYS = new Set([
  'file', 'filename', 'path', 'logfile', 'mem-path', 'dir', 'evdev', 'vhostdev', 'sysfsdev', 'hostdevice',
  'romfile', 'tftp', 'events', 'rendernode', 'conf', 'keyring', 'sock', 'socket',
]);

/** Keys naming files QEMU only reads (the rest may be written). */
const READ_KEYS = new Set(['romfile', 'events', 'evdev', 'tftp', 'conf', 'keyring', 'rendernode']);

/** Options whose `file=` QEMU only reads. */
const READ_FILE_OPTIONS = new Set(['-fw_cfg', '-acpitable', '-smbios']);

/** `-device` drivers and `-object` types whose `file`/`filename`/`dir` QEMU only reads. */
const READ_FILE_TYPES = new Set(['loader', 'secret', 'rng-random', 'authz-list-file', 'tls-creds-x509', 'tls-creds-psk', 'tls-creds-anon']);

/** Options whose value is guest data, never a host path (`-append root=/dev/vda1`). */
const GUEST_DATA_OPTIONS = new Set(['-append', '-name', '-uuid']);

/** Keys whose value is guest data (`-fw_cfg name=opt/x,string=/y`). */
const GUEST_DATA_KEYS = new Set(['string', 'serial', 'name', 'id', 'mount_tag']);

/** Options that may take JSON (QEMU 7.2: `-device`, `-object`, `-blockdev`, `-netdev`, `-audiodev`, `-display`, `-compat`). */
const JSON_OPTIONS = new Set(['-device', '-object', '-blockdev', '-netdev', '-audiodev', '-display', '-compat']);

/** Network block protocols: no host file (QEMU connects out over the network). */
const NETWORK_PROTOCOL = /^(rbd|gluster(\+tcp|\+rdma)?|iscsi|nbd(\+tcp)?|https?|ftps?|nfs|sheepdog|ssh):/;

/** Key/value entries of an option value: flat syntax via splitOptions (a bare first part keyed `''`), JSON flattened to dotted keys. */
function entries(value: string, json: boolean): Array<[string, string]> {
  if (json && value.trimStart().startsWith('{')) {
    let o: unknown;
    try {
      o = JSON.parse(value);
    } catch {
      return [['', value]];
    }
    const out: Array<[string, string]> = [];
    const walk = (v: unknown, key: string): void => {
      if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, key === '' ? k : `${key}.${k}`);
      else if (v !== null && v !== undefined) out.push([key, String(v)]);
    };
    walk(o, '');
    return out;
  }
  return splitOptions(value).map((p, i): [string, string] => {
    const eq = p.indexOf('=');
    return eq > 0 ? [p.slice(0, eq), p.slice(eq + 1)] : [i === 0 ? '' : p, i === 0 ? p : 'on'];
  });
}

const isOn = (v: string | undefined): boolean => v !== undefined && ['on', 'yes', 'true', 'y'].includes(v);
const last = (key: string): string => key.slice(key.lastIndexOf('.') + 1);

/** `-opt value` shortened for messages. */
function shown(option: string, value: string): string {
  const s = `${option} ${value}`;
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/**
 * Every host access of `args` (kvm_extra split as a shell would, or a
 * kvm_cmd with its binary left out by the caller); `start` is the index of
 * args[0] in what the caller reports (kvm_cmd[1] for a runtime).
 */
export function hostAccesses(args: readonly string[], start = 0): HostAccess[] {
  const out: HostAccess[] = [];
  for (let i = 0; i < args.length; i++) {
    const raw = args[i];
    const opt = optionName(raw);
    const value = args[i + 1];
    const hasValue = opt.startsWith('-') && value !== undefined && !(value.startsWith('-') && value.length > 1);
    const at = start + (hasValue ? i + 1 : i);
    const option = hasValue ? shown(raw, value) : raw;
    const push = (kind: AccessKind, what: string, path?: string, reason?: string): void => {
      out.push({ index: at, option, kind, what, ...(path === undefined ? {} : { path }), ...(reason === undefined ? {} : { reason }) });
    };
    const refusedWhy = REFUSED_OPTIONS.get(opt);
    if (refusedWhy !== undefined) {
      push('exec', opt, undefined, refusedWhy);
      if (hasValue) i++;
      continue;
    }
    if (!hasValue) {
      // A stray value (not after an option) naming a host path is still handed to QEMU.
      if (raw.startsWith('/')) push('disk', 'value', raw);
      continue;
    }
    i++;
    if (GUEST_DATA_OPTIONS.has(opt)) continue;
    if (opt === '-sandbox') {
      const e = entries(value, false);
      const enable = e.find(([k]) => k === '' || k === 'enable')?.[1];
      if (enable === 'off') push('exec', '-sandbox off', undefined, 'turns QEMU\'s system call filter off');
      continue;
    }
    const positional = POSITIONAL.get(opt);
    if (positional !== undefined) {
      if (DATA_DIR_LOOKUP.has(opt) && !value.includes('/')) continue;
      push(value.startsWith('/') ? positional : 'opaque', opt, value);
      continue;
    }
    if (opt === '-k') {
      // A keymap name is looked up in QEMU's data directory; one with a "/" is opened as a path.
      if (value.includes('/')) push(value.startsWith('/') ? 'read' : 'opaque', opt, value);
      continue;
    }
    if (opt === '-incoming') {
      if (value.startsWith('exec:')) push('exec', 'exec:', undefined, 'makes QEMU run a command to receive the migration stream');
      // QEMU binds at everything after "unix:" (a migration address takes no options): the whole of it is checked.
      else if (value.startsWith('unix:')) push('socket', 'unix:', value.slice(5));
      else if (value.startsWith('/')) push('disk', opt, value);
      continue;
    }
    if (CHARDEV_SHORT.has(opt) || opt === '-vnc') {
      shortForm(opt, value, push);
      continue;
    }
    // -set GROUP.ID.PROP=VALUE reads as one dotted key, judged by PROP as if written in the option itself.
    keyed(opt, value, push);
  }
  return monitorsMarked(args, start, out);
}

/** `out` with the listening sockets of chardevs a `-mon chardev=ID` (or `-monitor chardev:ID`) makes a monitor marked `monitor`. */
function monitorsMarked(args: readonly string[], start: number, out: HostAccess[]): HostAccess[] {
  const ids = new Set<string>();
  for (let i = 0; i + 1 < args.length; i++) {
    const opt = optionName(args[i]);
    if (opt === '-mon') {
      const kv = new Map(entries(args[i + 1], false));
      const chardev = kv.get('chardev') ?? kv.get('');
      if (chardev !== undefined) ids.add(chardev);
    } else if (MONITOR_OPTIONS.has(opt) && args[i + 1].startsWith('chardev:')) {
      ids.add(args[i + 1].slice('chardev:'.length));
    }
  }
  if (ids.size === 0) return out;
  const at = new Set<number>();
  for (let i = 0; i + 1 < args.length; i++) {
    if (optionName(args[i]) !== '-chardev') continue;
    const id = new Map(entries(args[i + 1], true)).get('id');
    if (id !== undefined && ids.has(id)) at.add(start + i + 1);
  }
  return out.map((a) => (a.kind === 'socket' && at.has(a.index) ? { ...a, kind: 'monitor' } : a));
}

type Push = (kind: AccessKind, what: string, path?: string, reason?: string) => void;

/** A character device in QEMU's short form (`-serial file:/x`, `-monitor unix:/x,server`), or `-vnc unix:/x`. */
function shortForm(opt: string, value: string, push: Push): void {
  const v = value.startsWith('mon:') ? value.slice(4) : value;
  const [head, ...rest] = splitOptions(v);
  const server = rest.some((p) => p === 'server' || (p.startsWith('server=') && isOn(p.slice(7))));
  if (head.startsWith('exec:')) push('exec', 'exec:', undefined, 'makes QEMU run a command');
  else if (head.startsWith('unix:')) {
    // -vnc always listens; a chardev only with server.
    push(opt === '-vnc' || server ? (MONITOR_OPTIONS.has(opt) ? 'monitor' : 'socket') : 'connect', 'unix:', head.slice(5));
  } else if (head.startsWith('file:') || head.startsWith('pipe:')) push('disk', head.slice(0, 5), head.slice(5));
  else if (head.startsWith('/')) push('disk', opt, head);
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq > 0) keyValue(opt, '', p.slice(0, eq), p.slice(eq + 1), push, new Map());
  }
}

/** An option in the `k=v,…` or JSON syntax: each key by the table, each other "/" value by the fallback. */
function keyed(opt: string, value: string, push: Push): void {
  const e = entries(value, JSON_OPTIONS.has(opt));
  const kv = new Map(e);
  // The backend or type: the bare first part, or its key.
  const type = kv.get('') ?? kv.get('driver') ?? kv.get('qom-type') ?? kv.get('type') ?? kv.get('backend') ?? '';
  if ((opt === '-netdev' || opt === '-nic' || opt === '-net') && type === 'bridge') {
    push('exec', 'bridge', undefined, 'runs the bridge helper program as root');
  }
  // -global DRIVER.PROP=VALUE, or driver=…,property=PROP,value=VALUE.
  if (opt === '-global') {
    if (kv.has('property')) keyValue(opt, '', kv.get('property') ?? '', kv.get('value') ?? '', push, kv);
    else for (const [k, v] of e) if (k.includes('.')) keyValue(opt, '', k.slice(k.indexOf('.') + 1), v, push, kv);
    return;
  }
  for (const [k, v] of e) {
    if (k === '') {
      if (v.startsWith('/')) push('disk', opt, v);
      else if (v.startsWith('exec:')) push('exec', 'exec:', undefined, 'makes QEMU run a command');
      continue;
    }
    keyValue(opt, type, k, v, push, kv);
  }
}

/** One `key=value` of option `opt` (of backend or type `type`). */
function keyValue(opt: string, type: string, key: string, v: string, push: Push, kv: ReadonlyMap<string, string>): void {
  const k = last(key);
  if (EXEC_KEYS.has(k)) {
    if (v !== '' && v !== 'no') push('exec', `${key}=`, undefined, 'makes QEMU run that program as root; only "no" is accepted');
    return;
  }
  if (k === 'smb' && v !== '') {
    push('exec', `${key}=`, undefined, 'makes QEMU run smbd as root');
    return;
  }
  if (k === 'guestfwd' && /-cmd:/.test(v)) {
    push('exec', `${key}=`, undefined, 'makes QEMU run a command for each guest connection');
    return;
  }
  if (v.startsWith('exec:')) {
    push('exec', `${key}=`, undefined, 'makes QEMU run a command');
    return;
  }
  if (GUEST_DATA_KEYS.has(k)) return;
  // VNC and SPICE listen on their Unix sockets (-display vnc=unix:…, -spice unix=on,addr=…).
  if (k === 'vnc' && v.startsWith('unix:')) {
    push('socket', `${key}=unix:`, v.slice(5));
    return;
  }
  if (opt === '-spice' && k === 'addr' && isOn(kv.get('unix'))) {
    push('socket', `${key}=`, v);
    return;
  }
  if (isSocketKey(opt, type, key)) {
    const listens = socketListens(opt, key, kv);
    push(listens ? 'socket' : 'connect', `${key}=`, v);
    return;
  }
  if (FILE_KEYS.has(k) || /-(file|path|dir)$/.test(k)) {
    if (v === '') return;
    if (k === 'romfile' && !v.includes('/')) return; // a ROM name QEMU looks up in its data directory
    if (v.startsWith('/')) {
      push(READ_KEYS.has(k) || /^x509|tls/.test(k) || READ_FILE_OPTIONS.has(opt) || READ_FILE_TYPES.has(type) ? 'read' : 'disk', `${key}=`, v);
      return;
    }
    if ((k === 'file' || k === 'filename') && protocolValue(key, v, push)) return;
    push('opaque', `${key}=`, v);
    return;
  }
  if (opt === '-acpitable' && (k === 'data' || k === 'file')) {
    for (const f of v.split(':')) push(f.startsWith('/') ? 'read' : 'opaque', `${key}=`, f);
    return;
  }
  if (v.startsWith('unix:')) push('connect', `${key}=`, v.slice(5).split(',')[0]);
  else if (v.startsWith('/')) push('disk', `${key}=`, v);
}

/** Unix socket keys: a chardev's `path` with the socket backend, netdev stream/dgram addresses, vde and nbd. */
function isSocketKey(opt: string, type: string, key: string): boolean {
  const k = last(key);
  if (opt === '-chardev' && type === 'socket' && k === 'path') return true;
  if (k === 'path' && /^(addr|local|remote|server)\./.test(key)) return true;
  if (opt === '-netdev' && k === 'sock') return true;
  if ((opt === '-fsdev' || opt === '-virtfs') && k === 'socket') return true;
  if (opt === '-object' && type === 'pr-manager-helper' && k === 'path') return true;
  return false;
}

/** Whether QEMU listens on (rather than connects to) the socket of `key`. */
function socketListens(opt: string, key: string, kv: ReadonlyMap<string, string>): boolean {
  if (key.startsWith('local.')) return true;
  if (key.startsWith('remote.') || key.startsWith('server.')) return false;
  if (opt === '-chardev' || opt === '-netdev') return isOn(kv.get('server'));
  return false;
}

/** A `file=`/`filename=` naming a protocol; true when handled. */
function protocolValue(key: string, v: string, push: Push): boolean {
  const local = /^(file|host_device|host_cdrom):(.*)$/s.exec(v);
  if (local !== null) {
    push(local[2].startsWith('/') ? 'disk' : 'opaque', `${key}=${local[1]}:`, local[2]);
    return true;
  }
  if (/^(nbd(\+unix)?:.*unix|gluster\+unix)/.test(v)) {
    push('connect', `${key}=`, v);
    return true;
  }
  if (!NETWORK_PROTOCOL.test(v)) return false;
  // rbd:pool/image:conf=/etc/ceph/x.conf:keyring=…: host files inside the protocol string.
  for (const m of v.matchAll(/:(conf|keyring|keyfile)=([^:]*)/g)) push(m[2].startsWith('/') ? 'read' : 'opaque', `${key}=…:${m[1]}=`, m[2]);
  return true;
}

/** Where each kind may point, from the daemon's config. */
function placesFor(kind: AccessKind, config: Pick<Config, 'storageRoots' | 'kernelRoots' | 'runDir' | 'runtimeDir'>): { roots: string[]; name: string; except?: string[] } {
  const runDirs = [...new Set([config.runDir, DEFAULT_RUN_DIR])];
  switch (kind) {
    case 'disk': return { roots: config.storageRoots, name: 'storage roots' };
    case 'read': return { roots: [...config.storageRoots, ...config.kernelRoots], name: 'storage or kernel roots' };
    case 'kernel': return { roots: config.kernelRoots, name: 'kernel roots' };
    case 'socket': return { roots: runDirs, name: 'run dirs', except: [config.runtimeDir, join(DEFAULT_RUN_DIR, 'conf')] };
    case 'monitor': return { roots: runDirs.map((d) => join(d, 'ctrl')), name: 'control socket dirs (a monitor elsewhere could be sent a migration stream)', except: [config.runtimeDir] };
    case 'pidfile': return { roots: runDirs.map((d) => join(d, 'pid')), name: 'pid file dirs' };
    case 'log': return { roots: [GANETI_KVM_LOG_DIR], name: "Ganeti's KVM log dir" };
    default: return { roots: [], name: '' };
  }
}

/** One refused access: where, and why. */
export interface AccessProblem {
  index: number;
  message: string;
}

/**
 * The accesses of `args` the daemon may not hand a root QEMU, in argv
 * order (empty when all may). See the module comment for the rule.
 */
export async function hostAccessProblems(args: readonly string[], config: Pick<Config, 'storageRoots' | 'kernelRoots' | 'runDir' | 'runtimeDir'>, start = 0): Promise<AccessProblem[]> {
  const out: AccessProblem[] = [];
  for (const a of hostAccesses(args, start)) {
    const head = `"${a.option}"`;
    if (a.kind === 'exec') {
      out.push({ index: a.index, message: `${head}: ${a.what} ${a.reason ?? 'makes QEMU run a program'}` });
      continue;
    }
    if (a.kind === 'connect') {
      out.push({ index: a.index, message: `${head}: ${a.what} "${a.path ?? ''}" makes QEMU (as root) connect to an existing Unix socket, which could be any root-only service of the node (another instance's QMP monitor); give QEMU a socket to listen on under the run dir instead (server=on)` });
      continue;
    }
    if (a.kind === 'opaque') {
      out.push({ index: a.index, message: `${head}: ${a.what} "${a.path ?? ''}" must be an absolute path (or a network protocol); a relative path or a pseudo-protocol (json:, fat:) could name any host file` });
      continue;
    }
    const places = placesFor(a.kind, config);
    const problem = await confinementProblem(a.path ?? '', places.roots, places.name, places.except);
    if (problem !== undefined) out.push({ index: a.index, message: `${head}: ${a.what} "${a.path ?? ''}" ${problem}` });
  }
  return out;
}

/**
 * Checks a request's `hvparams.kvm_extra` (at JSON Pointer `pointer`) before
 * anything is written or started.
 * @throws JSONRPCErrorException -32602 naming `pointer` and the first refused option
 */
export async function checkKvmExtra(method: string, pointer: string, kvmExtra: unknown, config: Pick<Config, 'storageRoots' | 'kernelRoots' | 'runDir' | 'runtimeDir'>): Promise<void> {
  if (typeof kvmExtra !== 'string' || kvmExtra.trim() === '') return;
  // An unterminated quote is the planner's to report (GKD_SPEC_INVALID naming hvparams.kvm_extra).
  let args: string[];
  try {
    args = shellSplit(kvmExtra);
  } catch {
    return;
  }
  const [first] = await hostAccessProblems(args, config);
  if (first !== undefined) throw pathRefused(method, pointer, kvmExtra, first.message);
}
