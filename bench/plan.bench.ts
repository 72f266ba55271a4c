/**
 * Planner throughput for the largest instance Ganeti allows (16 disks, 8
 * NICs), stage by stage, beside a baseline measured in the same run: a
 * JSON parse + stringify of the same spec, the least any planner must do
 * to read its input and write its output.
 *
 * Run: `npx tsc -p . && node dist/bench/plan.bench.js [seconds-per-series]`;
 * prints its BENCHMARKS.md section.
 */
import { buildArgv, parseInstanceSpec, planInstance } from '../plugin/planner';
import { makeSpec } from '../test/helpers/specs';
import { fixed, mdTable, numberArg, progress, runSection } from './markdown';
import { measureThroughput, type ThroughputRow } from './measure';

export type PlanBenchRow = ThroughputRow & { label: string; stage: string };

const STAGES = ['baseline: JSON.parse + JSON.stringify', 'parseInstanceSpec (ajv)', 'planInstance', 'buildArgv', 'whole plan (parse, plan, build, stringify)'] as const;

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
    const fns: Record<(typeof STAGES)[number], () => unknown> = {
      'baseline: JSON.parse + JSON.stringify': () => JSON.stringify(JSON.parse(text)),
      'parseInstanceSpec (ajv)': () => parseInstanceSpec(JSON.parse(text)),
      planInstance: () => planInstance(spec),
      buildArgv: () => buildArgv(plan.runtime, { accel: 'tcg', nicBackends: plan.backends }),
      'whole plan (parse, plan, build, stringify)': () => {
        const s = parseInstanceSpec(JSON.parse(text));
        const p = planInstance(s);
        return JSON.stringify({ argv: buildArgv(p.runtime, { accel: 'tcg', nicBackends: p.backends }), runtime: p.runtime, devices: p.devices });
      },
    };
    progress('plan', label);
    for (const stage of STAGES) rows.push({ ...measureThroughput(`${label}: ${stage}`, seconds, fns[stage], 100), label, stage });
  }
  return rows;
}

export function planSection(rows: PlanBenchRow[], seconds: number): string {
  const labels = [...new Set(rows.map((r) => r.label))];
  const us = (label: string, stage: string): number => rows.find((r) => r.label === label && r.stage === stage)?.usPerOp ?? NaN;
  const ratios = labels.map((l) => us(l, STAGES[4]) / us(l, STAGES[0]));
  const wholes = labels.map((l) => us(l, STAGES[4]));
  const argvShare = labels.map((l) => us(l, 'buildArgv') / us(l, STAGES[4]));
  return [
    '## Planner',
    '',
    `\`bench/plan.bench.ts\`: plans for the largest instance Ganeti allows (16 disks + 8 NICs; the pc paravirtual case fits only 4 NICs above slot 12), stage by stage, each series run for ${seconds} s after a warm-up of 2000 calls. The baseline, measured in the same run, is \`JSON.parse\` + \`JSON.stringify\` of the same spec: the least any planner must do to read its input and write its output.`,
    '',
    mdTable(['series (16 disks + 8 NICs unless noted)', 'plans/s', 'µs/plan'], rows.map((r) => [r.name, r.perSecond, r.usPerOp])),
    '',
    `* A whole plan (schema check, placement, command line, JSON output) costs ${fixed(Math.min(...ratios), 0)} to ${fixed(Math.max(...ratios), 0)} baseline round trips: ${fixed(Math.min(...wholes), 0)} to ${fixed(Math.max(...wholes), 0)} µs.`,
    `* \`buildArgv\` is ${fixed(Math.min(...argvShare) * 100, 0)} to ${fixed(Math.max(...argvShare) * 100, 0)} % of a whole plan: one \`-blockdev\` dict per disk, flattened with QEMU's comma escaping.`,
  ].join('\n');
}

runSection(module, () => {
  const secs = numberArg(0, 1);
  return planSection(runPlanBench(secs), secs);
});
