/**
 * Disks QEMU opened through a passed descriptor (`/dev/fdset/N`), as Ganeti
 * hot-adds them: instance.verify resolves them to the file they are and
 * compares that with the runtime's path through its symlink, and repair
 * never records QEMU's name for a descriptor.
 */
import { strict as assert } from 'node:assert';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { GkdError } from '../../../plugin/errors';
import { verifyInstance } from '../../../plugin/migration';
import { buildArgv, diskEntry, planInstance } from '../../../plugin/planner';
import type { HvInfo, RuntimeV2_16 } from '../../../plugin/types';
import { ganetiHotAddDisk, qmpSteps, spawnQemuWithFds, type FdQemu } from '../../helpers/ganeti-qemu';
import { migrationLab, type MigrationLab, type TestNode } from '../../helpers/migration-pair';
import { makeImage } from '../../helpers/plan-vm';
import { QEMU_BINARY } from '../../helpers/qemu';
import { makeSpec, uuidN } from '../../helpers/specs';

const NAME = 'inst1.example.com';

describe('disks opened through a passed descriptor (/dev/fdset/N)', function () {
  this.timeout(60_000);
  let lab: MigrationLab;
  let node: TestNode;
  let vm: FdQemu | undefined;
  let links: string;
  let raw: string;
  beforeEach(() => {
    lab = migrationLab();
    node = lab.node('src');
    links = join(node.dir, 'instance-disks');
    mkdirSync(links);
    raw = join(node.dir, 'raw.qmp');
  });
  afterEach(async () => {
    await vm?.stop();
    vm = undefined;
    await lab.cleanup();
  });

  /** Ganeti's layout: the runtime names `<links>/NAME:i`, a symlink to the disk's file. */
  function link(i: number, file: string): string {
    const l = join(links, `${NAME}:${i}`);
    symlinkSync(file, l);
    return l;
  }

  /** Plans one paravirtual disk at link 0 and starts QEMU with the disk passed as descriptor 3 in fd set 5. */
  async function start(): Promise<{ runtime: RuntimeV2_16; images: string[] }> {
    const images = [0, 1, 2].map((i) => makeImage(join(node.dir, `disk${i}.img`)));
    const spec = makeSpec({ disks: 1, nics: 0, hvparams: { kvm_path: QEMU_BINARY }, diskPath: () => link(0, images[0]) });
    const runtime = planInstance(spec).runtime;
    await node.store.write(NAME, runtime);
    const argv = buildArgv(runtime, { accel: 'tcg', runDir: node.runDir, qmp: node.qmpSocket(NAME), paused: true })
      .map((a) => a.replace(`file.filename=${runtime[3][0][1]}`, 'file.filename=/dev/fdset/5'));
    assert.ok(argv.some((a) => a.includes('/dev/fdset/5')));
    argv.push('-add-fd', 'fd=3,set=5', '-qmp', `unix:${raw},server=on,wait=off`);
    vm = await spawnQemuWithFds(argv, [images[0]], node.qmpSocket(NAME));
    return { runtime, images };
  }

  const hot = (n: number): HvInfo => ({ driver: 'virtio-blk-pci', id: `disk-${uuidN(0x3000 + n).slice(0, 18)}`, bus: 'pci.0', addr: `0x${(0xd + n).toString(16)}` });

  it('verify resolves them to the files they are: clean while paused (the set still lists them) and running (Ganeti emptied it)', async () => {
    const { runtime, images } = await start();
    const block = (await node.pool.use(node.qmpSocket(NAME), (q) => q.execute<Array<{ inserted?: { file?: string } }>>('query-block')))[0];
    assert.equal(block.inserted?.file, '/dev/fdset/5');
    assert.deepEqual(await verifyInstance(node.ctx, NAME), { clean: true, differences: [], repaired: false, leaks: [] });

    // Ganeti's hot-add of a second disk, recorded as Ganeti records it: the link, not /dev/fdset/N.
    ganetiHotAddDisk(raw, images[1], hot(0));
    const rt = structuredClone(runtime);
    rt[3].push(diskEntry({ uuid: uuidN(0x3000), path: link(1, images[1]) }, hot(0), 1, 'disk'));
    await node.store.write(NAME, rt);
    assert.deepEqual(await verifyInstance(node.ctx, NAME), { clean: true, differences: [], repaired: false, leaks: [] });

    // Once the VM runs, QEMU closes the removed set's descriptor and lists the set empty.
    qmpSteps(raw, [{ execute: 'cont' }]);
    await new Promise((r) => setTimeout(r, 300));
    const sets = qmpSteps(raw, [{ execute: 'query-fdsets' }])[0] as Array<{ 'fdset-id': number; fds: unknown[] }>;
    assert.ok(sets.some((s) => s['fdset-id'] !== 5 && s.fds.length === 0), JSON.stringify(sets));
    assert.deepEqual(await verifyInstance(node.ctx, NAME), { clean: true, differences: [], repaired: false, leaks: [] });

    // The runtime naming another file is drift, whether QEMU still lists the set's descriptor or not.
    const wrong = structuredClone(rt);
    wrong[3][0][1] = link(3, images[2]);
    wrong[3][1][1] = link(4, images[2]);
    await node.store.write(NAME, wrong);
    const v = await verifyInstance(node.ctx, NAME);
    assert.deepEqual(v.differences.map((d) => [d.device, d.kind]), [[String(runtime[3][0][0].hvinfo?.id), 'property'], [hot(0).id, 'property']]);
    assert.match(v.differences[0].detail, /QEMU reads \/dev\/fdset\/5, which is ".*disk0\.img", not ".*disk2\.img"/);
    assert.match(v.differences[1].detail, /QEMU reads \/dev\/fdset\/\d+ and has no descriptor open on ".*disk2\.img"/);
    // Repair may record the file a listed descriptor is open on, never /dev/fdset/N; the emptied set names no file: refused.
    await assert.rejects(verifyInstance(node.ctx, NAME, { repair: true }), (e: GkdError) => e.code === 'GKD_DRIFT' && e.device === hot(0).id && /no real file .*\/dev\/fdset/.test(e.message));
    assert.doesNotMatch(readFileSync(node.store.path(NAME), 'utf8'), /\/dev\/fdset/);
  });

  it('repair records a Ganeti hot-added disk the runtime lacks with its link, never /dev/fdset/N', async () => {
    const { images } = await start();
    const l1 = link(1, images[1]);
    ganetiHotAddDisk(raw, images[1], hot(0));
    qmpSteps(raw, [{ execute: 'cont' }]);
    await new Promise((r) => setTimeout(r, 300));
    const before = await verifyInstance(node.ctx, NAME);
    assert.deepEqual(before.differences.map((d) => [d.device, d.kind]), [[hot(0).id, 'missing-in-runtime']]);
    const r = await verifyInstance(node.ctx, NAME, { repair: { known: { disks: [{ uuid: uuidN(0x3000), path: l1 }] } } });
    assert.equal(r.repaired, true);
    assert.equal(r.clean, true);
    const text = readFileSync(node.store.path(NAME), 'utf8');
    assert.doesNotMatch(text, /\/dev\/fdset/);
    const rt = (await node.store.read(NAME)).upgraded;
    assert.equal(rt[3][1][1], l1);
    assert.deepEqual(await verifyInstance(node.ctx, NAME), { clean: true, differences: [], repaired: false, leaks: [] });
  });
});
