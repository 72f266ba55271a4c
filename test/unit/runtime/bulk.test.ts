import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BulkFileResult, RuntimeStore, convertAll, convertRuntime, serializeRuntime } from '../../../plugin/runtime';
import { hashDir } from '../../helpers/dir-hash';
import { makeTempDir, putRuntime, removeDir } from '../../helpers/runtime-dir';
import { sample210, sample216, scsi216, tiny210, tiny29 } from '../../helpers/runtime-samples';

function byName(files: BulkFileResult[]): Record<string, BulkFileResult> {
  return Object.fromEntries(files.map((f) => [f.name, f]));
}

function fileHash(dir: string, names: string[]): string {
  return names.map((n) => readFileSync(join(dir, `${n}.runtime`), 'latin1')).join('\0');
}

describe('convertAll()', () => {
  let dir: string;
  let outside: string;
  beforeEach(() => {
    dir = makeTempDir();
    outside = makeTempDir();
  });
  afterEach(() => {
    removeDir(dir);
    removeDir(outside);
  });

  /** Good files of every format plus every kind of bad one. */
  function populate(): void {
    putRuntime(dir, 'v29', tiny29());
    putRuntime(dir, 'v210', JSON.stringify(sample210(), null, 1), true);
    putRuntime(dir, 'v216', sample216());
    putRuntime(dir, 'scsi', scsi216());
    putRuntime(dir, 'era', convertRuntime(tiny210(), '2.16').value);
    const text = serializeRuntime(sample216());
    putRuntime(dir, 'truncated', text.slice(0, 200), true);
    putRuntime(dir, 'members', [[], [], {}, [], []]);
    putRuntime(dir, 'types', [[], [{ uuid: 7, pci: 'x' }], {}, []]);
    const nobus = scsi216();
    delete (nobus[3][0][0].hvinfo as Record<string, unknown>).bus;
    putRuntime(dir, 'nobus', nobus);
    writeFileSync(join(dir, 'huge.runtime'), '');
    truncateSync(join(dir, 'huge.runtime'), 50 * 1000 * 1000);
    writeFileSync(join(outside, 'target'), serializeRuntime(sample210()));
    symlinkSync(join(outside, 'target'), join(dir, 'link.runtime'));
  }
  const BAD = ['truncated', 'members', 'types', 'nobus', 'huge', 'link'];

  it('upgrade-all converts what it can, reports each bad file and leaves it untouched', async () => {
    populate();
    const badBefore = fileHash(dir, BAD.filter((n) => n !== 'link')) + hashDir(outside);
    const seen: string[] = [];
    const report = await convertAll(dir, { to: '2.16', direction: 'upgrade', onFile: (r) => void seen.push(r.name) });
    const r = byName(report.files);
    assert.deepEqual(seen, report.files.map((f) => f.name));
    assert.deepEqual([r.v29.status, r.v210.status, r.v216.status, r.scsi.status, r.era.status], ['converted', 'converted', 'unchanged', 'unchanged', 'unchanged']);
    for (const n of BAD) assert.equal(r[n].status, 'error', n);
    assert.match(r.truncated.message!, /Cannot parse runtime file/);
    assert.match(r.members.message!, /has 5 members/);
    assert.match(r.types.message!, /nics\[0\]\.uuid: must be string/);
    assert.match(r.nobus.message!, /disks\[0\]\.hvinfo: must have required property "bus"/);
    assert.match(r.huge.message!, /over the 16 MiB limit/);
    assert.match(r.link.message!, /it is a symlink to/);
    assert.equal(r.nobus.code, 'GKD_RUNTIME_INVALID');
    assert.deepEqual(report.counts, { converted: 2, unchanged: 3, refused: 0, error: 6 });
    assert.equal(report.ok, false);
    assert.equal(fileHash(dir, BAD.filter((n) => n !== 'link')) + hashDir(outside), badBefore);
    const store = new RuntimeStore(dir);
    assert.equal((await store.read('v29')).format, '2.16');
    assert.equal(readFileSync(join(dir, 'v210.runtime'), 'utf8'), serializeRuntime(convertRuntime(sample210(), '2.16').value));
  });

  it('a dry run changes nothing on disk, good files or bad, and answers "can this node downgrade?"', async () => {
    populate();
    const before = hashDir(dir) + hashDir(outside);
    const report = await convertAll(dir, { to: '2.10', direction: 'downgrade', dryRun: true });
    assert.equal(hashDir(dir) + hashDir(outside), before);
    const r = byName(report.files);
    assert.equal(r.era.status, 'converted');
    assert.equal(r.v216.status, 'refused');
    assert.match(r.v216.message!, /nic "nic-003fc157-66a8-4e6d" would be renamed "hotnic-003fc157-pci-8"/);
    assert.equal(r.scsi.status, 'refused');
    assert.match(r.scsi.message!, /disk "disk-9e7c85f6-b6e5-4243" is on SCSI bus "scsi.0"/);
    assert.equal(r.v210.status, 'unchanged');
    assert.equal(r.v29.status, 'refused');
    assert.match(r.v29.message!, /Cannot downgrade "v29" to 2.10: it is already 2.9, older than 2.10/);
    assert.equal(report.dryRun, true);
    assert.equal(report.ok, false);
  });

  it('downgrade-all writes the lossless files only and reports what --allow-id-change renames', async () => {
    putRuntime(dir, 'era', convertRuntime(tiny210(), '2.16').value);
    putRuntime(dir, 'scsi', scsi216());
    putRuntime(dir, 'v216', sample216());
    const scsiBefore = readFileSync(join(dir, 'scsi.runtime'));
    const report = await convertAll(dir, { to: '2.10', direction: 'downgrade', allowIdChange: true });
    const r = byName(report.files);
    assert.equal(r.era.status, 'converted');
    assert.deepEqual(r.era.changes, []);
    assert.equal(readFileSync(join(dir, 'era.runtime'), 'utf8'), serializeRuntime(tiny210()));
    assert.equal(r.v216.status, 'converted');
    assert.deepEqual(r.v216.changes.map((c) => c.kind), ['renamed', 'renamed', 'renamed']);
    assert.equal(r.scsi.status, 'refused');
    assert.deepEqual(readFileSync(join(dir, 'scsi.runtime')), scsiBefore);
  });

  it('a file that disappears mid-run is reported, nothing is recreated, the rest proceeds', async () => {
    for (const n of ['a', 'b', 'c']) putRuntime(dir, n, sample210());
    const report = await convertAll(dir, {
      to: '2.16',
      direction: 'upgrade',
      onFile: (res) => {
        if (res.name === 'a') unlinkSync(join(dir, 'b.runtime'));
      },
    });
    const r = byName(report.files);
    assert.equal(r.b.status, 'error');
    assert.equal(r.b.code, 'GKD_RUNTIME_NOT_FOUND');
    assert.match(r.b.message!, /no such file/);
    assert.deepEqual([r.a.status, r.c.status], ['converted', 'converted']);
    assert.deepEqual((await new RuntimeStore(dir).list()).sort(), ['a', 'c']);
  });

  it('a busy instance is reported as locked and left alone; the others proceed', async () => {
    putRuntime(dir, 'busy', sample210());
    putRuntime(dir, 'free', sample210());
    const store = new RuntimeStore(dir);
    let report;
    await store.withLock('busy', async () => {
      report = await convertAll(dir, { to: '2.16', direction: 'upgrade', lock: { wait: 100 } });
    });
    const r = byName(report!.files);
    assert.equal(r.busy.status, 'error');
    assert.equal(r.busy.code, 'GKD_RUNTIME_LOCKED');
    assert.equal(r.free.status, 'converted');
    assert.equal((await store.read('busy')).format, '2.10');
  });

  it('removes temp files whose writer is dead before a real run, never a live writer\'s, and none in a dry run', async () => {
    putRuntime(dir, 'v210', sample210());
    const dead = spawnSync(process.execPath, ['-e', '']).pid; // gone once spawnSync returns
    const stale = `.v210.runtime.${dead}.0a1b2c.tmp`;
    const mine = `.v210.runtime.${process.pid}.0a1b2d.tmp`; // a writer in this very process
    const other = '.v210.runtime.1.0a1b2e.tmp'; // pid 1 always exists
    const unrelated = [`.notes.${dead}.0a1b2f.tmp`, `.v210.runtime.${dead}.tmp`];
    for (const n of [stale, mine, other, ...unrelated]) writeFileSync(join(dir, n), 'half a file');
    const dry = await convertAll(dir, { to: '2.16', direction: 'upgrade', dryRun: true });
    assert.deepStrictEqual(dry.removedTempFiles, []);
    assert.ok(readdirSync(dir).includes(stale));
    const r = await convertAll(dir, { to: '2.16', direction: 'upgrade' });
    assert.deepStrictEqual(r.removedTempFiles, [stale]);
    assert.deepStrictEqual(readdirSync(dir).sort(), [...unrelated, other, mine, 'v210.runtime'].sort());
    assert.equal(r.files[0].status, 'converted');
  });

  it('an all-bad dir is byte-for-byte unchanged after a real run', async () => {
    putRuntime(dir, 'scsi', scsi216());
    putRuntime(dir, 'trunc', '[[', true);
    const before = hashDir(dir);
    const report = await convertAll(dir, { to: '2.9', direction: 'downgrade' });
    assert.deepEqual(report.counts, { converted: 0, unchanged: 0, refused: 1, error: 1 });
    assert.equal(hashDir(dir), before);
  });

  const directions: Array<['upgrade' | 'downgrade', '2.16' | '2.10', () => unknown]> = [
    ['upgrade', '2.16', () => tiny210()],
    ['downgrade', '2.10', () => convertRuntime(tiny210(), '2.16').value],
  ];
  for (const [direction, to, good] of directions) {
    it(`${direction}-all reports a FIFO or a directory named *.runtime as an error and converts the others`, async () => {
      putRuntime(dir, 'good', good());
      assert.equal(spawnSync('mkfifo', [join(dir, 'fifo.runtime')]).status, 0);
      mkdirSync(join(dir, 'dir.runtime'));
      for (const dryRun of [true, false]) {
        const r = await convertAll(dir, { to, direction, dryRun });
        const f = byName(r.files);
        assert.equal(f.good?.status, 'converted');
        assert.equal(f.fifo?.status, 'error');
        assert.equal(f.fifo?.code, 'GKD_RUNTIME_IO');
        assert.equal(f.dir?.status, 'error');
        assert.equal(f.dir?.code, 'GKD_RUNTIME_IO');
        assert.equal(r.ok, false);
      }
      assert.equal((await new RuntimeStore(dir).read('good')).format, to);
    });
  }
});
