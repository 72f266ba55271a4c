import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fdsetOf, listeningInodes } from '../../../plugin/migration/fd-paths';

describe('fd-paths', () => {
  it('reads /dev/fdset/N and nothing else as an fd set', () => {
    assert.equal(fdsetOf('/dev/fdset/0'), 0);
    assert.equal(fdsetOf('/dev/fdset/12'), 12);
    for (const f of ['/dev/fdset/', '/dev/fdset/1/x', '/srv/d0', 'json:{}', undefined]) assert.equal(fdsetOf(f), undefined, String(f));
  });

  it('finds the listening end of a QMP socket in /proc/net/unix, also through a symlinked directory', () => {
    const root = mkdtempSync(join(tmpdir(), 'gkd-fd-'));
    try {
      mkdirSync(join(root, 'run'));
      symlinkSync(join(root, 'run'), join(root, 'var-run'));
      writeFileSync(join(root, 'run', 'i.qmp'), '');
      const table = [
        'Num       RefCount Protocol Flags    Type St Inode Path',
        `0000000000000000: 00000002 00000000 00010000 0001 01 111 ${join(root, 'var-run', 'i.qmp')}`,
        `0000000000000000: 00000003 00000000 00000000 0001 03 222 ${join(root, 'var-run', 'i.qmp')}`,
        `0000000000000000: 00000002 00000000 00010000 0001 01 333 ${join(root, 'run', 'other.qmp')}`,
        '0000000000000000: 00000002 00000000 00000000 0002 01 444',
      ].join('\n');
      const net = join(root, 'unix');
      writeFileSync(net, table);
      // Only the listening end (flag 0x10000), not the connected one; by its bound path or through the symlink.
      assert.deepEqual([...listeningInodes(join(root, 'var-run', 'i.qmp'), net)], ['111']);
      assert.deepEqual([...listeningInodes(join(root, 'run', 'i.qmp'), net)], ['111']);
      assert.deepEqual([...listeningInodes(join(root, 'run', 'none.qmp'), net)], []);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
