/**
 * Hostile input against the real daemon (a child process): values nested
 * far deeper than any real spec, in fields a reply echoes, in batches, in
 * runtime files. Each must be refused with a typed error naming the field,
 * and the daemon must keep serving afterwards.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { RpcClient } from '../../../plugin/rpc';
import { sampleSpec, spawnDaemon, type DaemonProcess } from './daemon-process';

/** JSON text of a value nested `n` arrays deep (built as text: the client's own JSON.stringify would overflow). */
function deepText(n: number): string {
  return '['.repeat(n) + ']'.repeat(n);
}

/** Sends raw frames on one connection and resolves to the parsed replies, in order. */
async function rawCall(socket: string, frame: string): Promise<any> {
  const ws = new WebSocket(`ws+unix://${socket}:/`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  try {
    return await new Promise((resolve, reject) => {
      ws.once('message', (data) => resolve(JSON.parse(String(data))));
      ws.once('close', (code) => reject(new Error(`connection closed (${code}) without a reply`)));
      ws.send(frame);
    });
  } finally {
    ws.close();
  }
}

/** A request frame whose params are `params` with the string "@DEEP@" replaced by a value `depth` deep. */
function frameWithDeep(method: string, params: unknown, depth: number, id: number | string = 1): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, params }).replace('"@DEEP@"', deepText(depth));
}

describe('hostile input (real daemon)', function () {
  this.timeout(60_000);
  let d: DaemonProcess;

  before(async () => {
    d = await spawnDaemon();
  });
  after(async () => {
    await d?.stop();
  });

  async function assertAlive(): Promise<void> {
    const c = await RpcClient.connect(d.socket);
    try {
      const r = await c.call<{ methods: unknown[] }>('rpc.discover');
      assert.ok(r.methods.length > 0);
    } finally {
      await c.close();
    }
    assert.equal(d.child.exitCode, null, `daemon exited: ${d.log().slice(-2000)}`);
  }

  const echoed: Array<[string, (deep: string) => Record<string, unknown>, string]> = [
    ['hvparams.x', (x) => ({ instance: { ...sampleSpec(), hvparams: { x } } }), '/instance/hvparams/x'],
    ['an extra disk field', (x) => {
      const s = sampleSpec() as { disks: Record<string, unknown>[] };
      s.disks[0] = { ...s.disks[0], extra: x };
      return { instance: s };
    }, '/instance/disks/0/extra'],
    ['nicparams', (x) => {
      const s = sampleSpec() as { nics: Record<string, unknown>[] };
      s.nics[0] = { ...s.nics[0], nicparams: { mode: 'bridged', link: 'br0', x } };
      return { instance: s };
    }, '/instance/nics/0/nicparams/x'],
  ];
  for (const [what, params, path] of echoed) {
    it(`refuses a 9 KB request nesting ${what} 4,500 deep with -32602 naming it, and keeps serving`, async () => {
      const frame = frameWithDeep('instance.plan', params('@DEEP@'), 4500);
      const reply = await rawCall(d.socket, frame);
      assert.equal(reply.id, 1);
      assert.equal(reply.error?.code, -32602, JSON.stringify(reply).slice(0, 500));
      assert.ok(String(reply.error.data.errors[0].path).startsWith(path), reply.error.data.errors[0].path);
      assert.match(reply.error.data.errors[0].message, /nested deeper than \d+ levels/);
      await assertAlive();
    });
  }

  it('refuses the same inside a batch, answering every member', async () => {
    const one = frameWithDeep('instance.plan', { instance: { ...sampleSpec(), hvparams: { x: '@DEEP@' } } }, 4500, 7);
    const reply = await rawCall(d.socket, `[${one},{"jsonrpc":"2.0","id":8,"method":"rpc.discover"}]`);
    assert.ok(Array.isArray(reply));
    const byId = new Map(reply.map((r: { id: number }) => [r.id, r]));
    assert.equal((byId.get(7) as any).error.code, -32602);
    assert.ok((byId.get(8) as any).result.methods.length > 0);
    await assertAlive();
  });

  for (const [method, params, path] of [
    ['instance.start', { instance: { ...sampleSpec(), hvparams: { x: '@DEEP@' } } }, '/instance/hvparams/x'],
    ['runtime.convert', { runtime: '@DEEP@', to: '2.10' }, '/runtime'],
    ['migration.accept', { name: 'inst1.example.com', runtime: [[], [], { x: '@DEEP@' }, []], incoming: 'defer' }, '/runtime/2/x'],
  ] as const) {
    it(`${method} with a deep value names the field instead of GKD_INTERNAL`, async () => {
      const reply = await rawCall(d.socket, frameWithDeep(method, params, 5000));
      assert.equal(reply.error?.code, -32602, JSON.stringify(reply).slice(0, 500));
      assert.ok(String(reply.error.data.errors[0].path).startsWith(path), reply.error.data.errors[0].path);
      await assertAlive();
    });
  }

  it('a deep runtime file is refused by name; runtime.list still lists every other file, and FIFOs or directories named *.runtime are reported', async () => {
    const c = await RpcClient.connect(d.socket);
    try {
      await c.call('instance.start', { instance: sampleSpec('good1') });
      writeFileSync(join(d.runtimeDir, 'deep1.runtime'), `[${deepText(4600)}, [], {}, []]\n`);
      mkdirSync(join(d.runtimeDir, 'dir1.runtime'));
      assert.equal(spawnSync('mkfifo', [join(d.runtimeDir, 'fifo1.runtime')]).status, 0);
      await assert.rejects(c.call('runtime.get', { name: 'deep1' }), (e: any) => {
        assert.equal(e.data.code, 'GKD_RUNTIME_INVALID');
        assert.match(e.data.field, /^runtime\[0\]\[0\]/);
        return true;
      });
      const list = await c.call<{ files: Array<{ name: string; format?: string; error?: { code: string } }> }>('runtime.list', {});
      const by = new Map(list.files.map((f) => [f.name, f]));
      assert.equal(by.get('good1')?.format, '2.16');
      assert.equal(by.get('deep1')?.error?.code, 'GKD_RUNTIME_INVALID');
      assert.equal(by.get('dir1')?.error?.code, 'GKD_RUNTIME_IO');
      assert.equal(by.get('fifo1')?.error?.code, 'GKD_RUNTIME_IO');
    } finally {
      await c.close();
    }
    await assertAlive();
  });
});
