/**
 * settleTarget(): after a failed migration, may the source be resumed? A
 * table of target states, with a scripted QMP peer (what real QEMU does in
 * each case is covered by test/qemu/migration/migrate-failure.test.ts).
 */
import { strict as assert } from 'node:assert';
import { GkdError } from '../../../plugin/errors';
import { settleTarget, type QmpPeer } from '../../../plugin/migration/failure';

interface Peer extends QmpPeer {
  commands: string[];
}

/** A target answering `status` / `migration`; `quit` closes it unless `stubborn`; `silent`: every command times out. */
function peer(status: string, migration?: string, opts: { stubborn?: boolean; silent?: boolean } = {}): Peer {
  let closed = false;
  const commands: string[] = [];
  const execute = async (command: string): Promise<unknown> => {
    commands.push(command);
    if (closed) throw new GkdError('GKD_QMP_CLOSED', 'closed');
    if (opts.silent) throw new GkdError('GKD_QMP_TIMEOUT', `QEMU did not answer "${command}"`);
    if (command === 'query-status') return { status };
    if (command === 'query-migrate') return migration === undefined ? {} : { status: migration };
    if (command === 'quit') {
      if (!opts.stubborn) setTimeout(() => (closed = true), 5);
      return {};
    }
    throw new Error(`unexpected ${command}`);
  };
  return { commands, execute: execute as QmpPeer['execute'], get closed() { return closed; } };
}

const FAST = { quitMs: 200, pollMs: 5 };

describe('settleTarget()', () => {
  it('without a target socket: safe after the source failed, ambiguous after it may have handed over', async () => {
    assert.equal((await settleTarget(undefined, undefined, false, undefined, FAST)).safe, true);
    const t = await settleTarget(undefined, undefined, true, undefined, FAST);
    assert.equal(t.safe, false);
    assert.match(t.detail, /no target QMP socket was given, so nothing shows whether the target took over/);
  });

  it('a target that exited is safe and is not sent anything', async () => {
    const p = peer('running');
    const t = await settleTarget(p, { ok: false, status: 'exited', detail: 'x' }, true, '/t.qmp', FAST);
    assert.deepEqual([t.safe, t.status, t.stopped, p.commands], [true, 'exited', false, []]);
  });

  it('a target whose incoming migration failed is quit and safe', async () => {
    const p = peer('inmigrate', 'failed');
    const t = await settleTarget(p, undefined, true, '/t.qmp', FAST);
    assert.deepEqual([t.safe, t.status, t.stopped], [true, 'exited', true]);
    assert.ok(p.commands.includes('quit'));
  });

  it('a target still waiting: safe after the source failed, left alone and ambiguous after "completed"', async () => {
    const before = peer('inmigrate', 'active');
    assert.equal((await settleTarget(before, undefined, false, '/t.qmp', FAST)).safe, true);
    const after = peer('inmigrate', 'active');
    const t = await settleTarget(after, undefined, true, '/t.qmp', FAST);
    assert.equal(t.safe, false);
    assert.ok(!after.commands.includes('quit'), 'a QEMU that may not be the real target is never quit');
    assert.match(t.detail, /^the target at "\/t\.qmp" is still "inmigrate", so the state may have gone to another QEMU that now runs the guest/);
  });

  for (const [status, handedOver] of [['running', true], ['paused', true], ['running', false], ['postmigrate', true]] as const) {
    it(`a reachable "${status}" target (source ${handedOver ? 'may have handed over' : 'failed'}) is quit first, then safe`, async () => {
      const p = peer(status, 'completed');
      const t = await settleTarget(p, undefined, handedOver, '/t.qmp', FAST);
      assert.deepEqual([t.safe, t.stopped, t.status], [true, true, 'exited']);
      assert.match(t.detail, new RegExp(`^the target at "/t\\.qmp" was "${status}" and was stopped \\(quit\\) so that only the source runs the guest$`));
    });
  }

  it('a target that will not exit, or does not answer, is ambiguous', async () => {
    const stubborn = await settleTarget(peer('running', 'completed', { stubborn: true }), undefined, true, '/t.qmp', FAST);
    assert.deepEqual([stubborn.safe, stubborn.detail], [false, 'the target at "/t.qmp" is "running" and did not exit when asked to quit']);
    const silent = await settleTarget(peer('running', undefined, { silent: true }), undefined, true, '/t.qmp', FAST);
    assert.deepEqual([silent.safe, silent.status], [false, 'unknown']);
  });
});
