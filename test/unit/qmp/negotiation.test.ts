/**
 * When `qmp_capabilities` leaves: at once when the socket opens, not at the
 * end of the tick, so a caller that runs a long synchronous stretch right
 * after the socket opens (a hot-add takes its lock and writes its files)
 * does not hold it back. The peer is a small monitor in a worker thread,
 * because it must see what arrives while the test's main thread is busy,
 * which no peer on the main thread can; it notes whether the main thread
 * was still in its synchronous stretch when the request came.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { QmpConnections } from '../../../plugin/hotplug/connections';

const PEER = `
const { createServer } = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const busy = new Int32Array(workerData.flags);
const server = createServer((c) => {
  c.write(JSON.stringify({ QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: '' }, capabilities: ['oob'] } }) + '\\r\\n');
  let buf = '';
  c.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\\n')) !== -1; buf = buf.slice(i + 1)) {
      const m = JSON.parse(buf.slice(0, i));
      if (m.execute === 'qmp_capabilities') Atomics.store(busy, 1, Atomics.load(busy, 0) + 1);
      c.write(JSON.stringify({ return: {}, id: m.id }) + '\\r\\n');
    }
  });
  c.on('error', () => undefined);
});
server.listen(workerData.path, () => parentPort.postMessage('listening'));
parentPort.on('message', () => server.close(() => parentPort.close()));
`;

describe('QMP negotiation on a new connection', () => {
  it('writes qmp_capabilities when the socket opens, before the caller\'s next synchronous stretch ends', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-negotiation-'));
    const path = join(dir, 'mon.qmp');
    // [0]: 1 until the main thread's synchronous stretch ends; [1]: that value + 1 when the request came.
    const flags = new SharedArrayBuffer(8);
    const state = new Int32Array(flags);
    const peer = new Worker(PEER, { eval: true, workerData: { path, flags } });
    try {
      await new Promise((resolve) => peer.once('message', resolve));
      const pool = new QmpConnections();
      // Raised before the connection starts, so a request that comes at any point before the
      // stretch ends counts (the peer's thread runs beside this one).
      Atomics.store(state, 0, 1);
      const held = pool.hold(path);
      await held.opened;
      // The caller's synchronous stretch (a hot-add's lock, runtime read and journal entry), made
      // long so that the peer's thread has all the time it needs to read what was sent.
      for (let waited = 0; waited < 50 && Atomics.load(state, 1) === 0; waited++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      Atomics.store(state, 0, 0);
      await pool.use(path, async (q) => q.execute('query-status'));
      await held.release();
      await pool.closeAll();
      assert.equal(Atomics.load(state, 1), 2, 'qmp_capabilities reached the peer while the caller was still busy');
    } finally {
      peer.postMessage('stop');
      await new Promise((resolve) => peer.once('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
