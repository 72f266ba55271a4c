/**
 * Assertions about GkdErrors shared by the test suites.
 */
import { strict as assert } from 'node:assert';
import { GkdError } from '../../plugin/errors';

/** Awaits `p`, which must reject with a GkdError of `code`; returns that error for further checks. */
export async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<GkdError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GkdError, String(e));
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}
