import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { GkdError } from '../../../plugin/errors';
import { encodePythonJson, parseRuntime, serializeRuntime } from '../../../plugin/runtime';
import { any216Arb, runtime210Arb } from '../../helpers/runtime-arbitraries';
import { sample210, sample216, sampleSerialized216 } from '../../helpers/runtime-samples';

const python = spawnSync('python3', ['-c', 'import json'], { encoding: 'utf8' }).status === 0;

/** Python's json.dumps of each value (one per line), or undefined without python3. */
function pythonDumps(values: unknown[]): string[] {
  const script = 'import json,sys\nfor line in sys.stdin:\n    sys.stdout.write(json.dumps(json.loads(line)) + "\\n")\n';
  const r = spawnSync('python3', ['-c', script], { input: values.map((v) => JSON.stringify(v)).join('\n') + '\n', encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').slice(0, -1);
}

describe('serializeRuntime()', () => {
  it('writes one line with ", " and ": " separators and a trailing newline', () => {
    assert.equal(serializeRuntime([['kvm', '-m', 1024], [{ a: 1, b: [] }], {}, []]), '[["kvm", "-m", 1024], [{"a": 1, "b": []}], {}, []]\n');
  });

  it('escapes like Python ensure_ascii: non-ASCII, DEL and controls as \\uXXXX, astral as surrogate pairs', () => {
    assert.equal(encodePythonJson('é\u007f\u0001"\\\n\r\t\b\f/'), '"\\u00e9\\u007f\\u0001\\"\\\\\\n\\r\\t\\b\\f/"');
    assert.equal(encodePythonJson('😀'), '"\\ud83d\\ude00"');
    assert.equal(encodePythonJson({ 'ключ': null }), '{"\\u043a\\u043b\\u044e\\u0447": null}');
  });

  it("prints floats like Python's repr", () => {
    assert.deepEqual(
      [0.5, 1e-5, 1.5e-7, 0.0001, 123.456, 1379943045.21, -2.5e-10].map(encodePythonJson),
      ['0.5', '1e-05', '1.5e-07', '0.0001', '123.456', '1379943045.21', '-2.5e-10'],
    );
    assert.equal(encodePythonJson(1e20), '100000000000000000000');
    assert.equal(encodePythonJson(1e21), '1e+21');
    assert.equal(encodePythonJson(1.5e300), '1.5e+300');
    assert.throws(() => encodePythonJson(NaN), TypeError);
  });

  (python ? it : it.skip)("is byte-identical to Python's json.dumps on Ganeti's samples and on generated files", () => {
    const values: unknown[] = [sample216(), sample210(), sampleSerialized216(), { s: 'é\u007f😀\u0000' }, [0.1, 1e-7, 2.5e16, -0.0]];
    values.push(...fc.sample(fc.oneof(runtime210Arb, any216Arb), { numRuns: 200, seed: 42 }));
    const py = pythonDumps(values);
    values.forEach((v, i) => assert.equal(encodePythonJson(JSON.parse(JSON.stringify(v))), py[i]));
  });
});

describe('parseRuntime()', () => {
  it('accepts any valid JSON: pretty-printed, compact, no newline, BOM', () => {
    const v = sample216();
    assert.deepStrictEqual(parseRuntime(JSON.stringify(v, null, 2)), v);
    assert.deepStrictEqual(parseRuntime(JSON.stringify(v)), v);
    assert.deepStrictEqual(parseRuntime(`\ufeff${serializeRuntime(v)}`), v);
  });

  it('reports truncated or garbled JSON as GKD_RUNTIME_INVALID', () => {
    const text = serializeRuntime(sample216());
    for (const bad of [text.slice(0, 100), '', 'NaN', "[['single quotes']]"]) {
      assert.throws(
        () => parseRuntime(bad),
        (e: unknown) => e instanceof GkdError && e.code === 'GKD_RUNTIME_INVALID' && /^Cannot parse runtime file: /.test(e.message),
      );
    }
  });
});
