/**
 * A migration from a QEMU that Ganeti 3.0 started to a target this project
 * builds from Ganeti's runtime file. The source runs exactly the argv
 * Ganeti ran (test/fixtures/runtime/ganeti-3.0/launch-argv.txt, made
 * runnable here: TCG, test paths, user networking for its taps), with the
 * devices Ganeti hot-added later added the way Ganeti adds them (a disk
 * passed as a descriptor). The target must accept the stream, run, and
 * verify clean; the source must verify clean before (Ganeti's default
 * devices are not drift).
 */
import { strict as assert } from 'node:assert';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { acceptMigration, startMigration, verifyInstance } from '../../../plugin/migration';
import type { QmpClient } from '../../../plugin/qmp';
import type { RuntimeV2_16 } from '../../../plugin/types';
import { ganetiRebuild } from '../../helpers/ganeti';
import { ganetiFixture, ganetiHotAddDisk, localRuntime, qmpSteps, runnableLaunchArgv, spawnQemuWithFds, type FdQemu, type GanetiPlaces } from '../../helpers/ganeti-qemu';
import { migrationLab, userBackends, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { makeImage } from '../../helpers/plan-vm';
import { QEMU_BINARY, useQemuCleanup } from '../../helpers/qemu';

/** Changes to a fixture: its runtime file, and the argv Ganeti would have run for it. */
interface Variant {
  runtime?: (rt: RuntimeV2_16) => void;
  argv?: (argv: string[]) => string[];
}

function dropOption(cmd: Array<string | number>, option: string, value: string): void {
  const i = cmd.findIndex((x, k) => x === option && cmd[k + 1] === value);
  assert.ok(i >= 0, `${option} ${value} in kvm_cmd`);
  cmd.splice(i, 2);
}

interface PciDevice {
  bus: number;
  slot: number;
  function: number;
  class_info: { class: number };
  id: { vendor: number; device: number };
  qdev_id: string;
}

/** Every PCI function QEMU has: slot, function, vendor:device, class and id. */
async function pciFunctions(qmp: QmpClient): Promise<string[]> {
  const buses = await qmp.execute<Array<{ devices: PciDevice[] }>>('query-pci');
  return buses.flatMap((b) => b.devices.map((d) => `${d.bus}:${d.slot}.${d.function} ${d.id.vendor.toString(16)}:${d.id.device.toString(16)} class ${d.class_info.class.toString(16)} ${d.qdev_id}`)).sort();
}

describe('migrating a QEMU Ganeti 3.0 started, to a target built from its runtime file', function () {
  this.timeout(90_000);
  useQemuCleanup();
  let lab: MigrationLab;
  let src: TestNode;
  let dst: TestNode;
  let source: FdQemu | undefined;
  beforeEach(() => {
    lab = migrationLab();
    src = lab.node('src');
    dst = lab.node('dst');
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    await lab.cleanup();
  });

  /** Starts the source as Ganeti did, adds what Ganeti hot-added, and writes Ganeti's runtime file on the source node. */
  async function ganetiSource(name: string, variant: Variant = {}): Promise<{ runtime: RuntimeV2_16; at: GanetiPlaces }> {
    const fx = ganetiFixture(name);
    const links = join(lab.root, 'instance-disks');
    mkdirSync(links, { recursive: true });
    const at: GanetiPlaces = { link: (i) => join(links, `${name}:${i}`), qmp: src.qmpSocket(name), raw: join(src.dir, 'kvmd.qmp'), pidFile: join(src.runDir, 'pid', name) };
    const runtime = localRuntime(fx.text, QEMU_BINARY, at) as unknown as RuntimeV2_16;
    variant.runtime?.(runtime);
    // Disks live on storage both nodes reach (Ganeti's shared file storage): one image per disk, one link each.
    runtime[3].forEach((_, i) => symlinkSync(makeImage(join(lab.root, `${name}-disk${i}.img`), 16 << 20), at.link(i)));
    const argv = variant.argv?.(runnableLaunchArgv(fx.launch, QEMU_BINARY, at)) ?? runnableLaunchArgv(fx.launch, QEMU_BINARY, at);
    source = await spawnQemuWithFds(argv, [], at.qmp);
    // What Ganeti hot-added after the start: the entries its argv does not have.
    const started = new Set(argv.flatMap((a) => [...a.matchAll(/id=([a-z]+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4})/g)].map((m) => m[1])));
    runtime[3].forEach(([d], i) => {
      const h = d.hvinfo as { id: string };
      if (!started.has(h.id)) ganetiHotAddDisk(at.raw, at.link(i), h);
    });
    for (const n of runtime[1]) {
      const h = n.hvinfo as Record<string, unknown>;
      if (started.has(String(h.id))) continue;
      qmpSteps(at.raw, [{ execute: 'netdev_add', arguments: { type: 'user', id: h.id } }, { execute: 'device_add', arguments: { ...h, netdev: h.id, mac: n.mac } }]);
    }
    qmpSteps(at.raw, [{ execute: 'cont' }]);
    await src.store.write(name, runtime);
    return { runtime, at };
  }

  it('inst1: a hot-added disk the runtime lost is repaired from its Ganeti spec (the link, never /dev/fdset/N), Ganeti reads the result, and the migration works', async () => {
    const name = 'inst1.example.com';
    const { runtime, at } = await ganetiSource(name);
    // The runtime as it would be had Ganeti's write after the hot-add been lost.
    const [lost, ...kept] = [runtime[3][1], runtime[3][0]];
    const partial = structuredClone(runtime);
    partial[3] = kept;
    await src.store.write(name, partial);
    const before = await verifyInstance(src.ctx, name);
    assert.deepEqual(before.differences.map((d) => [d.device, d.kind]), [[(lost[0].hvinfo as { id: string }).id, 'missing-in-runtime']]);
    // The caller knows the disk as Ganeti's configuration has it: every Ganeti field, and the link as path.
    const { hvinfo: _h, ...known } = lost[0];
    const r = await verifyInstance(src.ctx, name, { repair: { known: { disks: [{ ...(known as { uuid: string }), path: at.link(1) }] } } });
    assert.equal(r.clean, true, JSON.stringify(r));
    const text = readFileSync(src.store.path(name), 'utf8');
    assert.doesNotMatch(text, /\/dev\/fdset/);
    const repaired = (await src.store.read(name)).upgraded;
    // Recorded as Ganeti recorded it, field for field.
    assert.deepEqual(repaired[3][1], lost);
    const g = ganetiRebuild(text);
    assert.deepEqual(g.disks.map((d) => d.hvinfo), runtime[3].map(([d]) => d.hvinfo));

    const incoming = `unix:${join(lab.root, 'mig.sock')}`;
    await acceptMigration(dst.ctx, { name, runtime: repaired, incoming, launch: true, build: { nicBackends: userBackends(repaired) } });
    assert.equal((await startMigration(src.ctx, { name, uri: incoming, targetQmp: dst.qmpSocket(name) })).status, 'completed');
    assert.deepEqual(await verifyInstance(dst.ctx, name), { clean: true, differences: [], repaired: false, leaks: [] });
  });

  const cases: Array<[string, string, Variant]> = [
    ['inst1.example.com', 'paravirtual disks, a disk and a NIC hot-added', {}],
    ['inst2.example.com', 'scsi-hd on virtio-scsi-pci, a disk hot-added', {}],
    ['inst3.example.com', 'scsi-hd on lsi', {}],
    ['inst3.example.com', 'scsi-hd on lsi, a runtime whose kvm_cmd lacks the controller', { runtime: (rt) => dropOption(rt[0], '-device', 'lsi,id=scsi') }],
    [
      'inst3.example.com', 'without NICs (Ganeti passes -net none, outside kvm_cmd)',
      {
        runtime: (rt) => (rt[1] = []),
        argv: (a) => {
          const out = a.filter((x, i) => !(x.startsWith('type=user,id=nic-') || a[i + 1]?.startsWith('type=user,id=nic-') || x.startsWith('virtio-net-pci,') || a[i + 1]?.startsWith('virtio-net-pci,')));
          out.push('-net', 'none');
          return out;
        },
      },
    ],
  ];
  for (const [name, what, variant] of cases) {
    it(`${name} (${what}): the source verifies clean, the target accepts the stream, runs, has the same PCI devices and verifies clean`, async () => {
      const { runtime } = await ganetiSource(name, variant);
      const v = await verifyInstance(src.ctx, name);
      assert.deepEqual(v, { clean: true, differences: [], repaired: false, leaks: [] }, JSON.stringify(v.differences, null, 1));

      const incoming = `unix:${join(lab.root, 'mig.sock')}`;
      const accepted = await acceptMigration(dst.ctx, { name, runtime: structuredClone(runtime), incoming, launch: true, build: { nicBackends: userBackends(runtime) } });
      assert.equal(accepted.status, 'inmigrate');
      const result = await startMigration(src.ctx, { name, uri: incoming, targetQmp: dst.qmpSocket(name) });
      assert.equal(result.status, 'completed', JSON.stringify(result));
      assert.equal((await dst.pool.use(dst.qmpSocket(name), (t) => t.execute<{ status: string }>('query-status'))).status, 'running');
      // QEMU ignores a device only the target has: the PCI functions of both sides must be the same.
      assert.deepEqual(await dst.pool.use(dst.qmpSocket(name), pciFunctions), await src.pool.use(src.qmpSocket(name), pciFunctions));
      assert.deepEqual(await verifyInstance(dst.ctx, name), { clean: true, differences: [], repaired: false, leaks: [] });
    });
  }
});
