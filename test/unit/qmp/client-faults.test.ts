/**
 * QmpClient against a fake QMP peer on a Unix socket.
 *
 * The fake peer exists only to inject faults real QEMU cannot be made to show
 * on demand: replies split at arbitrary bytes or joined with events, events
 * before the greeting, garbage, EOF in the middle of a reply, silence,
 * oversize messages, replies out of order. Everything QEMU does show is
 * tested against real QEMU in test/qemu/qmp/client.test.ts.
 */

import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GkdError, type ErrorCode } from '../../../plugin/errors';
import { QmpClient, type QmpConnectOptions, type QmpEvent } from '../../../plugin/qmp';

const GREETING = { QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' }, capabilities: ['oob'] } };
const line = (m: unknown): string => `${JSON.stringify(m)}\r\n`;
const event = (name: string, data?: Record<string, unknown>): Record<string, unknown> => ({
  timestamp: { seconds: 1, microseconds: 2 },
  event: name,
  ...(data === undefined ? {} : { data }),
});

interface Request {
  execute: string;
  id: number;
  arguments?: Record<string, unknown>;
}

/** Server side of one connection: read the client's requests, write raw bytes. */
class PeerConn {
  readonly socket: Socket;
  #buf = '';
  #lines: string[] = [];
  #waiting: ((l: string) => void) | undefined;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buf += d;
      let i: number;
      while ((i = this.#buf.indexOf('\n')) !== -1) {
        this.#lines.push(this.#buf.slice(0, i));
        this.#buf = this.#buf.slice(i + 1);
      }
      this.#flush();
    });
    socket.on('error', () => undefined);
  }

  #flush(): void {
    if (this.#waiting !== undefined && this.#lines.length > 0) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w(this.#lines.shift() as string);
    }
  }

  /** Next request the client sent, parsed. */
  request(): Promise<Request> {
    return new Promise((resolve) => {
      this.#waiting = (l) => resolve(JSON.parse(l) as Request);
      this.#flush();
    });
  }

  /** Write raw text in one write. */
  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Write text one byte per write, yielding to the event loop in between. */
  async sendBytewise(text: string): Promise<void> {
    for (const b of Buffer.from(text, 'utf8')) {
      this.socket.write(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Greeting, then answer qmp_capabilities. */
  async handshake(before = ''): Promise<void> {
    this.send(before + line(GREETING));
    const req = await this.request();
    assert.equal(req.execute, 'qmp_capabilities');
    this.send(line({ return: {}, id: req.id }));
  }
}

class FakePeer {
  readonly path: string;
  readonly #dir: string;
  readonly #server: Server;
  readonly #conns: PeerConn[] = [];
  #accepting: ((c: PeerConn) => void)[] = [];

  private constructor(dir: string, server: Server) {
    this.#dir = dir;
    this.path = join(dir, 'qmp.sock');
    this.#server = server;
    server.on('connection', (s) => {
      const c = new PeerConn(s);
      this.#conns.push(c);
      const next = this.#accepting.shift();
      if (next) next(c);
    });
  }

  static async start(): Promise<FakePeer> {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-fakeqmp-'));
    const peer = new FakePeer(dir, createServer());
    await new Promise<void>((r) => peer.#server.listen(peer.path, r));
    return peer;
  }

  accept(): Promise<PeerConn> {
    const ready = this.#conns.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((r) => this.#accepting.push((c) => r(this.#conns.splice(this.#conns.indexOf(c), 1)[0] as PeerConn)));
  }

  /** Connect a client and complete the handshake; `before` is sent ahead of the greeting. */
  async connected(options: QmpConnectOptions = {}, before = ''): Promise<[QmpClient, PeerConn]> {
    const conn = this.accept().then(async (c) => (await c.handshake(before), c));
    return Promise.all([QmpClient.connect(this.path, options), conn]);
  }

  async stop(): Promise<void> {
    for (const c of this.#conns) c.socket.destroy();
    await new Promise((r) => this.#server.close(r));
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<GkdError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof GkdError, `expected GkdError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('QmpClient against a fake peer', () => {
  let peer: FakePeer;
  const clients: QmpClient[] = [];
  const track = ([c, p]: [QmpClient, PeerConn]): [QmpClient, PeerConn] => (clients.push(c), [c, p]);

  beforeEach(async () => {
    peer = await FakePeer.start();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await peer.stop();
  });

  it('connect() with a bad option refuses it and leaves no connection behind', async () => {
    const conn = peer.accept();
    await assert.rejects(QmpClient.connect(peer.path, { maxMessageBytes: 1 }), RangeError);
    const c = await conn;
    // The peer sees the client go: its side reads the end of the stream.
    await new Promise<void>((resolve) => {
      if (c.socket.readableEnded || c.socket.destroyed) resolve();
      else c.socket.once('close', () => resolve());
    });
    assert.ok(c.socket.destroyed || c.socket.readableEnded);
  });

  it('connect() delivers events sent before the greeting and before the capabilities reply', async () => {
    const seen: string[] = [];
    const conn = peer.accept().then(async (c) => {
      c.send(line(event('EARLY')) + line(GREETING));
      const req = await c.request();
      c.send(line(event('BETWEEN', { n: 1 })) + line({ return: {}, id: req.id }));
      return c;
    });
    const connecting = QmpClient.connect(peer.path, { onEvent: (e) => seen.push(`${e.event}:${JSON.stringify(e.data)}`) });
    const [client] = track([await connecting, await conn]);
    assert.deepEqual(seen, ['EARLY:{}', 'BETWEEN:{"n":1}']);
    assert.deepEqual(client.version, { major: 7, minor: 2, micro: 22, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' });
    assert.deepEqual(client.capabilities, ['oob']);
  });

  it('connect() asks for oob and, when the monitor refuses it, negotiates again without it', async () => {
    // Real QEMU offers oob on every socket monitor; only a fake peer can refuse it.
    const asked: Array<Record<string, unknown> | undefined> = [];
    const conn = peer.accept().then(async (c) => {
      c.send(line({ QMP: { ...GREETING.QMP, capabilities: [] } }));
      const first = await c.request();
      asked.push(first.arguments);
      c.send(line({ error: { class: 'GenericError', desc: "Capability 'oob' not available" }, id: first.id }));
      const second = await c.request();
      asked.push(second.arguments);
      assert.equal(second.execute, 'qmp_capabilities');
      c.send(line({ return: {}, id: second.id }));
      return c;
    });
    const [client, c] = track([await QmpClient.connect(peer.path), await conn]);
    assert.deepEqual(asked, [{ enable: ['oob'] }, undefined]);
    assert.equal(client.oob, false);
    const p = client.execute<{ status: string }>('query-status');
    const req = await c.request();
    c.send(line({ return: { status: 'running' }, id: req.id }));
    assert.equal((await p).status, 'running');
  });

  it('connect() with oob agreed reports it; with oob: false it never asks', async () => {
    const [agreed] = track(await peer.connected());
    assert.equal(agreed.oob, true);
    const conn = peer.accept().then(async (c) => {
      c.send(line(GREETING));
      const req = await c.request();
      c.send(line({ return: {}, id: req.id }));
      return req;
    });
    const plain = await QmpClient.connect(peer.path, { oob: false });
    clients.push(plain);
    const req = await conn;
    assert.equal(req.execute, 'qmp_capabilities');
    assert.equal(req.arguments, undefined);
    assert.equal(plain.oob, false);
  });

  it('execute() resolves a reply delivered one byte at a time', async () => {
    const [client, conn] = track(await peer.connected());
    const p = client.execute('query-status');
    const req = await conn.request();
    await conn.sendBytewise(line({ return: { status: 'prelaunch', 'é€': '😀' }, id: req.id }));
    assert.deepEqual(await p, { status: 'prelaunch', 'é€': '😀' });
  });

  it('execute() matches joined replies by id, out of order, with events in between', async () => {
    const [client, conn] = track(await peer.connected());
    const events: QmpEvent[] = [];
    client.on('event', (e) => events.push(e));
    const a = client.execute('query-a');
    const b = client.execute('query-b');
    const ra = await conn.request();
    const rb = await conn.request();
    conn.send(line(event('X')) + line({ return: 'B', id: rb.id }) + line(event('Y', { k: 'v' })) + line({ return: 'A', id: ra.id }));
    assert.deepEqual(await Promise.all([a, b]), ['A', 'B']);
    assert.deepEqual(events.map((e) => [e.event, e.data]), [['X', {}], ['Y', { k: 'v' }]]);
  });

  it('execute() writes many concurrent requests as whole lines, in call order', async () => {
    const [client, conn] = track(await peer.connected());
    const calls = Array.from({ length: 50 }, (_, i) => client.execute('echo', { i, pad: 'z'.repeat(3000) }));
    const reqs: Request[] = [];
    for (let i = 0; i < 50; i++) reqs.push(await conn.request());
    assert.deepEqual(reqs.map((r) => r.arguments?.i), Array.from({ length: 50 }, (_, i) => i));
    conn.send(reqs.reverse().map((r) => line({ return: r.arguments?.i, id: r.id })).join(''));
    assert.deepEqual(await Promise.all(calls), Array.from({ length: 50 }, (_, i) => i));
  });

  it('execute() turns a QEMU error into GKD_QMP_COMMAND with class and desc', async () => {
    const [client, conn] = track(await peer.connected());
    const p = client.execute('device_del', { id: 'nope' });
    const req = await conn.request();
    conn.send(line({ id: req.id, error: { class: 'DeviceNotFound', desc: "Device 'nope' not found" } }));
    const err = await rejectsWith(p, 'GKD_QMP_COMMAND', /^Cannot run QMP command "device_del": Device 'nope' not found$/);
    assert.deepEqual(err.data, { command: 'device_del', class: 'DeviceNotFound', desc: "Device 'nope' not found" });
    assert.equal(err.device, 'nope');
  });

  it('execute() gives an id-less error (QEMU could not parse the request) to the oldest command', async () => {
    const [client, conn] = track(await peer.connected());
    const p = client.execute('first');
    const q = client.execute('second');
    await conn.request();
    const r2 = await conn.request();
    conn.send(line({ error: { class: 'GenericError', desc: 'JSON parse error' } }) + line({ return: 2, id: r2.id }));
    await rejectsWith(p, 'GKD_QMP_COMMAND', /JSON parse error/);
    assert.equal(await q, 2);
  });

  it('execute() does not give an id-less error to a younger command when an older one timed out unanswered', async () => {
    const [client, conn] = track(await peer.connected({ timeoutMs: 5000 }));
    const p = client.execute('first', undefined, { timeoutMs: 50 });
    await conn.request();
    await rejectsWith(p, 'GKD_QMP_TIMEOUT', /"first"/);
    const q = client.execute('second');
    const r2 = await conn.request();
    // The id-less error answers "first" (QEMU replies in order): "second" must not take it.
    conn.send(line({ error: { class: 'GenericError', desc: 'JSON parse error' } }) + line({ return: 2, id: r2.id }));
    assert.equal(await q, 2);
    assert.equal(client.closed, false);
  });

  it('an id-less error while no command is waiting is a protocol fault', async () => {
    const [client, conn] = track(await peer.connected());
    const closed = new Promise<GkdError | undefined>((r) => client.on('close', r));
    await new Promise((r) => setTimeout(r, 10));
    conn.send(line({ error: { class: 'GenericError', desc: 'JSON parse error' } }));
    const err = await closed;
    assert.equal(err?.code, 'GKD_QMP_PROTOCOL');
    assert.match(err?.message ?? '', /an id-less reply while no command is waiting/);
  });

  it('execute() rejects pending commands with GKD_QMP_CLOSED on EOF in the middle of a reply', async () => {
    const [client, conn] = track(await peer.connected());
    const closed = new Promise<GkdError | undefined>((r) => client.on('close', r));
    const p = client.execute('query-pci');
    const q = client.execute('query-block');
    const req = await conn.request();
    conn.send(`{"return": [{"bus": 0, "devices": [`);
    await new Promise((r) => setTimeout(r, 10));
    conn.socket.end();
    await Promise.all([
      rejectsWith(p, 'GKD_QMP_CLOSED', /^Cannot run QMP command "query-pci": QEMU closed the connection in the middle of a message/),
      rejectsWith(q, 'GKD_QMP_CLOSED'),
    ]);
    assert.equal((await closed)?.code, 'GKD_QMP_CLOSED');
    assert.equal(client.closed, true);
    await rejectsWith(client.execute('query-status'), 'GKD_QMP_CLOSED', /the connection is closed/);
    void req;
  });

  it('execute() times out with GKD_QMP_TIMEOUT, ignores the late reply, and the connection stays usable', async () => {
    const [client, conn] = track(await peer.connected({ timeoutMs: 120_000 }));
    const started = Date.now();
    const p = client.execute('query-slow', undefined, { timeoutMs: 50 });
    const slow = await conn.request();
    const err = await rejectsWith(p, 'GKD_QMP_TIMEOUT', /^Cannot run QMP command "query-slow": no reply within 50 ms$/);
    // The call's own 50 ms, not the connection's 120 s.
    assert.ok(Date.now() - started < 30_000);
    assert.deepEqual(err.data, { command: 'query-slow', timeoutMs: 50 });
    const q = client.execute('query-fast');
    const fast = await conn.request();
    conn.send(line({ return: 'late', id: slow.id }) + line({ return: 'ok', id: fast.id }));
    assert.equal(await q, 'ok');
    assert.equal(client.closed, false);
  });

  it('a garbage line fails pending commands with GKD_QMP_PROTOCOL and closes the connection', async () => {
    const [client, conn] = track(await peer.connected());
    const closed = new Promise<GkdError | undefined>((r) => client.on('close', r));
    const p = client.execute('query-status');
    await conn.request();
    conn.send('Segmentation fault\r\n');
    await rejectsWith(p, 'GKD_QMP_PROTOCOL', /the QMP peer broke the protocol: a line is not JSON: "Segmentation fault"/);
    assert.equal((await closed)?.code, 'GKD_QMP_PROTOCOL');
  });

  it('an oversize message fails pending commands with GKD_QMP_PROTOCOL before it is complete', async () => {
    const [client, conn] = track(await peer.connected({ maxMessageBytes: 1024 }));
    const p = client.execute('query-qmp-schema');
    await conn.request();
    conn.send(`{"return": "${'s'.repeat(4096)}`); // never terminated
    await rejectsWith(p, 'GKD_QMP_PROTOCOL', /a message exceeds 1024 bytes/);
  });

  it('a reply for an id never sent is a protocol fault', async () => {
    const [client, conn] = track(await peer.connected());
    const p = client.execute('query-status');
    await conn.request();
    conn.send(line({ return: {}, id: 'not-mine' }));
    await rejectsWith(p, 'GKD_QMP_PROTOCOL', /reply for unknown id "not-mine"/);
  });

  it('expectEvent() armed before the command catches an event sent before the reply', async () => {
    const [client, conn] = track(await peer.connected());
    const gone = client.expectEvent('DEVICE_DELETED', (d) => d.device === 'disk-1', 1000);
    const p = client.execute('device_del', { id: 'disk-1' });
    const req = await conn.request();
    conn.send(line(event('DEVICE_DELETED', { path: '/machine/peripheral/disk-1/virtio-backend' })) + line(event('DEVICE_DELETED', { device: 'disk-1', path: '/machine/peripheral/disk-1' })) + line({ return: {}, id: req.id }));
    await p;
    assert.deepEqual((await gone).data, { device: 'disk-1', path: '/machine/peripheral/disk-1' });
  });

  it('waitForEvent() called after the reply still sees an event sent right after it', async () => {
    const [client, conn] = track(await peer.connected());
    const p = client.execute('device_del', { id: 'sd-1' });
    const req = await conn.request();
    conn.send(line({ return: {}, id: req.id }) + line(event('DEVICE_DELETED', { device: 'sd-1' })));
    await p;
    const ev = await client.waitForEvent('DEVICE_DELETED', (d) => d.device === 'sd-1', 1000);
    assert.equal(ev.data.device, 'sd-1');
  });

  it('expectEvent() times out with GKD_QMP_TIMEOUT, cancel() rejects with AbortError, close rejects with GKD_QMP_CLOSED', async () => {
    const [client] = track(await peer.connected());
    await rejectsWith(client.expectEvent('NEVER', undefined, 30).promise, 'GKD_QMP_TIMEOUT', /^Cannot wait for event "NEVER": none matched within 30 ms$/);
    const cancelled = client.expectEvent('NEVER', undefined, 5000);
    cancelled.cancel();
    await assert.rejects(cancelled.promise, { name: 'AbortError' });
    client.expectEvent('UNAWAITED', undefined, 20); // must not become an unhandled rejection
    const waiting = client.expectEvent('NEVER', undefined, 5000);
    await client.close();
    await rejectsWith(waiting.promise, 'GKD_QMP_CLOSED', /^Cannot wait for event "NEVER"/);
    await new Promise((r) => setTimeout(r, 40));
  });

  it('close() rejects pending commands with GKD_QMP_CLOSED and emits close without an error', async () => {
    const [client, conn] = track(await peer.connected());
    const closed = new Promise<GkdError | undefined>((r) => client.on('close', r));
    const p = rejectsWith(client.execute('query-status'), 'GKD_QMP_CLOSED', /the client closed the connection/);
    await conn.request();
    await client.close();
    await p;
    assert.equal(await closed, undefined);
  });

  it('commands() is fetched once per connection and hasCommand() uses it', async () => {
    const [client, conn] = track(await peer.connected());
    const list = client.commands();
    const again = client.hasCommand('device_add');
    const req = await conn.request();
    assert.equal(req.execute, 'query-commands');
    conn.send(line({ return: [{ name: 'device_add' }, { name: 'query-pci' }], id: req.id }));
    assert.deepEqual([...(await list)].sort(), ['device_add', 'query-pci']);
    assert.equal(await again, true);
    assert.equal(await client.hasCommand('query-hotpluggable-buses'), false);
  });

  describe('connect()', () => {
    it('fails with GKD_QMP_CONNECT when the socket does not exist', async () => {
      const err = await rejectsWith(QmpClient.connect(join(tmpdir(), 'gkd-no-such-dir', 'qmp.sock')), 'GKD_QMP_CONNECT', /^Cannot connect to QMP socket ".*": connect ENOENT/);
      assert.equal(err.data?.reason, 'ENOENT');
    });

    it('fails with GKD_QMP_CONNECT when the peer never greets (another client holds the monitor)', async () => {
      await rejectsWith(QmpClient.connect(peer.path, { connectTimeoutMs: 60 }), 'GKD_QMP_CONNECT', /no greeting within/);
    });

    it('fails with GKD_QMP_CONNECT when the peer hangs up before the greeting', async () => {
      void peer.accept().then((c) => c.socket.end());
      await rejectsWith(QmpClient.connect(peer.path), 'GKD_QMP_CONNECT', /before the greeting/);
    });

    it('fails with GKD_QMP_PROTOCOL on a reply where the greeting belongs', async () => {
      void peer.accept().then((c) => c.send(line({ return: {} })));
      await rejectsWith(QmpClient.connect(peer.path), 'GKD_QMP_PROTOCOL', /expected the greeting/);
    });

    it('fails with GKD_QMP_PROTOCOL on a greeting without a version', async () => {
      void peer.accept().then((c) => c.send(line({ QMP: { capabilities: [] } })));
      await rejectsWith(QmpClient.connect(peer.path), 'GKD_QMP_PROTOCOL', /bad greeting/);
    });
  });
});
