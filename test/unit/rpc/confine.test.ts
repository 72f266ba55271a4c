import { strict as assert } from 'node:assert';
import { closeSync, mkdirSync, openSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { confinementProblem } from '../../../plugin/rpc/methods/confine';
import { BinaryFactsCache, resolveQemuBinary } from '../../../plugin/process/qemu-binary';
import { GkdError } from '../../../plugin/errors';

describe('confinement of host paths (storage roots)', () => {
  // Ganeti's layout in miniature: links in instance-disks lead into file storage.
  const base = mkdtempSync(join(tmpdir(), 'gkd-confine-'));
  const links = join(base, 'instance-disks');
  const store = join(base, 'file-storage');
  const outside = join(base, 'outside');
  for (const d of [links, store, outside]) mkdirSync(d);
  writeFileSync(join(store, 'uuid.file.disk0'), '');
  writeFileSync(join(outside, 'secret'), '');
  symlinkSync(join(store, 'uuid.file.disk0'), join(links, 'inst1:0'));
  symlinkSync(join(outside, 'secret'), join(links, 'inst1:1'));
  symlinkSync(outside, join(store, 'escape'));
  const roots = [links, `${store}/`];

  it('accepts a link in one root that leads into another (the normal Ganeti case)', async () => {
    assert.equal(await confinementProblem(join(links, 'inst1:0'), roots), undefined);
    assert.equal(await confinementProblem(join(store, 'uuid.file.disk0'), roots), undefined);
  });

  it('accepts a path that does not exist yet, resolved as far as it exists', async () => {
    assert.equal(await confinementProblem(join(links, 'inst2:0'), roots), undefined);
  });

  it('refuses a link that leads out of every root, naming where it leads', async () => {
    assert.match(await confinementProblem(join(links, 'inst1:1'), roots) ?? '', /symlink to ".*outside\/secret"/);
    assert.match(await confinementProblem(join(store, 'escape', 'secret'), roots) ?? '', /symlink/);
  });

  it('refuses paths outside the roots, relative paths, dot segments and NUL bytes', async () => {
    assert.match(await confinementProblem('/etc/hostname', roots) ?? '', /storage roots/);
    assert.match(await confinementProblem('../../../etc/hostname', roots) ?? '', /absolute/);
    assert.match(await confinementProblem(`${links}/../outside/secret`, roots) ?? '', /"\." or "\.\."/);
    assert.match(await confinementProblem(`${links}/inst1:0\0x`, roots) ?? '', /NUL/);
    // A sibling that merely shares the prefix is not inside.
    assert.match(await confinementProblem(`${links}-evil/x`, roots) ?? '', /storage roots/);
  });

  it('under /dev/: a block device path passes, /dev/fd (a way into /proc/self/fd) does not', async () => {
    assert.equal(await confinementProblem('/dev/fdset/3', ['/dev/']), undefined);
    const fd = openSync(join(outside, 'secret'), 'r');
    try {
      assert.match(await confinementProblem(`/dev/fd/${fd}`, ['/dev/']) ?? '', /symlink to ".*outside\/secret"/);
    } finally {
      closeSync(fd);
    }
  });
});

describe('QEMU binary allow-list', () => {
  const allowed = ['/usr/bin/qemu-system-x86_64', '/opt/qemu/bin/qemu-system-x86_64'];
  it('maps an unset kvm_path and Ganeti\'s default /usr/bin/kvm to the first configured binary', () => {
    assert.equal(resolveQemuBinary(undefined, allowed, 'hvparams.kvm_path'), allowed[0]);
    assert.equal(resolveQemuBinary('/usr/bin/kvm', allowed, 'hvparams.kvm_path'), allowed[0]);
    assert.equal(resolveQemuBinary(allowed[1], allowed, 'hvparams.kvm_path'), allowed[1]);
  });
  it('refuses any other binary naming the field', () => {
    assert.throws(() => resolveQemuBinary('/bin/sh', allowed, 'hvparams.kvm_path'),
      (e: GkdError) => e.code === 'GKD_UNSUPPORTED_VALUE' && e.field === 'hvparams.kvm_path' && /qemuBinaries/.test(e.message));
  });
});

describe('BinaryFactsCache', () => {
  it('asks again when the binary changes on disk, and keeps at most maxEntries paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-bincache-'));
    const bin = join(dir, 'qemu');
    writeFileSync(bin, 'v1');
    const cache = new BinaryFactsCache<string>(2);
    let asked = 0;
    const compute = async (): Promise<string> => `answer ${++asked}`;
    assert.equal(await cache.get(bin, compute), 'answer 1');
    assert.equal(await cache.get(bin, compute), 'answer 1');
    writeFileSync(bin, 'version 2, longer');
    assert.equal(await cache.get(bin, compute), 'answer 2');
    for (let i = 0; i < 50; i++) await cache.get(join(dir, `other${i}`), compute);
    assert.equal(cache.size, 2);
  });
});
