/**
 * Daemon and client configuration.
 *
 * Precedence, lowest first: built-in defaults, the JSON config file
 * (`/etc/ganeti-kvm-devices/config.json` when present, or the file named by
 * `--config` / `GKD_CONFIG`), `GKD_*` environment variables, then command-line
 * flags (passed in as `overrides`). The defaults work out of the box: as root
 * they are Ganeti's paths; any other user gets a private per-user directory so
 * tests and demos never touch the system's.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

/** Everything the daemon, `call` and the hooks read from configuration. */
export interface Config {
  /** Unix socket the daemon listens on and clients connect to. */
  socket: string;
  /** Mode of the socket file (the directory gets 0750 when the daemon creates it). */
  socketMode: number;
  /** User (name or uid) to own the socket; unset keeps the daemon's. */
  socketOwner?: string | number;
  /** Group (name or gid) to own the socket, e.g. the Ganeti admin group. */
  socketGroup?: string | number;
  /** Where `<instance>.runtime` files live. */
  runtimeDir: string;
  /** Ganeti's KVM run dir: pid files, monitor and serial sockets live under it. */
  runDir: string;
  /** QMP socket path of an instance; `{runDir}` and `{name}` are substituted. */
  qmpPattern: string;
  /** pino level: trace, debug, info, warn, error, fatal, silent. */
  logLevel: string;
  /** Accelerator for every argv the daemon builds; unset lets the planner choose. */
  accel?: 'kvm' | 'tcg';
  /** `instance.start` and `migration.accept` start QEMU themselves. */
  launch: boolean;
  /**
   * Keep each QMP connection open after its sequence instead of giving the
   * monitor back. Only for monitors nobody else uses (a socket dedicated to
   * the daemon): on a Ganeti node the socket is Ganeti's, QEMU serves one
   * client at a time and Ganeti gives up after 5 s, so this stays false there.
   */
  qmpKeepOpen: boolean;
  /** How long one QMP command (hotplug, verify, migration) may take, in ms. */
  hotplugTimeoutMs: number;
  /** How long to wait for the guest to release an unplugged device, in ms. */
  unplugTimeoutMs: number;
  /** Largest accepted RPC message, in bytes. */
  maxPayload: number;
  /** How long in-flight calls may run after SIGTERM before they are aborted, in ms. */
  shutdownGraceMs: number;
  /** Runtime format this node's Ganeti reads and writes (`2.9`, `2.10`, `2.16`). */
  ganetiFormat: '2.9' | '2.10' | '2.16';
  /** How long a hook waits for the daemon's answer, in ms (pre hooks then fail closed, post hooks open). */
  hookTimeoutMs: number;
  /**
   * The QEMU binaries the daemon may run. A request's `hvparams.kvm_path`
   * (or a runtime's kvm_cmd[0]) must be one of them; unset or Ganeti's
   * default `/usr/bin/kvm` means the first.
   */
  qemuBinaries: string[];
  /**
   * Directories every disk path (and CD-ROM image) of a request must lie in,
   * both as given and with symlinks resolved (a link in one root may lead
   * into another).
   */
  storageRoots: string[];
  /** Directories `kernel_path` and `initrd_path` must lie in (as storageRoots). */
  kernelRoots: string[];
}

/** Ganeti's list of allowed file-storage directories. */
export const GANETI_FILE_STORAGE_PATHS = '/etc/ganeti/file-storage-paths';

/**
 * Storage roots matching a stock Ganeti node: its file-storage directories
 * (from `file`, one per line, `#` comments), block devices under `/dev/`, and
 * the instance-disk links Ganeti hands the hypervisor.
 */
export function defaultStorageRoots(file = GANETI_FILE_STORAGE_PATHS): string[] {
  const roots = ['/dev/', '/var/run/ganeti/instance-disks/'];
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return roots;
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('/') && !roots.includes(line)) roots.push(line);
  }
  return roots;
}

/** The system-wide config file read when present. */
export const SYSTEM_CONFIG_FILE = '/etc/ganeti-kvm-devices/config.json';

