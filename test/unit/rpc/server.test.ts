import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { WebSocket } from 'ws';
import { loadConfig } from '../../../plugin/config';
import { GkdError } from '../../../plugin/errors';
import { RpcClient, RpcCallError, startDaemon, type Daemon, type RpcMethod } from '../../../plugin/rpc';
import { MAX_BATCH, MAX_BUFFERED_BYTES, MAX_INFLIGHT_PER_CLIENT } from '../../../plugin/rpc/server';

const ANY = { type: 'object' };
const aborted: string[] = [];

/** Methods only these tests register. */
const EXTRA: RpcMethod[] = [
  {
    name: 'test.sleep', summary: 'waits ms, or until the call is aborted', schema: ANY,
    handler: (p, ctx) => new Promise((resolve, reject) => {
      const t = setTimeout(() => resolve({ slept: p.ms }), Number(p.ms));
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(t);
        aborted.push(String(p.tag));
        reject(new GkdError('GKD_SHUTTING_DOWN', 'Call aborted'));
      });
    }),
  },
  { name: 'test.big', summary: 'a 1 MiB answer', schema: ANY, handler: () => 'x'.repeat(1024 * 1024) },
  { name: 'test.fail', summary: 'domain error', schema: ANY, handler: () => { throw new GkdError('GKD_CAPACITY', 'Cannot place disk "disk-1": no free slot', { field: 'disks[0]' }); } },
  { name: 'test.crash', summary: 'bug', schema: ANY, handler: () => { throw new TypeError('secret internal detail at /srv/x.js:12'); } },
  { name: 'test.unserialisable', summary: 'a result JSON cannot encode', schema: ANY, handler: () => ({ n: BigInt(1) }) },
  {
    name: 'test.notify', summary: 'notifies', schema: ANY,
    handler: (_p, ctx) => {
      ctx.notify(ctx.client, 'migration.progress', { percent: 50 });
      ctx.notify('all', 'device.removed', { id: 'disk-1' });
      return 'done';
    },
  },
];

