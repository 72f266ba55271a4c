/**
 * Planner throughput for the largest instance Ganeti allows (16 disks, 8
 * NICs), stage by stage, beside a baseline measured in the same run: a
 * JSON parse + stringify of the same spec, the least any planner must do
 * to read its input and write its output.
 *
 * Run: `npx tsc -p . && node dist/bench/plan.bench.js [seconds-per-series]`
 */
import { buildArgv, parseInstanceSpec, planInstance } from '../plugin/planner';
import { makeSpec } from '../test/helpers/specs';
import { measureThroughput, type ThroughputRow } from './measure';

export type PlanBenchRow = ThroughputRow;

const measure = (name: string, seconds: number, fn: () => unknown): PlanBenchRow => measureThroughput(name, seconds, fn, 100);

export function runPlanBench(seconds = 1): PlanBenchRow[] {
  const cases = [
    ['scsi-hd on virtio-scsi-pci', { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 4],
    ['paravirtual, pc', {}, 4],
    ['paravirtual, q35 (auto spare ports)', { machine_version: 'q35' }, 8],
  ] as const;
  const rows: PlanBenchRow[] = [];
  for (const [label, hvparams, nics] of cases) {
    const spec = makeSpec({ disks: 16, nics, hvparams: { ...hvparams } });
    // pc with 16 virtio disks has room for only 4 NICs above slot 12; the SCSI and q35 cases take 8.
    if (label.startsWith('scsi') || label.includes('q35')) spec.nics = makeSpec({ disks: 0, nics: 8 }).nics;
    const text = JSON.stringify(spec);
    const plan = planInstance(spec);
    rows.push(measure(`${label}: baseline JSON.parse + JSON.stringify`, seconds, () => JSON.stringify(JSON.parse(text))));
    rows.push(measure(`${label}: parseInstanceSpec (ajv)`, seconds, () => parseInstanceSpec(JSON.parse(text))));
    rows.push(measure(`${label}: planInstance`, seconds, () => planInstance(spec)));
    rows.push(measure(`${label}: buildArgv`, seconds, () => buildArgv(plan.runtime, { accel: 'tcg', nicBackends: plan.backends })));
    rows.push(
      measure(`${label}: whole plan (parse, plan, build, stringify)`, seconds, () => {
        const s = parseInstanceSpec(JSON.parse(text));
        const p = planInstance(s);
        return JSON.stringify({ argv: buildArgv(p.runtime, { accel: 'tcg', nicBackends: p.backends }), runtime: p.runtime, devices: p.devices });
      }),
    );
  }
  return rows;
}

export function planBenchMarkdown(rows: PlanBenchRow[]): string {
  return ['| series (16 disks + 8 NICs unless noted) | plans/s | µs/plan |', '|---|---|---|', ...rows.map((r) => `| ${r.name} | ${r.perSecond} | ${r.usPerOp} |`)].join('\n');
}

if (require.main === module) {
  const secs = Number(process.argv[2] ?? '1');
  process.stdout.write(`${planBenchMarkdown(runPlanBench(secs))}\n`);
}