/** Defaults for root on a Ganeti node. */
export const ROOT_DEFAULTS: Config = {
  socket: '/run/ganeti-kvm-devices/rpc.sock',
  socketMode: 0o660,
  runtimeDir: '/var/run/ganeti/kvm-hypervisor/conf',
  runDir: '/var/run/ganeti/kvm-hypervisor',
  qmpPattern: '{runDir}/ctrl/{name}.qmp',
  logLevel: 'info',
  launch: false,
  qmpKeepOpen: false,
  hotplugTimeoutMs: 30_000,
  unplugTimeoutMs: 30_000,
  maxPayload: 1024 * 1024,
  shutdownGraceMs: 10_000,
  ganetiFormat: '2.16',
  hookTimeoutMs: 60_000,
  qemuBinaries: ['/usr/bin/qemu-system-x86_64'],
  storageRoots: ['/dev/', '/var/run/ganeti/instance-disks/'],
  kernelRoots: ['/boot/'],
};

/** The per-user base directory non-root runs use instead of Ganeti's paths. */
export function userBaseDir(env: NodeJS.ProcessEnv = process.env, uid = currentUid()): string {
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg !== undefined && xdg !== '') return join(xdg, 'ganeti-kvm-devices');
  return join(tmpdir(), `ganeti-kvm-devices-${uid}`);
}

/** Defaults for the given uid: Ganeti's paths for root, a private directory otherwise. */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env, uid = currentUid()): Config {
  const lists = { qemuBinaries: [...ROOT_DEFAULTS.qemuBinaries], storageRoots: defaultStorageRoots(), kernelRoots: [...ROOT_DEFAULTS.kernelRoots] };
  if (uid === 0) return { ...ROOT_DEFAULTS, ...lists };
  const base = userBaseDir(env, uid);
  return {
    ...ROOT_DEFAULTS,
    ...lists,
    socket: join(base, 'rpc.sock'),
    runtimeDir: join(base, 'conf'),
    runDir: join(base, 'run'),
  };
}

/** Environment variable → config key. Values are parsed by the key's type. */
const ENV_KEYS: Record<string, keyof Config> = {
  GKD_SOCKET: 'socket',
  GKD_SOCKET_MODE: 'socketMode',
  GKD_SOCKET_OWNER: 'socketOwner',
  GKD_SOCKET_GROUP: 'socketGroup',
  GKD_RUNTIME_DIR: 'runtimeDir',
  GKD_RUN_DIR: 'runDir',
  GKD_QMP_PATTERN: 'qmpPattern',
  GKD_LOG_LEVEL: 'logLevel',
  GKD_ACCEL: 'accel',
  GKD_LAUNCH: 'launch',
  GKD_QMP_KEEP_OPEN: 'qmpKeepOpen',
  GKD_HOTPLUG_TIMEOUT_MS: 'hotplugTimeoutMs',
  GKD_UNPLUG_TIMEOUT_MS: 'unplugTimeoutMs',
  GKD_MAX_PAYLOAD: 'maxPayload',
  GKD_SHUTDOWN_GRACE_MS: 'shutdownGraceMs',
  GKD_GANETI_FORMAT: 'ganetiFormat',
  GKD_HOOK_TIMEOUT_MS: 'hookTimeoutMs',
  GKD_QEMU_BINARIES: 'qemuBinaries',
  GKD_STORAGE_ROOTS: 'storageRoots',
  GKD_KERNEL_ROOTS: 'kernelRoots',
};

/** Keys whose value is a list of absolute paths (colon-separated in the environment). */
const PATH_LIST_KEYS = new Set<keyof Config>(['qemuBinaries', 'storageRoots', 'kernelRoots']);

const NUMBER_KEYS = new Set<keyof Config>([
  'hotplugTimeoutMs', 'unplugTimeoutMs', 'maxPayload', 'shutdownGraceMs', 'hookTimeoutMs',
]);
const LOG_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
const FORMATS = new Set(['2.9', '2.10', '2.16']);

export interface LoadConfigOptions {
  /** Config file to read; it must exist. @default GKD_CONFIG, else SYSTEM_CONFIG_FILE when present */
  file?: string;
  /**
   * The config file's text as someone else read it (the hook endpoint gets it
   * from the hook script, `file` naming it for messages), or null for no
   * config file. When given, nothing is read from disk: GKD_CONFIG and
   * SYSTEM_CONFIG_FILE are ignored.
   */
  fileText?: string | null;
  /** @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Command-line values; they win over everything else. */
  overrides?: Partial<Config>;
  /** @default the process's uid */
  uid?: number;
}

