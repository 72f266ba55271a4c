/**
 * A hook against a daemon that accepts the call and never answers: bounded
 * by hookTimeoutMs, pre hooks fail closed, post hooks fail open; through
 * `kvm-devices hook` (a WebSocket call that gets no reply) and through the
 * hook script (an HTTP request that gets no answer, bounded by hookTimeoutMs
 * plus the 5 s connect allowance).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { GANETI_ENV } from './ganeti-env';
import { MAIN, ROOT, tempDir } from './daemon-process';

function runHook(name: string, env: Record<string, string>, via: 'cli' | 'script' = 'cli'): Promise<{ status: number | null; out: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const [cmd, args] = via === 'cli' ? [process.execPath, [MAIN, 'hook', name]] : [join(ROOT, 'hooks', name), []];
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (status) => resolve({ status, out, ms: Date.now() - t0 }));
  });
}

describe('hooks against a daemon that never answers', function () {
  this.timeout(30_000);
  let http: Server;
  let wss: WebSocketServer;
  let socket: string;
  const received: string[] = [];

  before(async () => {
    socket = join(tempDir('gkd-hang-'), 'rpc.sock');
    http = createServer();
    wss = new WebSocketServer({ server: http });
    wss.on('connection', (ws) => ws.on('message', (d) => received.push(String(JSON.parse(d.toString()).method))));
    await new Promise<void>((resolve) => http.listen(socket, resolve));
  });
  after(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
    await new Promise((r) => http.close(r));
  });

  const env = (name: string): Record<string, string> => ({
    ...GANETI_ENV, PATH: process.env.PATH ?? '/usr/bin:/bin', GANETI_HOOKS_PATH: name.replace(/-(pre|post)$/, ''),
    GANETI_HOOKS_PHASE: name.endsWith('-pre') ? 'pre' : 'post', GKD_CONFIG: '', GKD_SOCKET: socket, GKD_HOOK_TIMEOUT_MS: '700',
  });

  it('a pre hook fails closed after hookTimeoutMs', async () => {
    const r = await runHook('instance-add-pre', env('instance-add-pre'));
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /refused: Cannot get an answer from the daemon: no reply to "instance\.plan" within 700 ms \(pre hook: failing closed\)/);
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
    assert.ok(received.includes('instance.plan'), 'the call reached the server');
  });

  it('a post hook fails open after hookTimeoutMs', async () => {
    const r = await runHook('instance-stop-post', env('instance-stop-post'));
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /ok: Cannot get an answer from the daemon: no reply to "instance\.cleanup" within 700 ms \(post hook: failing open\)/);
  });

  it('the hook script: a pre hook fails closed, a post hook fails open, when its request gets no answer', async () => {
    const pre = await runHook('instance-migrate-pre', env('instance-migrate-pre'), 'script');
    assert.equal(pre.status, 1, pre.out);
    assert.match(pre.out, /^kvm-devices instance-migrate-pre: refused: Cannot get an answer from the daemon: no answer to hook "instance-migrate-pre" within 5700 ms \(pre hook: failing closed\)\n$/);
    const post = await runHook('instance-stop-post', env('instance-stop-post'), 'script');
    assert.equal(post.status, 0, post.out);
    assert.match(post.out, /ok: Cannot get an answer from the daemon: no answer to hook "instance-stop-post" within 5700 ms \(post hook: failing open\)/);
  });
});
