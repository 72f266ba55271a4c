/**
 * QmpConnections on real QEMU: QEMU's -qmp serves one client at a time, so
 * an idle shared connection must give the socket back (it may be Ganeti's
 * own), but never while a command or an event wait is under way.
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `pred`, failing with `what` after a bound far above the idle times used here. */
async function until(pred: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(20);
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

  it('gives the socket back when idle and reconnects on the next get', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections({ idleCloseMs: 800 });
    try {
      const a = await pool.get(sock);
      await a.execute('query-status');
      assert.equal(await otherClientGetsIn(sock, 200), false, 'while held, nobody else gets a greeting');
      await until(() => a.closed, 'the idle connection is closed');
      assert.equal(await otherClientGetsIn(sock), true, 'the socket is free for someone else');
      const b = await pool.get(sock);
      assert.notEqual(b, a);
      assert.equal((await b.execute<{ status: string }>('query-status')).status, 'prelaunch');
    } finally {
      await pool.closeAll();
    }
  });

  it('keeps a connection with an armed event wait (a pending unplug) open past the idle time', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections({ idleCloseMs: 100 });
    try {
      const a = await pool.get(sock);
      const wait = a.expectEvent('DEVICE_DELETED', (d) => d.device === 'nothing', 5_000);
      await sleep(400);
      assert.equal(a.closed, false);
      wait.cancel();
      await until(() => a.closed, 'closed once the wait ended');
    } finally {
      await pool.closeAll();
    }
  });

  it('never closes a connection without idleCloseMs', async () => {
    const sock = await vmWithSharedSocket();
    const pool = new QmpConnections();
    try {
      const a = await pool.get(sock);
      await sleep(300);
      assert.equal(a.closed, false);
      assert.equal(await pool.get(sock), a);
    } finally {
      await pool.closeAll();
    }
  });
});
