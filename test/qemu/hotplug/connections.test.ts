/**
 * QmpConnections on real QEMU: QEMU's -qmp serves one client at a time and
 * the socket may be Ganeti's, so a connection lives only as long as the
 * sequence that uses it; a monitor held by someone else is reported busy
 * within the connect budget, naming the socket.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { QmpConnections } from '../../../plugin/hotplug';
import { QmpClient } from '../../../plugin/qmp';
import { QEMU_BINARY, startQemu, useQemuCleanup } from '../../helpers/qemu';

/** True when another client gets a greeting on `sock` within `ms`. */
async function otherClientGetsIn(sock: string, ms = 500): Promise<boolean> {
  try {
    const c = await QmpClient.connect(sock, { connectTimeoutMs: ms });
    await c.close();
    return true;
  } catch {
    return false;
  }
}

describe('QmpConnections', function () {
  this.timeout(30_000);
  useQemuCleanup();

  async function vmWithSharedSocket(): Promise<string> {
    let sock = '';
    await startQemu((dir) => {
      sock = join(dir, 'shared.qmp');
      return [QEMU_BINARY, '-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S', '-qmp', `unix:${sock},server=on,wait=off`];
    });
    return sock;
  }

  it('holds the monitor only while a sequence runs, and gives it back right after', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections();
    try {
      let inside: QmpClient | undefined;
      const status = await pool.use(sock, async (c) => {
        inside = c;
        assert.equal(await otherClientGetsIn(sock, 200), false, 'while held, nobody else gets a greeting');
        return (await c.execute<{ status: string }>('query-status')).status;
      });
      assert.equal(status, 'prelaunch');
      assert.equal(inside?.closed, true, 'closed as soon as the sequence ended');
      assert.equal(pool.isOpen(sock), false);
      assert.equal(await otherClientGetsIn(sock), true, 'the socket is free for someone else');
    } finally {
      await pool.closeAll();
    }
  });

  it('hold() says when the socket is open (before QEMU greets), settles on a failed connect too, and release() gives the monitor back', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections();
    try {
      const held = pool.hold(sock);
      await held.opened;
      assert.equal(pool.isOpen(sock), true, 'the connection is under way once opened settles');
      const status = await pool.use(sock, async (c) => {
        await held.release();
        return (await c.execute<{ status: string }>('query-status')).status;
      });
      assert.equal(status, 'prelaunch');
      assert.equal(pool.isOpen(sock), false, 'closed once the hold and the sequence both ended');
      assert.equal(await otherClientGetsIn(sock), true);
      const missing = pool.hold(join(sock, '..', 'none.qmp'));
      await missing.opened;
      await missing.release();
      assert.equal(pool.tracked, 0, 'a hold on a missing socket leaves nothing behind');
    } finally {
      await pool.closeAll();
    }
  });

  it('with keepOpen (a monitor dedicated to the daemon) keeps one connection across sequences, and connects again after it dropped', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections({ keepOpen: true });
    try {
      let first: QmpClient | undefined;
      await pool.use(sock, async (c) => {
        first = c;
        await c.execute('query-status');
      });
      assert.equal(first?.closed, false, 'still open after the sequence');
      assert.equal(pool.isOpen(sock), true);
      assert.equal(await otherClientGetsIn(sock, 200), false, 'kept: nobody else gets the monitor');
      await pool.use(sock, async (c) => assert.equal(c, first, 'the next sequence reuses it'));
      await first?.close();
      const status = await pool.use(sock, async (c) => {
        assert.notEqual(c, first, 'a dropped connection is replaced');
        return (await c.execute<{ status: string }>('query-status')).status;
      });
      assert.equal(status, 'prelaunch');
    } finally {
      await pool.closeAll();
    }
    assert.equal(pool.isOpen(sock), false);
    assert.equal(await otherClientGetsIn(sock), true, 'closeAll gives the monitor back');
  });

  it('shares one connection between overlapping sequences and closes it after the last', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections();
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let first: QmpClient | undefined;
      const a = pool.use(sock, async (c) => {
        first = c;
        await held;
      });
      const second = await pool.use(sock, async (c) => c);
      assert.equal(second, first, 'the overlapping sequence joined the open connection');
      assert.equal(second.closed, false, 'still open: the first sequence runs');
      release();
      await a;
      assert.equal(second.closed, true);
    } finally {
      await pool.closeAll();
    }
  });

  it('reports GKD_QMP_BUSY naming the socket when another client keeps the monitor past the budget', async () => {
    const sock = await vmWithSharedSocket();
    const ganeti = await QmpClient.connect(sock);
    const pool = new QmpConnections({ connectTimeoutMs: 300 });
    try {
      await assert.rejects(pool.use(sock, (c) => c.execute('query-status')), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'GKD_QMP_BUSY');
        assert.ok(e.message.includes(sock), e.message);
        return true;
      });
      assert.equal((await ganeti.execute<{ status: string }>('query-status')).status, 'prelaunch', 'the holder was not disturbed');
    } finally {
      await ganeti.close();
      await pool.closeAll();
    }
  });

  it('keeps no state for a socket once its sequences ended: many instances, a failed connect, a drain that gave up', async () => {
    const socks = [await vmWithSharedSocket(), await vmWithSharedSocket()];
    const pool = new QmpConnections({ connectTimeoutMs: 500 });
    try {
      for (let i = 0; i < 40; i++) await pool.use(socks[i % 2], (c) => c.execute('query-status'));
      await Promise.all(socks.map((s) => pool.use(s, (c) => c.execute('query-status'))));
      assert.equal(pool.tracked, 0, 'after sequential and overlapping sequences');

      await assert.rejects(pool.use(join(socks[0], '..', 'absent.qmp'), (c) => c.execute('query-status')), /absent\.qmp/);
      assert.equal(pool.tracked, 0, 'after a connect that failed');

      // A shutdown's drain that times out while a sequence still runs, then the sequence ends.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const running = pool.use(socks[1], async () => held);
      await new Promise((r) => setImmediate(r));
      assert.equal(await pool.drain(50), false, 'the drain gave up');
      release();
      await running;
      assert.equal(pool.tracked, 0, 'after a drain that gave up and the sequence it waited for');
    } finally {
      await pool.closeAll();
    }
  });
});
