/**
 * Daemon memory under hostile load: RSS of a fresh `kvm-devices serve`
 * child after N good requests (`instance.plan`, distinct instance names),
 * against a second fresh daemon after N hostile ones (values nested
 * thousands deep, a distinct kvm_path per call, disk paths outside the
 * storage roots, 100 KB strings, garbage frames, batches, a runtime file
 * nested too deep), sent over 8 connections.
 *
 * Run: `npx tsc -p . && node dist/bench/hostile-rss.bench.js [requests]`
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { sampleSpec, spawnDaemon, type DaemonProcess } from '../test/integration/rpc/daemon-process';

const N = Number(process.argv[2] ?? 10_000);
const CONNECTIONS = 8;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);

/** The i-th hostile frame: one of several kinds, in turn. */
function hostileFrame(i: number): string {
  const spec = sampleSpec(`h${i % 50}`);
  const req = (method: string, params: unknown): string => JSON.stringify({ jsonrpc: '2.0', id: i, method, params });
  switch (i % 8) {
    case 0: return req('instance.plan', { instance: { ...spec, hvparams: { x: '@D@' } } }).replace('"@D@"', deep(4500));
    case 1: return req('instance.plan', { instance: { ...spec, hvparams: { kvm_path: `/usr/bin/qemu-${i}-${'x'.repeat(200)}` } } });
    case 2: return req('disk.add', { name: 'h1', disk: { uuid: '2e7c85f6-b6e5-4243-b27d-680b78c6d205', path: i % 16 === 2 ? '/etc/hostname' : '../../../etc/shadow' } });
    case 3: return req('instance.plan', { instance: { ...spec, hvparams: { x: 'y'.repeat(100_000) } } });
    case 4: return `{"jsonrpc":"2.0","id":${i},"method":`;
    case 5: return `[${Array.from({ length: 8 }, (_, k) =>
      JSON.stringify({ jsonrpc: '2.0', id: `${i}.${k}`, method: 'runtime.convert', params: { runtime: '@D@', to: '2.10' } }).replace('"@D@"', deep(3000))).join(',')}]`;
    case 6: return req('runtime.get', { name: 'deep1' });
    default: return req('instance.plan', { instance: { ...spec, nics: [{ ...(spec.nics as object[])[0], mac: 'ff:ff:ff:ff:ff:ff' }] } });
  }
}

function goodFrame(i: number): string {
  return JSON.stringify({ jsonrpc: '2.0', id: i, method: 'instance.plan', params: { instance: sampleSpec(`g${i % 50}`) } });
}

/** Sends frames 0..n-1 over CONNECTIONS sockets, each waiting for an answer (or a short pause for garbage) before its next frame. */
async function drive(socket: string, n: number, frame: (i: number) => string): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    const ws = new WebSocket(`ws+unix://${socket}:/`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    while (next < n) {
      const i = next++;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        ws.once('message', () => {
          clearTimeout(t);
          resolve();
        });
        ws.send(frame(i));
      });
    }
    ws.close();
  }));
}

async function measure(label: string, frame: (i: number) => string): Promise<{ idle: number; after: number; peak: number; secs: number }> {
  const d: DaemonProcess = await spawnDaemon({ args: ['--log-level', 'warn'] });
  writeFileSync(join(d.runtimeDir, 'deep1.runtime'), `[${deep(4600)}, [], {}, []]\n`);
  const pid = d.child.pid as number;
  await new Promise((r) => setTimeout(r, 500));
  const idle = rssMiB(pid);
  let peak = idle;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMiB(pid));
  }, 20);
  const t0 = Date.now();
  await drive(d.socket, N, frame);
  const secs = (Date.now() - t0) / 1000;
  // Let the daemon settle (closed connections, a GC) before reading its RSS.
  await new Promise((r) => setTimeout(r, 2000));
  clearInterval(sampler);
  const after = rssMiB(pid);
  const alive = d.child.exitCode === null;
  await d.stop();
  if (!alive) throw new Error(`${label}: the daemon died`);
  return { idle, after, peak, secs };
}

async function main(): Promise<void> {
  const good = await measure('good', goodFrame);
  const bad = await measure('hostile', hostileFrame);
  const row = (label: string, r: typeof good): string =>
    `| ${label} | ${N} | ${r.secs.toFixed(1)} | ${r.idle.toFixed(1)} | ${r.peak.toFixed(1)} | ${r.after.toFixed(1)} |`;
  process.stdout.write(`| requests | count | seconds | RSS idle MiB | RSS peak MiB | RSS after MiB |\n|---|---|---|---|---|---|\n${row('good (instance.plan)', good)}\n${row('hostile (mix of 8 kinds)', bad)}\n\n`);
  process.stdout.write(`RSS after hostile / after good: ${(bad.after / good.after).toFixed(2)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
