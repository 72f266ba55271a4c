/**
 * Ganeti hook wall time, exec to exit, against a real daemon (a
 * `kvm-devices serve` child) on a temp socket: the hook scripts (sh + curl
 * to the daemon's POST /hook/<name>) against the old path, `kvm-devices
 * hook <name>` (Node), with baselines measured in the same run.
 *
 * Run: `npx tsc -p . && node dist/bench/hook.bench.js [runs]`
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RpcClient } from '../plugin/rpc';
import { GANETI_ENV } from '../test/integration/rpc/ganeti-env';
import { MAIN, ROOT, sampleSpec, spawnDaemon } from '../test/integration/rpc/daemon-process';
import { quantile } from './markdown';

const RUNS = Number(process.argv[2] ?? 50);
const HOOKS = ['instance-start-pre', 'instance-migrate-pre', 'cluster-verify-post'] as const;

interface Case {
  name: string;
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

async function main(): Promise<void> {
  const d = await spawnDaemon({ args: ['--log-level', 'warn'] });
  try {
    // The hooks' config file, as an installed node has it.
    const configFile = join(d.dir, 'hook-config.json');
    writeFileSync(configFile, `${JSON.stringify({ socket: d.socket, logLevel: 'warn' }, null, 2)}\n`);
    // A runtime file, so instance-migrate-pre makes both its calls (runtime.convert, instance.verify).
    const c = await RpcClient.connect(d.socket);
    await c.call('instance.start', { instance: sampleSpec() });
    await c.close();
    const hookEnv = (name: string): NodeJS.ProcessEnv => ({
      ...GANETI_ENV, PATH: '/sbin:/bin:/usr/sbin:/usr/bin', GKD_CONFIG: configFile,
      GANETI_HOOKS_PATH: name.replace(/-(pre|post)$/, ''), GANETI_HOOKS_PHASE: name.endsWith('-pre') ? 'pre' : 'post',
    });
    const path = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const cases: Case[] = [
      ...HOOKS.map((h) => ({ name: `script (sh + curl): \`${h}\``, cmd: join(ROOT, 'hooks', h), args: [], env: hookEnv(h) })),
      ...HOOKS.map((h) => ({ name: `old: \`kvm-devices hook ${h}\``, cmd: process.execPath, args: [MAIN, 'hook', h], env: hookEnv(h) })),
      { name: 'baseline: `sh -c /bin/true`', cmd: '/bin/sh', args: ['-c', '/bin/true'], env: path },
      { name: 'baseline: curl alone (GET / on the socket, answered 426)', cmd: 'curl', args: ['-s', '-o', '/dev/null', '--unix-socket', d.socket, 'http://localhost/'], env: path },
      { name: 'baseline: `node -e 0`', cmd: process.execPath, args: ['-e', '0'], env: path },
      { name: 'baseline: `kvm-devices --version` (cold)', cmd: process.execPath, args: [MAIN, '--version'], env: path },
    ];
    // Every case must work before it is timed.
    for (const k of cases) {
      const r = spawnSync(k.cmd, k.args, { env: k.env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${k.name} exited ${r.status}: ${r.stdout}${r.stderr}`);
    }
    const times = new Map<string, number[]>(cases.map((k) => [k.name, []]));
    // Interleaved rounds: machine load drifts over the run, and each round sees it alike.
    for (let round = 0; round < RUNS; round++) {
      for (const k of cases) {
        const t0 = process.hrtime.bigint();
        spawnSync(k.cmd, k.args, { env: k.env, stdio: 'ignore' });
        times.get(k.name)?.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      if (round % 10 === 9) process.stderr.write(`hook bench: ${round + 1}/${RUNS} rounds\n`);
    }
    const stats = new Map([...times].map(([n, t]) => {
      const s = [...t].sort((a, b) => a - b);
      return [n, { p50: quantile(s, 0.5), p95: quantile(s, 0.95), n: s.length }];
    }));
    const row = (n: string): string => {
      const s = stats.get(n)!;
      return `| ${n} | ${s.n} | ${s.p50.toFixed(1)} | ${s.p95.toFixed(1)} |`;
    };
    const p50 = (n: string): number => stats.get(n)!.p50;
    const curl = p50(cases[HOOKS.length * 2 + 1]!.name);
    const worst = Math.max(...HOOKS.map((h) => p50(`script (sh + curl): \`${h}\``)));
    const notes = HOOKS.map((h) => {
      const s = p50(`script (sh + curl): \`${h}\``);
      const o = p50(`old: \`kvm-devices hook ${h}\``);
      return `\`${h}\`: ${s.toFixed(1)} ms against ${o.toFixed(1)} ms (${(o / s).toFixed(1)}× faster, ${(s - curl).toFixed(1)} ms above curl alone)`;
    });
    const out = [
      '## Ganeti hook wall time',
      '',
      `Wall time from spawn to exit of one hook run, as Ganeti runs it (environment reset to PATH and a realistic GANETI_* set for a two-disk, one-NIC KVM instance, stdin closed), against a real daemon (\`kvm-devices serve\`, a child process) on a temp socket. The hook script (POSIX sh sourcing hook-client.sh, curl posting the environment to the daemon's \`POST /hook/<name>\`, which runs the hook in process) is compared with the old path, \`kvm-devices hook <name>\` (Node, connecting over the WebSocket; started here as \`node main.js\` without the installed sh wrapper, so slightly favoured). \`instance-migrate-pre\` finds a runtime file and makes both its calls; \`cluster-verify-post\` lists the runtime directory. Baselines in the same run: \`sh -c /bin/true\`, curl alone against the socket, \`node -e 0\` and the CLI's cold \`--version\`. ${RUNS} rounds, each running every case once in turn (interleaved), after one untimed run of each; p50 and p95 in ms.`,
      '',
      '| case | runs | p50 ms | p95 ms |',
      '|---|---:|---:|---:|',
      ...cases.map((k) => row(k.name)),
      '',
      `Per hook, script against old path (p50): ${notes.join('; ')}. The slowest hook script's p50 is ${worst.toFixed(1)} ms (goal: 30 ms); curl alone with a round trip takes ${curl.toFixed(1)} ms (${Math.round((curl / worst) * 100)}% of it), the rest is the sh client's own processes (sed on the config file, env, grep, cat) and the daemon's work. Times are wall times on a shared machine; the p95 column shows how loaded it was during the run.`,
      '',
    ];
    process.stdout.write(out.join('\n'));
  } finally {
    await d.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`hook bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
