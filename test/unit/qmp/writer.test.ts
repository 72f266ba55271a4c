/**
 * QmpWriter on a real stream (a Writable whose writes are recorded): order,
 * batching of requests issued in the same tick, and failure of every request
 * a failed write carried.
 */
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { QmpWriter } from '../../../plugin/qmp/writer';

/** A Writable that records each chunk it is given; `failNext` fails the next write. */
class Recorder extends Writable {
  readonly chunks: string[] = [];
  failNext = false;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk.toString('utf8'));
    if (this.failNext) {
      this.failNext = false;
      setImmediate(() => cb(new Error('EPIPE')));
    } else setImmediate(() => cb());
  }
}

const lines = (chunks: string[]): string[] => chunks.join('').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { execute: string }).execute);

describe('QmpWriter', () => {
  it('sends requests issued in one tick in a single write, in order', async () => {
    const s = new Recorder();
    const w = new QmpWriter(s);
    await Promise.all([w.write({ execute: 'query-status', id: 1 }), w.write({ execute: 'blockdev-add', id: 2 })]);
    assert.equal(s.chunks.length, 1, 'one write for the pair');
    assert.deepEqual(lines(s.chunks), ['query-status', 'blockdev-add']);
  });

  it('queues what comes while a write is under way and sends it together next, keeping the order', async () => {
    const s = new Recorder();
    const w = new QmpWriter(s);
    const first = w.write({ execute: 'a', id: 1 });
    await new Promise((r) => process.nextTick(r)); // the first write is now under way
    const rest = [w.write({ execute: 'b', id: 2 }), w.write({ execute: 'c', id: 3 })];
    await Promise.all([first, ...rest]);
    assert.deepEqual(s.chunks.map((c) => lines([c])), [['a'], ['b', 'c']]);
  });

  it('a failed write rejects every request it carried, and later requests fail fast on the broken stream', async () => {
    const s = new Recorder();
    s.on('error', () => undefined); // as the QMP reader does for the socket
    const w = new QmpWriter(s);
    s.failNext = true;
    const failed = await Promise.allSettled([w.write({ execute: 'a', id: 1 }), w.write({ execute: 'b', id: 2 })]);
    assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
    await assert.rejects(w.write({ execute: 'c', id: 3 }), /stream is closed/);
    assert.deepEqual(lines(s.chunks), ['a', 'b'], 'nothing written after the failure');
  });

  it('rejects at once on a destroyed stream', async () => {
    const s = new Recorder();
    const w = new QmpWriter(s);
    s.destroy();
    await assert.rejects(w.write({ execute: 'a', id: 1 }), /stream is closed/);
    assert.equal(s.chunks.length, 0);
  });
});

describe('QmpWriter.flushNow', () => {
  it('writes what is queued at once, in the same tick, and the scheduled flush then writes nothing twice', async () => {
    const s = new Recorder();
    const w = new QmpWriter(s);
    const caps = w.write({ execute: 'qmp_capabilities', id: 1 });
    w.flushNow();
    assert.deepEqual(lines(s.chunks), ['qmp_capabilities'], 'written before the tick ended');
    await caps;
    assert.equal(s.chunks.length, 1);
  });

  it('leaves a write under way alone: what queued meanwhile goes out after it, in order', async () => {
    const s = new Recorder();
    const w = new QmpWriter(s);
    const first = w.write({ execute: 'a', id: 1 });
    w.flushNow(); // 'a' is now under way
    const second = w.write({ execute: 'b', id: 2 });
    w.flushNow(); // must not write 'b' beside the write under way
    assert.deepEqual(s.chunks.map((c) => lines([c])), [['a']]);
    await Promise.all([first, second]);
    assert.deepEqual(s.chunks.map((c) => lines([c])), [['a'], ['b']]);
  });
});
