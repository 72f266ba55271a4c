/**
 * The hook scripts carry each hook's policy for when the daemon cannot be
 * reached (they apply it themselves when curl fails): it must be the one
 * hook-table.ts gives the daemon and the Node CLI. Also the endpoint's body
 * parser's typed refusals.
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GkdError } from '../../../plugin/errors';
import { failsClosed } from '../../../plugin/cli/hook-run';
import { HOOKS } from '../../../plugin/cli/hook-table';
import { parseHookBody } from '../../../plugin/rpc/hook-endpoint';
import { ROOT } from '../../integration/rpc/daemon-process';

/** The `KEY=value` assignments at the start of a line of a hook script. */
function settings(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^([A-Z_]+)=(\S*)$/gm)) out[m[1] as string] = m[2] as string;
  return out;
}

describe('hook scripts', () => {
  const scripts = readdirSync(join(ROOT, 'hooks')).sort();

  it('exist for exactly the hooks of hook-table.ts', () => {
    assert.deepEqual(scripts, Object.keys(HOOKS).sort());
  });

  for (const name of Object.keys(HOOKS)) {
    it(`${name}: HOOK, WHEN_UNSURE and PER_INSTANCE match hook-table.ts`, () => {
      const def = HOOKS[name]!;
      const s = settings(readFileSync(join(ROOT, 'hooks', name), 'utf8'));
      assert.equal(s.HOOK, name);
      assert.equal(s.WHEN_UNSURE, failsClosed(def) ? 'refuse' : 'pass', `${name}: ${def.phase} hook, whenUnsure ${def.whenUnsure ?? 'refuse'}`);
      assert.equal(s.PER_INSTANCE, def.perInstance ? 'yes' : 'no');
    });
  }
});

describe('parseHookBody()', () => {
  const body = (...records: string[]): Buffer => Buffer.from(records.map((r) => `${r}\0`).join(''));
  const refusal = (b: Buffer): GkdError => {
    try {
      parseHookBody(b);
    } catch (e) {
      assert.ok(e instanceof GkdError);
      assert.equal(e.code, 'GKD_HOOK_REQUEST_INVALID');
      return e;
    }
    assert.fail('accepted');
  };

  it('keeps GANETI_* and GKD_* records, values with = and newlines intact, and drops the rest', () => {
    const env = parseHookBody(body('PATH=/bin', 'GANETI_INSTANCE_NAME=a=b', 'GKD_SOCKET=/s', 'GANETI_X=line1\nline2', 'HOME=/root'));
    assert.deepEqual({ ...env }, { GANETI_INSTANCE_NAME: 'a=b', GKD_SOCKET: '/s', GANETI_X: 'line1\nline2' });
  });

  it('takes a last record without its NUL, and an empty body as an empty environment', () => {
    assert.deepEqual({ ...parseHookBody(Buffer.from('GANETI_A=1\0GANETI_B=2')) }, { GANETI_A: '1', GANETI_B: '2' });
    assert.deepEqual({ ...parseHookBody(Buffer.alloc(0)) }, {});
  });

  it('refuses a record that is not KEY=VALUE, naming it', () => {
    assert.equal(refusal(body('GANETI_A=1', 'no-equals-sign')).field, 'body[1]');
    assert.equal(refusal(body('=value')).field, 'body[0]');
    assert.equal(refusal(Buffer.from('GANETI_A=1\0\0GANETI_B=2')).field, 'body[1]');
  });

  it('refuses a key given twice, naming it', () => {
    assert.equal(refusal(body('GANETI_A=1', 'GANETI_A=2')).field, 'GANETI_A');
  });

  it('does not let a record named __proto__ or constructor reach the environment object', () => {
    const env = parseHookBody(body('__proto__=x', 'GANETI_constructor=y'));
    assert.deepEqual(Object.keys(env), ['GANETI_constructor']);
  });
});
