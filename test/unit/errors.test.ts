import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, GkdError } from '../../plugin/errors';

describe('errors', () => {
  it('GkdError carries code, rpc code and field', () => {
    const e = new GkdError('GKD_CAPACITY', 'Cannot place disk "disk-1": no free slot', { field: 'disks[0]' });
    assert.equal(e.code, 'GKD_CAPACITY');
    assert.equal(e.rpcCode, 1003);
    assert.deepEqual(e.toJSON(), { code: 'GKD_CAPACITY', message: e.message, field: 'disks[0]' });
  });

  it('numeric codes are unique and positive', () => {
    const nums = Object.values(ERROR_CODES).map((c) => c.rpc);
    assert.equal(new Set(nums).size, nums.length);
    for (const n of nums) assert.ok(n > 0);
  });

  it('docs/errors.md lists every code with its number', () => {
    const doc = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'errors.md'), 'utf8');
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      assert.match(doc, new RegExp(`\\| \`${code}\` \\| ${info.rpc} \\|`), `${code} missing from docs/errors.md`);
    }
  });
});
