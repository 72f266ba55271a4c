import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { GkdError } from '../../../plugin/errors';
import { QmpFrameDecoder, encodeQmpMessage, type QmpMessage } from '../../../plugin/qmp/framing';

/** What QEMU puts on the wire: compact JSON, CRLF. */
function wire(...messages: QmpMessage[]): Buffer {
  return Buffer.from(messages.map((m) => `${JSON.stringify(m)}\r\n`).join(''), 'utf8');
}

function protocolError(fn: () => unknown): GkdError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof GkdError, `expected GkdError, got ${String(err)}`);
    assert.equal(err.code, 'GKD_QMP_PROTOCOL');
    return err;
  }
  assert.fail('expected a protocol error');
}

const GREETING = { QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' }, capabilities: ['oob'] } };

describe('QmpFrameDecoder', () => {
  it('push() returns one message per CRLF-terminated line', () => {
    const d = new QmpFrameDecoder();
    assert.deepEqual(d.push(wire(GREETING, { return: {}, id: 1 })), [GREETING, { return: {}, id: 1 }]);
    assert.equal(d.state, 'line-start');
  });

  it('push() holds a message split across chunks until its LF arrives', () => {
    const d = new QmpFrameDecoder();
    const bytes = wire({ return: { status: 'prelaunch' }, id: 7 });
    assert.deepEqual(d.push(bytes.subarray(0, 5)), []);
    assert.equal(d.state, 'in-line');
    assert.deepEqual(d.push(bytes.subarray(5, bytes.length - 1)), []); // CR arrived, LF not yet
    assert.deepEqual(d.push(bytes.subarray(bytes.length - 1)), [{ return: { status: 'prelaunch' }, id: 7 }]);
    assert.equal(d.bufferedBytes, 0);
  });

  it('push(chunk, borrowed) keeps a copy of an unfinished line: the reused read buffer is overwritten between reads', () => {
    fc.assert(
      fc.property(fc.array(fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__'), fc.oneof(fc.string(), fc.integer())), { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), (msgs, sizes) => {
        const bytes = wire(...msgs.map((m) => ({ return: m })));
        const reused = Buffer.alloc(64);
        const d = new QmpFrameDecoder();
        const got: QmpMessage[] = [];
        for (let at = 0, i = 0; at < bytes.length; i++) {
          const n = Math.min(sizes[i % sizes.length] as number, bytes.length - at, reused.length);
          bytes.copy(reused, 0, at, at + n);
          got.push(...d.push(reused.subarray(0, n), true));
          reused.fill(0x7b); // the next read overwrites the buffer
          at += n;
        }
        assert.deepEqual(got, msgs.map((m) => ({ return: { ...m } })));
        assert.equal(d.state, 'line-start');
      }),
    );
  });

  it('push() reassembles a multi-byte UTF-8 character cut between chunks', () => {
    const d = new QmpFrameDecoder();
    const msg = { return: 'disk “é€😀”' };
    const bytes = wire(msg);
    const cut = bytes.indexOf(0xf0) + 2; // inside the 4-byte emoji
    assert.deepEqual(d.push(bytes.subarray(0, cut)), []);
    assert.deepEqual(d.push(bytes.subarray(cut)), [msg]);
  });

  it('push() accepts bare LF and skips empty lines', () => {
    const d = new QmpFrameDecoder();
    assert.deepEqual(d.push(Buffer.from('\r\n\n{"return": 1}\n')), [{ return: 1 }]);
  });

  it('push() fails on a line that is not JSON, keeping earlier messages in data.messages', () => {
    const d = new QmpFrameDecoder();
    const err = protocolError(() => d.push(Buffer.from('{"return": {}, "id": 1}\r\ngarbage\r\n{"return": {}, "id": 2}\r\n')));
    assert.match(err.message, /^Cannot decode the QMP stream: a line is not JSON: "garbage"$/);
    assert.deepEqual(err.data?.messages, [{ return: {}, id: 1 }]);
    assert.equal(d.state, 'failed');
    const again = protocolError(() => d.push(wire({ return: {} })));
    assert.deepEqual(again.data?.messages, []);
  });

  it('push() fails on JSON that is not an object', () => {
    for (const line of ['[1,2]', '42', 'null', '"text"']) {
      const err = protocolError(() => new QmpFrameDecoder().push(Buffer.from(`${line}\r\n`)));
      assert.match(err.message, /not a JSON object/);
    }
  });

  it('push() fails on invalid UTF-8', () => {
    const err = protocolError(() => new QmpFrameDecoder().push(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d, 0x0a])));
    assert.match(err.message, /not valid UTF-8/);
  });

  it('push() fails as soon as an unterminated message passes maxMessageBytes', () => {
    const d = new QmpFrameDecoder({ maxMessageBytes: 64 });
    d.push(Buffer.from(`{"return": "${'x'.repeat(40)}`));
    const err = protocolError(() => d.push(Buffer.from('x'.repeat(40))));
    assert.match(err.message, /a message exceeds 64 bytes/);
    assert.equal(d.bufferedBytes, 0, 'buffer released');
  });

  it('push() accepts a message of exactly maxMessageBytes plus CRLF', () => {
    const body = `{"return": "${'y'.repeat(64 - 14)}"}`;
    assert.equal(body.length, 64);
    assert.deepEqual(new QmpFrameDecoder({ maxMessageBytes: 64 }).push(Buffer.from(`${body}\r\n`)), [JSON.parse(body)]);
    protocolError(() => new QmpFrameDecoder({ maxMessageBytes: 63 }).push(Buffer.from(`${body}\r\n`)));
  });

  it('defaults maxMessageBytes to 16 MiB', () => {
    const d = new QmpFrameDecoder();
    const big = Buffer.alloc(16 * 1024 * 1024, 0x20); // spaces: valid JSON whitespace, no LF
    d.push(big.subarray(0, 8 * 1024 * 1024));
    protocolError(() => d.push(big));
  });

  it('end() fails when the stream stops inside a message', () => {
    const d = new QmpFrameDecoder();
    d.push(Buffer.from('{"return": {}, "id"'));
    const err = protocolError(() => d.end());
    assert.match(err.message, /ended inside a message after 19 bytes/);
    const clean = new QmpFrameDecoder();
    clean.push(wire({ return: {} }));
    clean.end();
  });

  it('encodeQmpMessage() writes one compact line', () => {
    assert.equal(encodeQmpMessage({ execute: 'device_del', arguments: { id: 'disk-1' }, id: 3 }).toString(), '{"execute":"device_del","arguments":{"id":"disk-1"},"id":3}\n');
  });

  describe('property', () => {
    const json = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<unknown>;
    const message = fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), json, { maxKeys: 4 });
    const message2 = fc.oneof(
      message,
      fc.record({ event: fc.constantFrom('STOP', 'RESUME', 'DEVICE_DELETED'), data: message }),
      fc.record({ return: json, id: fc.nat() }),
    );

    it('any messages, chunked at any byte offsets, decode to the same messages', () => {
      fc.assert(
        fc.property(fc.array(message2, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), fc.boolean(), (msgs, cuts, crlf) => {
          const bytes = Buffer.from(msgs.map((m) => JSON.stringify(m) + (crlf ? '\r\n' : '\n')).join(''), 'utf8');
          const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort((a, b) => a - b);
          const d = new QmpFrameDecoder();
          const got: QmpMessage[] = [];
          let prev = 0;
          for (const p of [...points, bytes.length]) {
            got.push(...d.push(bytes.subarray(prev, p)));
            prev = p;
          }
          d.end();
          // JSON round trip normalises -0 and drops undefined, as the wire does.
          assert.deepEqual(got, JSON.parse(JSON.stringify(msgs)));
        }),
        { numRuns: 300 },
      );
    });
  });
});
