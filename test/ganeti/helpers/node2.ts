/**
 * The Ganeti suite's second node (`ganeti-lab.sh up2`): node2.example.com
 * in its own network, UTS and mount namespaces, joined to the lab's cluster,
 * with the plugin's own daemon started inside its namespaces the way the
 * installed unit starts it. Node 2's directories (/run/ganeti,
 * /run/ganeti-kvm-devices, /etc/ganeti-kvm-devices, ...) are bind mounts
 * of directories under the lab's state dir, so this process reaches node 2's
 * sockets and files through those paths.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

import { QmpClient } from '../../../plugin/qmp';
import {
  callAt, callErrorAt, callsLoggedSince, DAEMON_LOG, DAEMON_SOCKET, ensureGanetiNode, LAB_SCRIPT, logSize, NODE, spawnNodeDaemon, stopNodeDaemon, type LoggedCall,
} from './lab';

export const NODE2 = 'node2.example.com';
export const NODE2_IP = '198.51.100.11';
/** Where node 2's own directories live, as this process sees them (the lab script's state dir). */
export const NODE2_ROOT = '/var/lib/gkd-ganeti-lab/node2';

/** One node of the lab as this process reaches it. */
export interface LabNode {
  name: string;
  /** /run/ganeti of the node. */
  runDir: string;
  /** The plugin daemon's socket on the node. */
  socket: string;
  /** The plugin daemon's log (written by this process's child). */
  log: string;
  /** The plugin's configuration file on the node. */
  config: string;
}

export const NODES: Record<1 | 2, LabNode> = {
  1: { name: NODE, runDir: '/var/run/ganeti', socket: DAEMON_SOCKET, log: DAEMON_LOG, config: '/etc/ganeti-kvm-devices/config.json' },
  2: {
    name: NODE2,
    runDir: `${NODE2_ROOT}/run/ganeti`,
    socket: `${NODE2_ROOT}/run/ganeti-kvm-devices/rpc.sock`,
    log: '/var/log/ganeti-kvm-devices-test-node2.log',
    config: `${NODE2_ROOT}/etc/ganeti-kvm-devices/config.json`,
  },
};

let ready: Promise<void> | undefined;
let daemon2: ChildProcess | undefined;

/** Node 1 as {@link ensureGanetiNode} builds it, then node 2 joined and its daemon up. */
export function ensureTwoNodes(): Promise<void> {
  ready ??= (async () => {
    await ensureGanetiNode();
    const up = spawnSync('bash', [LAB_SCRIPT, 'up2'], { encoding: 'utf8', timeout: 600_000 });
    if (up.status !== 0) throw new Error(`ganeti-lab.sh up2 failed:\n${up.stdout}\n${up.stderr}`);
    await startNode2Daemon();
  })();
  return ready;
}

/** Starts node 2's daemon inside node 2's namespaces ("ganeti-lab.sh node2" execs nsenter, which execs it). */
export async function startNode2Daemon(): Promise<void> {
  if (daemon2 !== undefined && daemon2.exitCode === null) return;
  daemon2 = await spawnNodeDaemon(['bash', LAB_SCRIPT, 'node2'], NODES[2].socket, NODES[2].log);
}

/** Stops node 2's daemon (SIGTERM, as systemd would). */
export async function stopNode2Daemon(): Promise<void> {
  await stopNodeDaemon(daemon2);
}

/** One JSON-RPC call to the daemon of node `n`. */
export function callOn<T = Record<string, unknown>>(n: 1 | 2, method: string, params: Record<string, unknown>): Promise<T> {
  return callAt<T>(NODES[n].socket, method, params);
}

/** A call to node `n` expected to fail: its error data (with `code`). */
export function callErrorOn(n: 1 | 2, method: string, params: Record<string, unknown>): Promise<{ code: string; message: string; [k: string]: unknown }> {
  return callErrorAt(NODES[n].socket, method, params);
}

/** The QMP socket Ganeti gives instance `name` on node `n`. */
export function qmpSocketOn(n: 1 | 2, name: string): string {
  return `${NODES[n].runDir}/kvm-hypervisor/ctrl/${name}.qmp`;
}

/** One short QMP exchange with the QEMU of `name` on node `n` (connect, ask, leave). */
export async function qmpOn<T = unknown>(n: 1 | 2, name: string, command: string, args?: Record<string, unknown>): Promise<T> {
  const q = await QmpClient.connect(qmpSocketOn(n, name));
  try {
    return (await q.execute(command, args)) as T;
  } finally {
    await q.close();
  }
}

/** The pid of the QEMU running `name` on node `n`, from Ganeti's pid file; undefined when none runs. */
export function qemuPidOn(n: 1 | 2, name: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${NODES[n].runDir}/kvm-hypervisor/pid/${name}`, 'utf8').trim());
    if (!existsSync(`/proc/${pid}`)) return undefined;
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    return /^State:\s+Z/m.test(st) ? undefined : pid;
  } catch {
    return undefined;
  }
}

/** Ganeti's runtime file of `name` on node `n`, when there is one. */
export function runtimeFileOn(n: 1 | 2, name: string): string | undefined {
  const f = `${NODES[n].runDir}/kvm-hypervisor/conf/${name}.runtime`;
  return existsSync(f) ? f : undefined;
}

/** The daemon log's size on node `n` now (see {@link callsSinceOn}). */
export function logMarkOn(n: 1 | 2): number {
  return logSize(NODES[n].log);
}

/** The calls node `n`'s daemon logged since `mark`. */
export function callsSinceOn(n: 1 | 2, mark: number): LoggedCall[] {
  return callsLoggedSince(NODES[n].log, mark);
}

/** Runs a command on node 2 (its namespaces). */
export function onNode2(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', [LAB_SCRIPT, 'node2', cmd, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

