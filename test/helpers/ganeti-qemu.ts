/**
 * QEMU run the way a Ganeti node runs it, for tests: started with extra
 * file descriptors (a disk opened by the caller and passed as
 * `-add-fd fd=3,set=N`), and driven over a second monitor with Ganeti's own
 * hot-add protocol (`add-fd` with the descriptor passed over the socket,
 * `drive_add file=/dev/fdset/N`, `remove-fd`, `device_add`), which needs
 * SCM_RIGHTS and so runs in Python (test/ganeti-code/qmp-steps.py).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';

const STEPS = resolve(__dirname, __dirname.includes('/dist/') ? '../../../test/ganeti-code/qmp-steps.py' : '../ganeti-code/qmp-steps.py');

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** A QEMU spawned with extra descriptors. */
export interface FdQemu {
  pid: number;
  /** stderr so far. */
  stderr(): string;
  /** Kills it and waits until it is gone. */
  stop(): Promise<void>;
}

async function waitForSocket(path: string, child: ChildProcess, err: () => string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`QEMU exited: ${err()}`);
    if (existsSync(path)) {
      const ok = await new Promise<boolean>((res) => {
        const s = connect(path);
        s.once('connect', () => {
          s.destroy();
          res(true);
        });
        s.once('error', () => res(false));
      });
      if (ok) return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`QEMU did not serve ${path} in time: ${err()}`);
}

/**
 * Spawns `argv` (argv[0] the binary) with each file of `files` open
 * read-write as descriptor 3, 4, …, and waits until `socket` answers.
 * Connecting to check it does not keep the monitor busy.
 */
export async function spawnQemuWithFds(argv: readonly string[], files: readonly string[], socket: string): Promise<FdQemu> {
  const fds = files.map((f) => openSync(f, 'r+'));
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', ...fds] });
  for (const fd of fds) closeSync(fd);
  running.add(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await waitForSocket(socket, child, () => err);
  } catch (e) {
    child.kill('SIGKILL');
    running.delete(child);
    throw e;
  }
  return {
    pid: child.pid as number,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      running.delete(child);
    },
  };
}

/** One QMP step for {@link qmpSteps}; `open` passes that file as a descriptor with the command. */
export interface QmpStep {
  execute: string;
  arguments?: Record<string, unknown>;
  open?: string;
}

/** Runs `steps` on the monitor at `socket` (which must be free); returns each command's return value. */
export function qmpSteps(socket: string, steps: readonly QmpStep[]): unknown[] {
  try {
    return JSON.parse(execFileSync('/usr/bin/python3', [STEPS, socket, JSON.stringify(steps)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as unknown[];
  } catch (e) {
    throw new Error(`QMP steps failed: ${(e as { stderr?: string }).stderr ?? String(e)}`);
  }
}

/**
 * Hot-adds a disk as Ganeti 3.0 does: opens `file` and passes the
 * descriptor (`add-fd`), `drive_add` on `/dev/fdset/N` with id `id`,
 * removes the fd set again, then `device_add` at `hvinfo`.
 */
export function ganetiHotAddDisk(socket: string, file: string, hvinfo: object): void {
  const h = hvinfo as Record<string, unknown>;
  const id = String(h.id);
  qmpSteps(socket, [
    { execute: 'add-fd', open: file },
    { execute: 'human-monitor-command', arguments: { 'command-line': `drive_add dummy file=/dev/fdset/$fdset,if=none,id=${id},format=raw,auto-read-only=off,aio=threads` } },
    { execute: 'remove-fd', arguments: { 'fdset-id': '$fdset' } },
    { execute: 'device_add', arguments: { ...h, drive: id } },
  ]);
}

/** A Ganeti 3.0 fixture (test/fixtures/runtime/ganeti-3.0): its runtime file and the argv Ganeti started QEMU with. */
export interface GanetiFixture {
  name: string;
  /** The runtime file's text, as Ganeti wrote it. */
  text: string;
  /** QEMU's arguments at start, without the binary. */
  launch: string[];
}

const FIXTURES = resolve(__dirname, __dirname.includes('/dist/') ? '../../../test/fixtures/runtime/ganeti-3.0' : '../fixtures/runtime/ganeti-3.0');

export function ganetiFixture(name: string): GanetiFixture {
  const text = readFileSync(resolve(FIXTURES, `${name}.runtime`), 'utf8');
  const line = readFileSync(resolve(FIXTURES, 'launch-argv.txt'), 'utf8').split('\n').find((l) => l.startsWith(`-name ${name} `));
  if (line === undefined) throw new Error(`no launch argv for ${name}`);
  return { name, text, launch: line.trim().split(/\s+/) };
}

/** Where a Ganeti-shaped instance lives in a test: its links, QMP sockets and pid file. */
export interface GanetiPlaces {
  /** Disk i's link (Ganeti's `/var/run/ganeti/instance-disks/NAME:i`). */
  link(i: number): string;
  /** The monitor the product talks to (Ganeti's `.qmp`). */
  qmp: string;
  /** The second monitor (Ganeti's `.kvmd`), used for raw steps. */
  raw: string;
  pidFile: string;
}

/**
 * Ganeti's launch argv made runnable here: the test's binary, no
 * `-daemonize`, the test's pid file and sockets, no HMP monitor or log
 * file, TCG, disks at the test's links, and each tap passed by fd
 * (`-netdev type=tap,id=X,fd=N`) replaced by user networking with the same
 * id, which the target gets too through its NIC backends.
 */
export function runnableLaunchArgv(launch: readonly string[], binary: string, at: GanetiPlaces): string[] {
  const out = [binary];
  let qmps = 0;
  for (let i = 0; i < launch.length; i++) {
    const a = launch[i];
    const v = launch[i + 1];
    if (a === '-daemonize') continue;
    if (a === '-D' || a === '-monitor') {
      i++;
      continue;
    }
    if (a === '-pidfile') out.push(a, at.pidFile);
    else if (a === '-qmp') out.push(a, `unix:${qmps++ === 0 ? at.qmp : at.raw},server=on,wait=off`);
    else if (a === '-machine') out.push(a, v.replace(/accel=\w+/, 'accel=tcg'));
    else if (a === '-netdev') out.push(a, v.replace(/^type=tap,id=([^,]+),.*$/, 'type=user,id=$1'));
    else if (a === '-drive') out.push(a, v.replace(/^file=[^,]*:(\d+),/, (_, n: string) => `file=${at.link(Number(n))},`));
    else {
      out.push(a);
      continue;
    }
    i++;
  }
  return out;
}

/**
 * Ganeti's runtime file for the test's node: the test's binary, pid file
 * and disk links in place of the node's. Everything else is as Ganeti
 * wrote it.
 */
export function localRuntime(text: string, binary: string, at: GanetiPlaces): [Array<string | number>, Array<Record<string, unknown>>, Record<string, unknown>, Array<[Record<string, unknown>, string, string | null]>] {
  const rt = JSON.parse(text) as ReturnType<typeof localRuntime>;
  rt[0][0] = binary;
  const p = rt[0].indexOf('-pidfile');
  if (p >= 0) rt[0][p + 1] = at.pidFile;
  rt[2].kvm_path = binary;
  rt[3].forEach((d, i) => (d[1] = at.link(i)));
  return rt;
}
