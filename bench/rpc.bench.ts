/**
 * RPC latency: `instance.plan` (two SCSI disks, one NIC) against the
 * trivial `rpc.discover` on the same daemon (a `kvm-devices serve` child),
 * at 1, 16 and 256 concurrent clients; the daemon's RSS idle, with every
 * params schema compiled, under load and after it, beside a bare `node`
 * process; the CLI's cold start beside `node -e 0`.
 *
 * Run: `npx tsc -p . && node dist/bench/rpc.bench.js [calls-per-level]`;
 * prints its BENCHMARKS.md section.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { RpcClient } from '../plugin/rpc';
import { MAIN, sampleSpec, spawnDaemon } from '../test/integration/rpc/daemon-process';
import { fixed, mdTable, numberArg, progress, quantile, runSection } from './markdown';

const LEVELS = [1, 16, 256];
/** How long a process sits after it is ready before its idle RSS is read. */
const SETTLE_MS = 500;
const COLD_RUNS = 10;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

/** RSS of a bare node process sitting in its event loop, read like the daemon's. */
async function bareNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000); process.stdout.write("ready\\n")'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  await sleep(SETTLE_MS);
  const rss = rssMiB(child.pid as number);
  child.kill();
  return rss;
}

/** Median wall time of `args` run COLD_RUNS times. */
function cold(args: string[]): number {
  const t: number[] = [];
  for (let i = 0; i < COLD_RUNS; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync(process.execPath, args, { stdio: 'ignore', env: { ...process.env, GKD_CONFIG: '' } });
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return quantile(t.sort((a, b) => a - b), 0.5);
}

interface LatencyRow {
  clients: number;
  method: string;
  calls: number;
  p50: number;
  p99: number;
  perSecond: number;
}

async function main(): Promise<string> {
  const calls = numberArg(0, 2000);
  const bare = await bareNodeRss();
  const d = await spawnDaemon({ args: ['--log-level', 'warn'] });
  const pid = d.child.pid as number;
  await sleep(SETTLE_MS);
  const idle = rssMiB(pid);

  // One call of every method, each with empty params (most are refused with -32602): the daemon then
  // holds every method's compiled params schema, as it did from its start before they were compiled lazily.
  const probe = await RpcClient.connect(d.socket);
  const methods = (await probe.call<{ methods: Array<{ name: string }> }>('rpc.discover')).methods.map((m) => m.name);
  for (const m of methods) await probe.call(m, {}).catch(() => undefined);
  await probe.close();
  await sleep(SETTLE_MS);
  const compiled = rssMiB(pid);

  let peak = compiled;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMiB(pid));
  }, 20);
  const rows: LatencyRow[] = [];
  const plan = { instance: sampleSpec() };
  for (const n of LEVELS) {
    progress('rpc', `${n} client(s)`);
    const clients = await Promise.all(Array.from({ length: n }, () => RpcClient.connect(d.socket)));
    // Warm-up: JIT and the compiled validators.
    await level(clients, 'instance.plan', plan, Math.max(200, n));
    await level(clients, 'rpc.discover', {}, Math.max(200, n));
    for (const [method, params] of [['rpc.discover', {}], ['instance.plan', plan]] as const) {
      const t0 = process.hrtime.bigint();
      const lat = await level(clients, method, params, calls);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      rows.push({ clients: n, method, calls: lat.length, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), perSecond: lat.length / secs });
    }
    await Promise.all(clients.map((c) => c.close()));
  }
  clearInterval(sampler);
  await sleep(2000);
  const after = rssMiB(pid);
  await d.stop();

  progress('rpc', 'cold starts');
  const d2 = await spawnDaemon({ args: ['--log-level', 'warn'] });
  const nodeOnly = cold(['-e', '0']);
  const version = cold([MAIN, '--version']);
  const call = cold([MAIN, 'call', '--socket', d2.socket, 'rpc.discover']);
  await d2.stop();

  const at = (n: number, m: string): LatencyRow => rows.find((r) => r.clients === n && r.method === m) as LatencyRow;
  const one = at(1, 'instance.plan');
  const many = at(LEVELS[LEVELS.length - 1], 'instance.plan');
  return [
    '## RPC',
    '',
    `\`bench/rpc.bench.ts\`: a \`kvm-devices serve\` child (log level \`warn\`) on a private socket; N clients (\`RpcClient\`, one WebSocket each) call concurrently, each waiting for its answer before the next call; about ${calls} calls per method and level after a warm-up. \`instance.plan\` plans two SCSI disks on virtio-scsi and one NIC; \`rpc.discover\` does no work but answers every method's schema, the baseline for the transport. Client and daemon share the machine's cores.`,
    '',
    mdTable(['clients', 'method', 'calls', 'p50 ms', 'p99 ms', 'calls/s'],
      rows.map((r) => [r.clients, `\`${r.method}\``, r.calls, fixed(r.p50, 2), fixed(r.p99, 2), fixed(r.perSecond, 0)])),
    '',
    `Memory: RSS from \`/proc/<pid>/status\`, ${SETTLE_MS} ms after the process is ready unless noted. The baseline is a bare \`node\` process waiting in its event loop.`,
    '',
    mdTable(['process', 'RSS MiB'], [
      ['bare `node` (baseline)', fixed(bare)],
      ['daemon idle, before any call', fixed(idle)],
      [`daemon idle after one call of each of its ${methods.length} methods (every params schema compiled)`, fixed(compiled)],
      [`daemon peak under the load above (sampled every 20 ms)`, fixed(peak)],
      ['daemon 2 s after the load, clients gone', fixed(after)],
    ]),
    '',
    `CLI cold start (median of ${COLD_RUNS}): \`node -e 0\` ${fixed(nodeOnly, 0)} ms, \`kvm-devices --version\` ${fixed(version, 0)} ms, \`kvm-devices call rpc.discover\` ${fixed(call, 0)} ms.`,
    '',
    `* At one client an \`instance.plan\` call takes p50 ${fixed(one.p50, 2)} ms from the client's side. At ${many.clients} clients p50 is ${fixed(many.p50, 1)} ms at ${fixed(many.perSecond, 0)} calls/s: latency there is queueing on the daemon's one event loop (and the client's, on the same cores), not work per call.`,
    `* The daemon idles ${fixed(idle - bare)} MiB above a bare \`node\`: ws, pino, ajv and the method modules. Params schemas are compiled at a method's first call; compiling all of them adds ${fixed(compiled - idle)} MiB (V8 keeps the heap it grew for the compilation), which is what a daemon that compiled them at start held while idle. V8 gives grown heap back to the system only after a while of low activity, so the RSS after a load stays near its peak for some seconds.`,
    `* \`call\` and the hooks load only the client module: \`kvm-devices call\` costs ${fixed(call - nodeOnly, 0)} ms over \`node -e 0\`, including the round trip.`,
  ].join('\n');
}

runSection(module, main);