/**
 * Builds the effective configuration.
 * @throws TypeError naming the source and key of a bad value
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const cfg = defaultConfig(env, options.uid ?? currentUid());
  const sent = options.fileText;
  const explicit = options.file ?? nonEmpty(env.GKD_CONFIG);
  const file = sent !== undefined ? (sent === null ? undefined : explicit ?? 'config text')
    : explicit ?? (existsSync(SYSTEM_CONFIG_FILE) ? SYSTEM_CONFIG_FILE : undefined);
  if (file !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(typeof sent === 'string' ? sent : readFileSync(file, 'utf8'));
    } catch (e) {
      throw new TypeError(`Cannot read config file "${file}": ${(e as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new TypeError(`Cannot read config file "${file}": not a JSON object`);
    }
    for (const [k, v] of Object.entries(parsed)) applyValue(cfg, k, v, `config file "${file}"`);
  }
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const raw = nonEmpty(env[name]);
    if (raw !== undefined) applyValue(cfg, key, fromEnv(key, raw), `environment variable ${name}`);
  }
  for (const [k, v] of Object.entries(options.overrides ?? {})) {
    if (v !== undefined) applyValue(cfg, k, v, 'command line');
  }
  return cfg;
}

/** The QMP socket of an instance under this configuration. */
export function qmpSocketFor(cfg: Pick<Config, 'qmpPattern' | 'runDir'>, name: string): string {
  return cfg.qmpPattern.replaceAll('{runDir}', cfg.runDir).replaceAll('{name}', name);
}

function fromEnv(key: keyof Config, raw: string): unknown {
  if (PATH_LIST_KEYS.has(key)) return raw.split(':').filter((p) => p !== '');
  if (NUMBER_KEYS.has(key)) return Number(raw);
  if (key === 'socketMode') return parseInt(raw, 8);
  if (key === 'launch' || key === 'qmpKeepOpen') return raw === '1' || raw === 'true' || raw === 'yes';
  if ((key === 'socketOwner' || key === 'socketGroup') && /^\d+$/.test(raw)) return Number(raw);
  return raw;
}

function applyValue(cfg: Config, key: string, value: unknown, source: string): void {
  const bad = (why: string): never => {
    throw new TypeError(`Cannot use ${source}: "${key}" ${why}`);
  };
  const target = cfg as unknown as Record<string, unknown>;
  switch (key) {
    case 'socket': case 'runtimeDir': case 'runDir': case 'qmpPattern':
      if (typeof value !== 'string' || value === '') bad('must be a non-empty string');
      break;
    case 'socketMode':
      if (typeof value === 'string' && /^0?[0-7]{3}$/.test(value)) value = parseInt(value, 8);
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0o777) bad('must be a mode like "0660"');
      break;
    case 'socketOwner': case 'socketGroup':
      if (!(typeof value === 'string' && value !== '') && !(typeof value === 'number' && Number.isInteger(value) && value >= 0)) {
        bad('must be a name or a numeric id');
      }
      break;
    case 'logLevel':
      if (typeof value !== 'string' || !LOG_LEVELS.has(value)) bad(`must be one of ${[...LOG_LEVELS].join(', ')}`);
      break;
    case 'accel':
      if (value !== 'kvm' && value !== 'tcg') bad('must be "kvm" or "tcg"');
      break;
    case 'launch': case 'qmpKeepOpen':
      if (typeof value !== 'boolean') bad('must be true or false');
      break;
    case 'qemuBinaries': case 'storageRoots': case 'kernelRoots':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.startsWith('/') && !v.includes('\0'))) {
        bad('must be a list of absolute paths');
      }
      if (key === 'qemuBinaries' && (value as string[]).length === 0) bad('must name at least one binary');
      value = [...(value as string[])];
      break;
    case 'ganetiFormat':
      if (typeof value !== 'string' || !FORMATS.has(value)) bad('must be "2.9", "2.10" or "2.16"');
      break;
    default:
      if (NUMBER_KEYS.has(key as keyof Config)) {
        if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) bad('must be a positive number');
        break;
      }
      bad('is not a known setting');
  }
  target[key] = value;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

function currentUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}
