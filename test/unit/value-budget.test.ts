import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { checkBudget, pointerToDotted } from '../../plugin/value-budget';

describe('value budget', () => {
  const budget = { maxDepth: 4, maxNodes: 50, maxString: 10 };

  it('names the first place nested too deep, whatever the depth (no recursion)', () => {
    const v = JSON.parse(`{"a":[{"b":${'['.repeat(200_000)}${']'.repeat(200_000)}}]}`);
    assert.deepEqual(checkBudget(v, budget), { path: '/a/0/b/0', message: 'is nested deeper than 4 levels' });
    assert.equal(checkBudget({ a: [{ b: [] }] }, budget), undefined);
  });

  it('refuses too many elements at the container that holds them, and long strings or keys where they are', () => {
    assert.equal(checkBudget({ x: Array(100).fill(0) }, budget)?.path, '/x');
    assert.equal(checkBudget({ 'a/b~': ['x'.repeat(11)] }, budget)?.path, '/a~1b~0/0');
    assert.match(checkBudget({ ['k'.repeat(11)]: 1 }, budget)?.message ?? '', /key 11 characters/);
  });

  it('accepts every value within the default budget that JSON can hold at depth 6', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => checkBudget(v) === undefined));
  });

  it('dotted fields for GkdError', () => {
    assert.equal(pointerToDotted('/2/x/0', 'runtime'), 'runtime[2].x[0]');
    assert.equal(pointerToDotted('/disks/3/uuid'), 'disks[3].uuid');
  });
});
