/**
 * Two "nodes" on one machine for migration tests: each has its own runtime
 * dir, run dir and QMP pool, as a source and a target would. The source
 * starts from the planner's argv with the product's QMP socket (the test
 * helper keeps its own second monitor for raw QMP "behind the plugin's
 * back"); the target is started by `acceptMigration` through the test
 * launcher, so every QEMU dies with the test.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpConnections } from '../../plugin/hotplug';
import type { MigrationContext } from '../../plugin/migration';
import { buildArgv, planInstance, type BuildOptions, type Plan } from '../../plugin/planner';
import { prepareRunDir } from '../../plugin/process/host-facts';
import { RuntimeStore } from '../../plugin/runtime';
import type { InstanceSpec, NicBackend, RuntimeV2_16 } from '../../plugin/types';
import { localize } from './plan-vm';
import { startQemu, type TestQemu } from './qemu';

/** One node: its dirs, store, QMP pool and the context the migration functions take. */
export interface TestNode {
  label: string;
  dir: string;
  runDir: string;
  store: RuntimeStore;
  /** The machine-wide QMP pool (shared by every node of the lab). */
  pool: QmpConnections;
  ctx: MigrationContext;
  /** The product's QMP socket for an instance on this node. */
  qmpSocket(name: string): string;
  /** QEMU processes the node's launcher started. */
  launched: TestQemu[];
}

/** A scratch root for a test's nodes and images; `cleanup()` removes it and closes the pools. */
export interface MigrationLab {
  root: string;
  node(label: string): TestNode;
  cleanup(): Promise<void>;
}

export function migrationLab(): MigrationLab {
  const root = mkdtempSync(join(tmpdir(), 'gkd-mig-'));
  // One pool for the whole machine: QEMU's monitor serves one client at a time, and a test's
  // source may reach the target's socket (startMigration's targetQmp) as well as its own.
  const pool = new QmpConnections();
  return {
    root,
    node(label) {
      const dir = join(root, label);
      const runDir = join(dir, 'run');
      mkdirSync(join(dir, 'conf'), { recursive: true });
      prepareRunDir(runDir);
      const store = new RuntimeStore(join(dir, 'conf'));
      const qmpSocket = (name: string): string => join(runDir, 'ctrl', `${name}.qmp`);
      const launched: TestQemu[] = [];
      const ctx: MigrationContext = {
        store,
        connections: pool,
        qmpSocket,
        node: { accel: 'tcg', runDir },
        launcher: async (argv, opts) => {
          const vm = await startQemu(argv, { qmpSocket: opts.qmpSocket });
          launched.push(vm);
          return vm;
        },
      };
      return { label, dir, runDir, store, pool, ctx, qmpSocket, launched };
    },
    async cleanup() {
      await pool.closeAll();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A source instance: planned, its runtime written on `node`, QEMU started from the runtime alone. */
export interface SourceVm {
  vm: TestQemu;
  plan: Plan;
  name: string;
  argv: string[];
}

/** NIC backends for every NIC of a runtime: QEMU user networking (no taps in tests). */
export function userBackends(runtime: RuntimeV2_16): Record<string, NicBackend> {
  return Object.fromEntries(runtime[1].map((n) => [String(n.uuid), { type: 'user' as const }]));
}

/**
 * Plans `spec` with its disks as images under the node dir, writes the
 * runtime and starts QEMU. `edit` changes the runtime before it is written
 * and built (e.g. Ganeti-era kvm_cmd options).
 */
export async function startSource(
  node: TestNode,
  spec: InstanceSpec,
  opts: Pick<BuildOptions, 'paused' | 'serials'> & { edit?: (runtime: RuntimeV2_16) => void } = {},
): Promise<SourceVm> {
  const local = localize(spec, node.dir, (i) => `${spec.name}-disk${i}.raw`);
  const plan = planInstance(local);
  opts.edit?.(plan.runtime);
  await node.store.write(spec.name, plan.runtime);
  const argv = buildArgv(plan.runtime, {
    accel: 'tcg',
    runDir: node.runDir,
    qmp: node.qmpSocket(spec.name),
    paused: opts.paused ?? true,
    nicBackends: plan.backends,
    ...(opts.serials === undefined ? {} : { serials: opts.serials }),
  });
  const vm = await startQemu(argv);
  return { vm, plan, name: spec.name, argv };
}

/**
 * Registers mocha hooks in the calling `describe`: a fresh lab before each
 * test (handed to `bind`, which picks its nodes), cleaned up after it.
 */
export function useMigrationLab(bind: (lab: MigrationLab) => void): void {
  let lab: MigrationLab | undefined;
  beforeEach(() => {
    lab = migrationLab();
    bind(lab);
  });
  afterEach(async () => lab?.cleanup());
}
