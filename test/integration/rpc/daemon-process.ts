/**
 * Starts the real daemon as a child process (`kvm-devices serve`) on a
 * private socket, for the integration tests and the bench.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLive } from '../../../plugin/rpc';
import { RpcClient } from '../../../plugin/rpc/client';

/** The repository root (tests run from dist/test/...). */
export const ROOT = join(__dirname, '..', '..', '..', '..');
/** The built CLI. */
export const MAIN = join(ROOT, 'dist', 'plugin', 'cli', 'main.js');

export interface DaemonProcess {
  child: ChildProcess;
  dir: string;
  socket: string;
  runtimeDir: string;
  /** stderr so far (the daemon's JSON log lines). */
  log(): string;
  /** SIGTERM, then resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A fresh temp directory for one test run. */
export function tempDir(prefix = 'gkd-rpc-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Spawns `kvm-devices serve` and waits until its socket answers. Its run dir
 * is `<dir>/run`, its runtime dir `<dir>/conf` unless `runtimeDir` is given
 * (Ganeti's layout keeps it inside the run dir).
 */
export async function spawnDaemon(options: { dir?: string; args?: string[]; env?: NodeJS.ProcessEnv; runtimeDir?: string } = {}): Promise<DaemonProcess> {
  const dir = options.dir ?? tempDir();
  const socket = join(dir, 'sock', 'rpc.sock');
  const runtimeDir = options.runtimeDir ?? join(dir, 'conf');
  // A config file of its own: the host's /etc/ganeti-kvm-devices/config.json (an installed daemon, maybe
  // of another version) must not decide how the daemon under test behaves.
  const configFile = join(dir, 'config.json');
  mkdirSync(dir, { recursive: true });
  if (!existsSync(configFile)) writeFileSync(configFile, '{}\n');
  const child = spawn(process.execPath, [
    MAIN, 'serve', '--socket', socket, '--runtime-dir', runtimeDir, '--run-dir', join(dir, 'run'),
    '--log-level', 'info', ...(options.args ?? []),
  ], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GKD_CONFIG: configFile, ...options.env } });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited early (${child.exitCode}): ${stderr}`);
    if (await isLive(socket, 200)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`daemon did not listen within 15 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child, dir, socket, runtimeDir,
    log: () => stderr,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A valid two-disk SCSI, one-NIC instance spec. */
export function sampleSpec(name = 'inst1.example.com'): Record<string, unknown> {
  return {
    name,
    uuid: '4b6e0a2c-1f0e-4c1b-9a51-0d2f7c0e8b11',
    hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', nic_type: 'paravirtual' },
    beparams: { maxmem: 256, vcpus: 1 },
    disks: [
      { uuid: '9e7c85f6-b6e5-4243-b27d-680b78c6d203', mode: 'rw', size: 1024, path: `/var/run/ganeti/instance-disks/${name}:0`, uri: null },
      { uuid: '5a1d3c11-0b7e-4a59-8f3e-2c4d6e8f0a12', mode: 'rw', size: 1024, path: `/var/run/ganeti/instance-disks/${name}:1`, uri: null },
    ],
    nics: [{ uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:bf:2f:16', nicparams: { mode: 'bridged', link: 'br0' } }],
  };
}

/** The daemon still answers (rpc.discover) and its process has not exited. */
export async function assertDaemonAlive(d: DaemonProcess): Promise<void> {
  const c = await RpcClient.connect(d.socket);
  try {
    const r = await c.call<{ methods: unknown[] }>('rpc.discover');
    assert.ok(r.methods.length > 0);
  } finally {
    await c.close();
  }
  assert.equal(d.child.exitCode, null, `daemon exited: ${d.log().slice(-2000)}`);
}

/**
 * Waits (30 s at most, polling every `pollMs`) until `cond` holds; fails with
 * `failure` and the tail of the daemon's log.
 */
export async function untilDaemon(d: DaemonProcess, failure: string, cond: () => boolean | Promise<boolean>, pollMs = 50): Promise<void> {
  for (const deadline = Date.now() + 30_000; !(await cond());) {
    assert.ok(Date.now() < deadline, `${failure}: ${d.log().slice(-2000)}`);
    await new Promise((res) => setTimeout(res, pollMs));
  }
}
