/**
 * RPC latency: `instance.plan` (two SCSI disks, one NIC) against the
 * trivial `rpc.discover` on the same daemon (a `kvm-devices serve` child),
 * at 1, 16 and 256 concurrent clients; the daemon's RSS idle and under
 * load; the CLI's cold start.
 *
 * Run: `npx tsc -p . && node dist/bench/rpc.bench.js [calls-per-level]`
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { RpcClient } from '../plugin/rpc';
import { MAIN, sampleSpec, spawnDaemon } from '../test/integration/rpc/daemon-process';

const CALLS = Number(process.argv[2] ?? 2000);
const LEVELS = [1, 16, 256];

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function level(clients: RpcClient[], method: string, params: Record<string, unknown>, total: number): Promise<number[]> {
  const per = Math.ceil(total / clients.length);
  const lat: number[] = [];
  await Promise.all(clients.map(async (c) => {
    for (let i = 0; i < per; i++) {
      const t0 = process.hrtime.bigint();
      await c.call(method, params);
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }));
  return lat.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const d = await spawnDaemon({ args: ['--log-level', 'warn'] });
  const pid = d.child.pid as number;
  await new Promise((r) => setTimeout(r, 500));
  const idle = rssMiB(pid);
  let peak = idle;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMiB(pid));
  }, 20);
  const rows: string[] = [];
  const plan = { instance: sampleSpec() };
  for (const n of LEVELS) {
    const clients = await Promise.all(Array.from({ length: n }, () => RpcClient.connect(d.socket)));
    // Warm-up: JIT and ajv's compiled validators.
    await level(clients, 'instance.plan', plan, Math.max(200, n));
    await level(clients, 'rpc.discover', {}, Math.max(200, n));
    for (const [method, params] of [['rpc.discover', {}], ['instance.plan', plan]] as const) {
      const t0 = Date.now();
      const lat = await level(clients, method, params, CALLS);
      const secs = (Date.now() - t0) / 1000;
      rows.push(`| ${n} | \`${method}\` | ${lat.length} | ${pct(lat, 50).toFixed(2)} | ${pct(lat, 99).toFixed(2)} | ${Math.round(lat.length / secs)} |`);
    }
    await Promise.all(clients.map((c) => c.close()));
  }
  clearInterval(sampler);
  await d.stop();

  const cold = (args: string[]): number => {
    const t: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = process.hrtime.bigint();
      spawnSync(process.execPath, [MAIN, ...args], { stdio: 'ignore', env: { ...process.env, GKD_CONFIG: '' } });
      t.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return pct(t.sort((a, b) => a - b), 50);
  };
  const d2 = await spawnDaemon({ args: ['--log-level', 'warn'] });
  const version = cold(['--version']);
  const call = cold(['call', '--socket', d2.socket, 'rpc.discover']);
  const nodeOnly = (() => {
    const t: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = process.hrtime.bigint();
      spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' });
      t.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return pct(t.sort((a, b) => a - b), 50);
  })();
  await d2.stop();

  process.stdout.write(`| clients | method | calls | p50 ms | p99 ms | calls/s |\n|---|---|---|---|---|---|\n${rows.join('\n')}\n\n`);
  process.stdout.write(`daemon RSS: idle ${idle.toFixed(1)} MiB, peak under load ${peak.toFixed(1)} MiB\n`);
  process.stdout.write(`CLI cold start (median of 10): node -e 0 ${nodeOnly.toFixed(0)} ms, kvm-devices --version ${version.toFixed(0)} ms, kvm-devices call rpc.discover ${call.toFixed(0)} ms\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
