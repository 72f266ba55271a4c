/**
 * When the background finisher announces a removal it has not finished
 * (announceDue, pending.ts): not before the guest has held the device for
 * another unplug timeout unless an attempt failed, then with back-off,
 * never more than ANNOUNCE_MAX_GAP attempts apart. A pure rule: the
 * finisher on real QEMU is covered by test/integration/rpc/pending-removal.test.ts.
 */
import { strict as assert } from 'node:assert';
import { ANNOUNCE_MAX_GAP, announceDue } from '../../../plugin/hotplug';

describe('announceDue (pending removals)', () => {
  it('announces the first time once the guest held the device for another unplug timeout, or at once on a failure', () => {
    assert.equal(announceDue({ attempt: 1, announcedAt: 0, pendingMs: 299 }, false, 300), false);
    assert.equal(announceDue({ attempt: 2, announcedAt: 0, pendingMs: 300 }, false, 300), true);
    assert.equal(announceDue({ attempt: 1, announcedAt: 0, pendingMs: 10 }, true, 300), true);
  });

  it('backs off: the next announcement once the attempts have doubled', () => {
    assert.equal(announceDue({ attempt: 5, announcedAt: 3, pendingMs: 1e6 }, true, 300), false);
    assert.equal(announceDue({ attempt: 6, announcedAt: 3, pendingMs: 1e6 }, false, 300), true);
  });

  it('announces a removal stuck for good at growing intervals, never more than ANNOUNCE_MAX_GAP attempts apart', () => {
    const at: number[] = [];
    let announcedAt = 0;
    for (let attempt = 1; attempt <= 2_000; attempt++) {
      if (announceDue({ attempt, announcedAt, pendingMs: attempt * 1_000 }, attempt % 7 === 0, 300)) {
        at.push(attempt);
        announcedAt = attempt;
      }
    }
    assert.equal(at[0], 1);
    const gaps = at.slice(1).map((a, i) => a - at[i]);
    for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] >= gaps[i - 1], `gap shrank: ${gaps.join(',')}`);
    assert.equal(Math.max(...gaps), ANNOUNCE_MAX_GAP);
    // Of 2000 attempts, a small share is announced (doubling, then once per gap).
    assert.ok(at.length < 2_000 / ANNOUNCE_MAX_GAP + 12, `${at.length} announcements`);
  });
});
