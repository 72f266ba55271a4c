import { strict as assert } from 'node:assert';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { ParamsValidator } from '../../../plugin/rpc/params';
import { buildMethods, methodDeps, SHARED_SCHEMAS } from '../../../plugin/rpc';
import { defaultConfig } from '../../../plugin/config';

const SCHEMA_DIR = join(__dirname, '..', '..', '..', '..', 'schemas', 'rpc');
/** interface.md section 5. */
const CONTRACT = [
  'instance.plan', 'instance.start', 'instance.cleanup', 'instance.verify', 'hotplug.supported',
  'disk.add', 'disk.remove', 'nic.add', 'nic.remove', 'migration.accept', 'migration.start',
  'runtime.get', 'runtime.convert', 'runtime.validate', 'rpc.discover',
];

function validator(): ParamsValidator {
  const v = new ParamsValidator();
  for (const s of SHARED_SCHEMAS) v.addSharedSchema(s as Record<string, unknown>);
  for (const f of readdirSync(SCHEMA_DIR)) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    v.add(f.replace(/\.schema\.json$/, ''), require(join(SCHEMA_DIR, f)));
  }
  return v;
}

function paths(fn: () => void): string[] {
  try {
    fn();
  } catch (e) {
    return ((e as { data: { errors: { path: string }[] } }).data.errors).map((x) => x.path);
  }
  assert.fail('expected invalid params');
}

describe('rpc params schemas', () => {
  it('every contract method has a schema that compiles as JSON Schema 2020-12', () => {
    const files = readdirSync(SCHEMA_DIR);
    for (const m of CONTRACT) assert.ok(files.includes(`${m}.schema.json`), `${m} has no schema`);
    const ajv = new Ajv2020({ strict: false });
    for (const s of SHARED_SCHEMAS) ajv.addSchema(s as Record<string, unknown>);
    for (const f of files) ajv.compile(require(join(SCHEMA_DIR, f)));
  });

  it('ParamsValidator.check() points at the missing or wrong field itself', () => {
    const v = validator();
    assert.deepEqual(paths(() => v.check('disk.add', { name: 'inst1', disk: { path: '/dev/x' } })), ['/disk/uuid']);
    assert.deepEqual(paths(() => v.check('disk.remove', { name: 'inst1', uuid: 42 })), ['/uuid']);
    assert.deepEqual(paths(() => v.check('instance.cleanup', { name: 'inst1', extra: 1 })), ['/extra']);
    assert.deepEqual(paths(() => v.check('instance.cleanup', { name: '../etc/passwd' })), ['/name']);
    assert.deepEqual(paths(() => v.check('hotplug.supported', { name: 'i', kind: 'cdrom', action: 'add' })), ['/kind']);
    assert.ok(paths(() => v.check('instance.plan', { instance: { name: 'x', disks: [{ uuid: 'no' }], nics: [] } })).includes('/instance/disks/0/path'));
  });

  it('ParamsValidator.check() accepts valid params and answers -32602 otherwise', () => {
    const v = validator();
    v.check('rpc.discover', {});
    v.check('runtime.convert', { name: 'inst1', to: '2.10' });
    v.check('nic.add', { name: 'i', nic: { uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:bf:2f:16' } });
    assert.throws(() => v.check('runtime.convert', { to: '2.10' }), (e: { code: number }) => e.code === -32602);
  });

  it('instance.verify takes repair as a flag or with the specs of devices only QEMU has', () => {
    const v = validator();
    v.check('instance.verify', { name: 'i', repair: true });
    v.check('instance.verify', { name: 'i', repair: { known: { disks: [{ uuid: '9e7c85f6-b6e5-4243-b27d-680b78c6d203', path: '/dev/x' }], nics: [] } } });
    assert.ok(paths(() => v.check('instance.verify', { name: 'i', repair: { known: { disks: [{ uuid: 'bad', path: '/dev/x' }] } } })).some((p) => p.startsWith('/repair')));
    assert.ok(paths(() => v.check('instance.verify', { name: 'i', repair: { guess: true } })).some((p) => p.startsWith('/repair')));
  });

  it('every method the daemon serves compiles in a ParamsValidator on its first check', () => {
    // The daemon compiles a method's schema at its first call, not at start; this is where a broken one shows.
    const v = new ParamsValidator();
    for (const s of SHARED_SCHEMAS) v.addSharedSchema(s as Record<string, unknown>);
    const methods = buildMethods('test', methodDeps({ ...defaultConfig(), runtimeDir: '/nonexistent' }));
    for (const m of methods) v.add(m.name, m.schema);
    for (const m of methods) {
      try {
        v.check(m.name, {});
      } catch (e) {
        assert.equal((e as { code?: number }).code, -32602, `${m.name}: ${String(e)}`);
      }
    }
  });

  it('compiles a schema at its method\'s first check, not when it is added', () => {
    const v = new ParamsValidator();
    // A schema ajv refuses: add() accepts it, the first check() of that method throws, others still work.
    v.add('broken', { type: 'object', properties: { a: { type: 'no-such-type' } } });
    v.add('fine', { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false });
    assert.throws(() => v.check('broken', {}), /no-such-type|type must be/);
    v.check('fine', { a: 'x' });
    assert.deepEqual(paths(() => v.check('fine', { b: 1 })), ['/b']);
  });
});
