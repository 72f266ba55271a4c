/**
 * Stale disk link names (Ganeti 3.0 keeps a hot-added disk's link name after
 * an earlier disk is hot-removed; its migration target links by index):
 * found by staleDiskLinks(), fixed on disk by relinkDisks() with real
 * symlinks in a temp dir.
 */
import { strict as assert } from 'node:assert';
import { lstatSync, mkdtempSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GkdError } from '../../../plugin/errors';
import { staleDiskLinks } from '../../../plugin/migration';
import { relinkDisks } from '../../../plugin/migration/relink';
import type { RuntimeV2_16 } from '../../../plugin/types';

const NAME = 'inst1.example.com';

/** A runtime whose disks have these link paths. */
function runtimeWith(paths: string[]): RuntimeV2_16 {
  return [['kvm'], [], {}, paths.map((p, i) => [{ uuid: `uuid-${i}` }, p, null])];
}

describe('staleDiskLinks()', () => {
  const dir = '/var/run/ganeti/instance-disks';

  it('finds a disk named by another index than its position, giving the name a target creates', () => {
    const rt = runtimeWith([`${dir}/${NAME}:0`, `${dir}/${NAME}:2`]);
    assert.deepEqual(staleDiskLinks(rt, NAME), [{ index: 1, uuid: 'uuid-1', path: `${dir}/${NAME}:2`, expected: `${dir}/${NAME}:1` }]);
  });

  it('leaves alone matching names, other instances\' links, paths outside the links dir and non-numeric tails', () => {
    const rt = runtimeWith([`${dir}/${NAME}:0`, `${dir}/other.example.com:5`, '/dev/vg/disk', `${dir}/${NAME}:x`, `${dir}/${NAME}:4`]);
    assert.deepEqual(staleDiskLinks(rt, NAME), [], 'position 4 holds :4, the others are not this instance\'s links');
    assert.deepEqual(staleDiskLinks(runtimeWith([`${dir}/${NAME}.bak:1`]), NAME), []);
  });
});

describe('relinkDisks()', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gkd-relink-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function file(n: string): string {
    const f = join(dir, n);
    writeFileSync(f, n);
    return f;
  }

  it('links the disk under its index, replacing a link to the removed disk, and points the runtime at it', () => {
    const kept = file('disk-a');
    file('removed-b');
    symlinkSync(join(dir, 'disk-0'), join(dir, `${NAME}:0`));
    file('disk-0');
    symlinkSync(join(dir, 'removed-b'), join(dir, `${NAME}:1`)); // the hot-removed disk's link, left behind
    symlinkSync(kept, join(dir, `${NAME}:2`));
    const rt = runtimeWith([join(dir, `${NAME}:0`), join(dir, `${NAME}:2`)]);
    const stale = staleDiskLinks(rt, NAME, dir);
    const r = relinkDisks(rt, stale);
    assert.equal(r.runtime[3][1][1], join(dir, `${NAME}:1`));
    assert.equal(r.runtime[3][0][1], join(dir, `${NAME}:0`));
    assert.equal(rt[3][1][1], join(dir, `${NAME}:2`), 'the input runtime is not changed');
    assert.ok(lstatSync(join(dir, `${NAME}:1`)).isSymbolicLink());
    assert.equal(readlinkSync(join(dir, `${NAME}:1`)), kept, 'the new link points where the old one did');
    assert.equal(realpathSync(join(dir, `${NAME}:2`)), realpathSync(kept), 'the old link stays for the running QEMU');
    assert.deepEqual(staleDiskLinks(r.runtime, NAME, dir), []);
    assert.equal(r.lines.length, 1);
  });

  it('refuses, changing nothing, when the expected name belongs to another disk of the instance', () => {
    const a = file('disk-a');
    const b = file('disk-b');
    symlinkSync(a, join(dir, `${NAME}:0`));
    symlinkSync(a, join(dir, `${NAME}:1`)); // leads to disk 0's file: not a leftover
    symlinkSync(b, join(dir, `${NAME}:2`));
    const rt = runtimeWith([join(dir, `${NAME}:0`), join(dir, `${NAME}:2`)]);
    const stale = staleDiskLinks(rt, NAME, dir);
    assert.equal(stale.length, 1);
    assert.throws(() => relinkDisks(rt, stale), (e: unknown) => e instanceof GkdError && e.code === 'GKD_DRIFT' && /belongs to another disk/.test(e.message));
    assert.equal(readlinkSync(join(dir, `${NAME}:1`)), a, 'nothing was changed');
  });

  it('refuses a disk whose link leads nowhere', () => {
    symlinkSync(join(dir, 'gone'), join(dir, `${NAME}:3`));
    const rt = runtimeWith([join(dir, `${NAME}:3`)]);
    assert.throws(() => relinkDisks(rt, staleDiskLinks(rt, NAME, dir)), (e: unknown) => e instanceof GkdError && e.code === 'GKD_DRIFT' && /leads nowhere/.test(e.message));
  });
});
