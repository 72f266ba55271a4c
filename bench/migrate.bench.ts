/**
 * Live migration latency: `startMigration` (from the call to a running
 * target) against a bare QMP `migrate` on the same pair of QEMU processes'
 * kind, in the same run, rounds interleaved.
 *
 * One running source (SeaBIOS idling, no guest: -m 128, two SCSI disks on
 * virtio-scsi-pci and a NIC). Each sample gets a fresh target from
 * `acceptMigration` (not timed). Bare: `migrate`, then the target's RESUME
 * event (armed first). startMigration adds the lock, the drift check (QOM,
 * query-block), capabilities and parameters, the progress loop and the
 * target verdict. Between samples the target quits and the source is
 * resumed with `cont` (it sits in postmigrate; the target must be gone first
 * so the image locks are free).
 *
 * Run: `npx tsc -p . && node dist/bench/migrate.bench.js [samplesPerRound]`;
 * prints its BENCHMARKS.md section.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpConnections } from '../plugin/hotplug';
import { acceptMigration, startMigration, type MigrationContext } from '../plugin/migration';
import { buildArgv, planInstance } from '../plugin/planner';
import { launchQemu, type QemuProcess } from '../plugin/process';
import { prepareRunDir } from '../plugin/process/host-facts';
import { RuntimeStore } from '../plugin/runtime';
import type { InstanceSpec } from '../plugin/types';
import { QEMU_BINARY } from '../test/helpers/qemu';
import { fixed, mdTable, numberArg, progress, runSection } from './markdown';

const ROUNDS = 3;
const NAME = 'bench1.example.com';

export interface MigrateBenchRow {
  name: string;
  samples: number;
  medianMs: number;
  p95Ms: number;
}

function spec(dir: string): InstanceSpec {
  const disks = [0, 1].map((i) => {
    const path = join(dir, `d${i}.raw`);
    writeFileSync(path, Buffer.alloc(1 << 20));
    return { uuid: `${(0xd0000000 + i).toString(16)}-0000-4000-8000-000000000000`, mode: 'rw' as const, path };
  });
  return {
    name: NAME,
    uuid: '4b6e0a2c-1f0e-4c1b-9a51-0d2f7c0e8b11',
    hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', migration_bandwidth: 10_000, migration_downtime: 100 },
    beparams: { maxmem: 128, vcpus: 1 },
    disks,
    nics: [{ uuid: 'e0000000-0000-4000-8000-000000000000', mac: 'aa:00:00:00:00:01', backend: { type: 'user' } }],
  };
}

export async function runMigrateBench(perRound = 5): Promise<{ rows: MigrateBenchRow[]; ratio: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-bench-mig-'));
  const connections = new QmpConnections();
  const node = (label: string): MigrationContext => {
    const runDir = join(dir, label);
    prepareRunDir(runDir);
    mkdirSync(join(runDir, 'conf'));
    return {
      store: new RuntimeStore(join(runDir, 'conf')), connections, qmpSocket: (n) => join(runDir, 'ctrl', `${n}.qmp`), node: { accel: 'tcg', runDir },
      // The QEMU the tests use, as for the source below.
      qemuBinary: () => QEMU_BINARY,
    };
  };
  const src = node('src');
  const dst = node('dst');
  const plan = planInstance(spec(dir));
  await src.store.write(NAME, plan.runtime);
  const argv = buildArgv(plan.runtime, { accel: 'tcg', runDir: join(dir, 'src'), qmp: src.qmpSocket(NAME), serials: [], nicBackends: plan.backends });
  argv[0] = QEMU_BINARY;
  const vm = await launchQemu(argv, { qmpSocket: join(dir, 'bare.qmp') });
  // The same parameters for both series (startMigration would set them on its first run).
  await vm.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 10_000 * 1024 * 1024, 'downtime-limit': 100 });
  const samples = { ours: [] as number[], bare: [] as number[] };
  let seq = 0;

  const target = async (): Promise<{ proc: QemuProcess; qmp: string; uri: string }> => {
    const i = seq++;
    const uri = `unix:${join(dir, `m${i}.sock`)}`;
    const r = await acceptMigration(dst, { name: NAME, runtime: plan.runtime, incoming: uri, qmp: join(dir, `t${i}.qmp`), launch: true, build: { serials: [], nicBackends: plan.backends } });
    return { proc: r.process as QemuProcess, qmp: r.qmp, uri };
  };
  const settle = async (t: QemuProcess): Promise<void> => {
    await t.stop();
    // The target node's runtime file goes with its QEMU: acceptMigration refuses a name that has one.
    await dst.store.remove(NAME);
    await vm.qmp.execute('cont');
  };
  const ours = async (keep: boolean): Promise<void> => {
    const t = await target();
    const t0 = process.hrtime.bigint();
    const r = await startMigration(src, { name: NAME, uri: t.uri, targetQmp: t.qmp });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!r.target.confirmed || r.target.status !== 'running') throw new Error(`not confirmed: ${JSON.stringify(r)}`);
    if (keep) samples.ours.push(ms);
    await settle(t.proc);
  };
  const bare = async (keep: boolean): Promise<void> => {
    const t = await target();
    const resumed = t.proc.qmp.expectEvent('RESUME', undefined, 30_000);
    const t0 = process.hrtime.bigint();
    await vm.qmp.execute('migrate', { uri: t.uri });
    await resumed;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (keep) samples.bare.push(ms);
    await settle(t.proc);
  };

  try {
    await ours(false);
    await bare(false);
    for (let r = 0; r < ROUNDS; r++) {
      progress('migrate', `round ${r + 1} of ${ROUNDS}`);
      for (let i = 0; i < perRound; i++) {
        // Alternate the order so neither series always runs right after a target start.
        if ((r + i) % 2 === 0) {
          await ours(true);
          await bare(true);
        } else {
          await bare(true);
          await ours(true);
        }
      }
    }
    const rows = [row('`startMigration`, call to target running', samples.ours), row('bare `migrate` + target `RESUME`', samples.bare)];
    return { rows, ratio: round2(rows[0].medianMs / rows[1].medianMs) };
  } finally {
    await connections.closeAll();
    await vm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function row(name: string, s: number[]): MigrateBenchRow {
  const sorted = [...s].sort((a, b) => a - b);
  const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return { name, samples: s.length, medianMs: round2(q(0.5)), p95Ms: round2(q(0.95)) };
}

runSection(module, async () => {
  const perRound = numberArg(0, 5);
  const { rows, ratio } = await runMigrateBench(perRound);
  const [ours, bare] = rows;
  return [
    '## Migration',
    '',
    `\`bench/migrate.bench.ts\`: time from the call to a running target, on one machine over a unix socket. One running source (pc, \`-m 128\`, SeaBIOS idling with nothing to boot, two scsi-hd disks on virtio-scsi-pci and a NIC, \`max-bandwidth\` 10000 MiB/s); every sample gets a fresh target from \`acceptMigration\` (not timed). \`startMigration\` with the target's QMP socket, against a bare \`migrate\` on the source's second monitor plus the target's \`RESUME\` event (armed first) as the baseline. Between samples the target quits and the source is resumed. ${ROUNDS} interleaved rounds of ${perRound} samples per series after one warm-up sample each.`,
    '',
    mdTable(['series', 'samples', 'median ms', 'p95 ms'], rows.map((x) => [x.name, x.samples, x.medianMs, x.p95Ms])),
    '',
    `\`startMigration\` / bare, medians: ${fixed(ratio, 2)}.`,
    '',
    `* The ${fixed(ours.medianMs - bare.medianMs, 1)} ms between the medians is what makes a migration safe and observable: the drift check reads every peripheral over QOM (a \`qom-list\` and a few \`qom-get\`s per device), \`query-block\` and the NICs' MACs, so it grows with the device count and not with RAM size; then \`query-status\`/\`query-migrate\` on both sides, capabilities and parameters, the lock and the runtime-file read.`,
    '* The progress loop is woken by `MIGRATION` events and the target verdict by the target\'s `RESUME`, so nothing waits for a poll interval on the success path.',
    '* For a real guest the transfer dominates: its RAM moves at the configured `max-bandwidth` (or QEMU\'s default limit), which this idle 128 MiB source does not show.',
  ].join('\n');
});
