import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GENERATED_FILE, generateParamTypes, schemaToType } from '../../../plugin/rpc/schema-types';
import { buildMethods, methodDeps } from '../../../plugin/rpc';
import { defaultConfig } from '../../../plugin/config';

describe('RPC params types derived from the schemas', () => {
  it('param-types.generated.ts is what the schemas generate (regenerate: node dist/plugin/rpc/schema-types.js --write)', () => {
    assert.equal(readFileSync(GENERATED_FILE, 'utf8'), generateParamTypes());
  });

  it('every served method uses the schema file its params type is generated from', () => {
    const methods = buildMethods('test', methodDeps({ ...defaultConfig(), runtimeDir: '/nonexistent' }));
    for (const m of methods) {
      const file = join(__dirname, '..', '..', '..', '..', 'schemas', 'rpc', `${m.name}.schema.json`);
      assert.deepEqual(m.schema, JSON.parse(readFileSync(file, 'utf8')), m.name);
    }
  });

  it('maps the schema subset the RPC uses', () => {
    assert.equal(schemaToType({ type: 'object', properties: { a: { type: 'string' }, b: { enum: ['x', 'y'] } }, required: ['a'] }),
      '{\n  a: string;\n  b?: "x" | "y";\n}');
    assert.equal(schemaToType({ oneOf: [{ type: 'boolean' }, { type: 'integer' }] }), 'boolean | number');
    assert.equal(schemaToType({ type: 'object', additionalProperties: { type: 'integer' } }), 'Record<string, number>');
    assert.throws(() => schemaToType({ $ref: 'https://elsewhere/x.json' }), /no TypeScript type/);
  });
});