function rawSocket(path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${path}:/`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function exchange(ws: WebSocket, frame: string): Promise<unknown> {
  return new Promise((resolve) => {
    ws.once('message', (d) => resolve(JSON.parse(d.toString())));
    ws.send(frame);
  });
}

/**
 * A WebSocket client on a raw socket that, after the handshake, only writes:
 * it never reads what the daemon sends.
 */
async function nonReadingClient(path: string): Promise<Socket> {
  const s = connect(path);
  await new Promise((r) => s.once('connect', r));
  s.write('GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await new Promise<void>((resolve) => {
    let head = '';
    const onData = (b: Buffer): void => {
      head += b.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      s.pause();
      resolve();
    };
    s.on('data', onData);
  });
  return s;
}

/** One masked client→server text frame. */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len])
    : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([head, mask, body]);
}

describe('RpcServer (in process)', () => {
  let daemon: Daemon;
  let socket: string;
  let logLines: Record<string, unknown>[];

  beforeEach(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-srv-'));
    socket = join(dir, 'rpc.sock');
    const config = loadConfig({ env: {}, overrides: { socket, runtimeDir: join(dir, 'conf'), runDir: join(dir, 'run') } });
    logLines = [];
    const sink = { write: (l: string): void => void logLines.push(JSON.parse(l) as Record<string, unknown>) };
    daemon = await startDaemon(config, { logger: pino({ level: 'warn' }, sink), extraMethods: EXTRA });
  });
  afterEach(async () => {
    await daemon.close(500);
  });

  it('answers envelope errors with -32700, -32600 and -32601, and keeps the connection', async () => {
    const ws = await rawSocket(socket);
    assert.deepEqual(await exchange(ws, '{"jsonrpc":"2.0",'), { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
    assert.equal(((await exchange(ws, '5')) as { error: { code: number } }).error.code, -32600);
    assert.equal(((await exchange(ws, '[]')) as { error: { code: number } }).error.code, -32600);
    const wrongVersion = (await exchange(ws, '{"jsonrpc":"1.0","method":"rpc.discover","id":7}')) as { id: number; error: { code: number } };
    assert.deepEqual([wrongVersion.id, wrongVersion.error.code], [7, -32600]);
    const unknown = (await exchange(ws, '{"jsonrpc":"2.0","method":"no.such","id":8}')) as { error: { code: number } };
    assert.equal(unknown.error.code, -32601);
    const byPosition = (await exchange(ws, '{"jsonrpc":"2.0","method":"rpc.discover","params":[1],"id":9}')) as { error: { code: number } };
    assert.equal(byPosition.error.code, -32602);
    const batch = (await exchange(ws, '[{"jsonrpc":"2.0","method":"rpc.discover","id":1},{"x":1},{"jsonrpc":"2.0","method":"rpc.discover"}]')) as { id: unknown; error?: { code: number } }[];
    assert.equal(batch.length, 2);
    assert.equal(batch[1]?.error?.code, -32600);
    ws.close();
  });

  it('answers a result it cannot serialise with GKD_INTERNAL for that id, in a batch too, and keeps serving', async () => {
    const ws = await rawSocket(socket);
    const one = (await exchange(ws, '{"jsonrpc":"2.0","method":"test.unserialisable","id":3}')) as { id: number; error: { data: { code: string } } };
    assert.deepEqual([one.id, one.error.data.code], [3, 'GKD_INTERNAL']);
    const batch = (await exchange(ws, '[{"jsonrpc":"2.0","method":"test.unserialisable","id":4},{"jsonrpc":"2.0","method":"rpc.discover","id":5}]')) as Array<{ id: number; result?: unknown; error?: { data: { code: string } } }>;
    assert.equal(batch.find((r) => r.id === 4)?.error?.data.code, 'GKD_INTERNAL');
    assert.ok(batch.find((r) => r.id === 5)?.result !== undefined);
    assert.ok(logLines.some((l) => l.msg === 'cannot serialise reply'));
    ws.close();
  });

  it('maps GkdError to its numeric code with the string code in data, and hides internal errors', async () => {
    const c = await RpcClient.connect(socket);
    await assert.rejects(c.call('test.fail'), (e: RpcCallError) => {
      assert.equal(e.code, 1003);
      assert.deepEqual(e.data, { code: 'GKD_CAPACITY', message: e.message, field: 'disks[0]' });
      return true;
    });
    await assert.rejects(c.call('test.crash'), (e: RpcCallError) => {
      assert.equal(e.code, 6001);
      assert.equal((e.data as { code: string }).code, 'GKD_INTERNAL');
      assert.doesNotMatch(JSON.stringify(e.toJSON()), /secret|\/srv\/|at /);
      return true;
    });
    assert.equal(((await c.call('rpc.discover')) as { methods: unknown[] }).methods.length > 5, true);
    await c.close();
  });

  it('delivers notifications to the caller and to every client', async () => {
    const a = await RpcClient.connect(socket);
    const b = await RpcClient.connect(socket);
    const gotA: string[] = [];
    const gotB: string[] = [];
    a.on('notification', (m: string) => gotA.push(m));
    b.on('notification', (m: string) => gotB.push(m));
    assert.equal(await a.call('test.notify'), 'done');
    await b.call('rpc.discover'); // b's notification was sent before this answer
    assert.deepEqual(gotA, ['migration.progress', 'device.removed']);
    assert.deepEqual(gotB, ['device.removed']);
    await a.close();
    await b.close();
  });

  it('aborts the call of a client that disconnects mid-call and keeps serving others', async () => {
    const ws = await rawSocket(socket);
    ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'test.sleep', params: { ms: 5000, tag: 'gone' }, id: 1 }));
    await new Promise((r) => setTimeout(r, 50));
    ws.terminate();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(aborted.includes('gone'));
    const c = await RpcClient.connect(socket);
    await c.call('rpc.discover');
    await c.close();
  });

  it('close() lets in-flight calls finish, refuses new ones with 6002, then removes the socket', async () => {
    const c = await RpcClient.connect(socket);
    const inflight = c.call('test.sleep', { ms: 300, tag: 'drain' });
    await new Promise((r) => setTimeout(r, 50));
    const closing = daemon.close(5000);
    await assert.rejects(c.call('rpc.discover'), (e: RpcCallError) => e.code === 6002);
    assert.deepEqual(await inflight, { slept: 300 });
    await closing;
    assert.equal(existsSync(socket), false);
  });

  it('close() aborts calls still running when the grace period ends', async () => {
    const c = await RpcClient.connect(socket);
    const slow = c.call('test.sleep', { ms: 30_000, tag: 'grace' }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await daemon.close(200);
    // The 200 ms grace, not the call's 30 s.
    assert.ok(Date.now() - t0 < 20_000);
    assert.ok(aborted.includes('grace'));
    assert.ok((await slow) instanceof Error);
  });

  it('refuses a batch over the limit whole with -32600 and keeps serving that client and others', async () => {
    const ws = await rawSocket(socket);
    const call = (i: number): unknown => ({ jsonrpc: '2.0', method: 'rpc.discover', id: i });
    const tooBig = (await exchange(ws, JSON.stringify(Array.from({ length: MAX_BATCH + 1 }, (_, i) => call(i))))) as { id: unknown; error: { code: number; message: string } };
    assert.equal(tooBig.error.code, -32600);
    assert.match(tooBig.error.message, new RegExp(`holds ${MAX_BATCH + 1} requests and the limit is ${MAX_BATCH}`));
    const atLimit = (await exchange(ws, JSON.stringify(Array.from({ length: MAX_BATCH }, (_, i) => call(i))))) as unknown[];
    assert.equal(atLimit.length, MAX_BATCH);
    const c = await RpcClient.connect(socket);
    await c.call('rpc.discover');
    await c.close();
    ws.close();
  });

  it('answers calls over the per-connection in-flight limit with GKD_OVERLOADED, not a hang', async () => {
    const c = await RpcClient.connect(socket);
    const slow = Array.from({ length: MAX_INFLIGHT_PER_CLIENT }, (_, i) => c.call('test.sleep', { ms: 300, tag: `load${i}` }));
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(c.call('rpc.discover'), (e: RpcCallError) => {
      assert.equal(e.code, 6004);
      assert.equal((e.data as { code: string }).code, 'GKD_OVERLOADED');
      assert.match(e.message, /^Wait for an answer before calling again: .*64/);
      return true;
    });
    // Another connection is not affected, and the first one recovers once answers come.
    const other = await RpcClient.connect(socket);
    await other.call('rpc.discover');
    await other.close();
    await Promise.all(slow);
    await c.call('rpc.discover');
    await c.close();
  });

  it('disconnects a client that does not read its replies (1008) and keeps serving others', async () => {
    const s = await nonReadingClient(socket);
    let closed = false;
    s.on('close', () => (closed = true));
    s.on('error', () => undefined);
    // Each answer is 1 MiB; well past the 8 MiB limit once the socket buffers are full.
    for (let i = 0; i < 24 && !closed; i++) {
      s.write(frame(JSON.stringify({ jsonrpc: '2.0', method: 'test.big', id: i })));
      await new Promise((r) => setTimeout(r, 20));
    }
    const deadline = Date.now() + 10_000;
    while (!logLines.some((l) => l.msg === 'client does not read its replies, disconnecting') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const line = logLines.find((l) => l.msg === 'client does not read its replies, disconnecting');
    assert.ok(line, 'the daemon dropped the client');
    assert.ok((line.bufferedBytes as number) > MAX_BUFFERED_BYTES);
    // The daemon destroys the socket even though the client never reads up to the close frame.
    s.resume();
    while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(closed, 'the connection was closed');
    const c = await RpcClient.connect(socket);
    await c.call('rpc.discover');
    await c.close();
  });
});
