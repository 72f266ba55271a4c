/**
 * Derives the TypeScript types of every method's params from its JSON
 * Schema (`schemas/rpc/<method>.schema.json`), so handlers take typed params
 * instead of casting. The output is committed as `param-types.generated.ts`;
 * a unit test regenerates it and fails when it differs from the schemas.
 *
 * Covers the subset the RPC schemas use: object (properties, required,
 * additionalProperties), array (items; a tuple `prefixItems` is left as
 * `unknown[]`, its content is the runtime module's to check), string,
 * integer, number, boolean, enum, const, oneOf/anyOf and `$ref`s to the
 * instance spec, which map onto the hand-written types in plugin/types.ts.
 *
 * Regenerate: `npm run build && node dist/plugin/rpc/schema-types.js --write`.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

type Schema = Record<string, unknown>;

const INSTANCE = 'https://ganeti-kvm-devices/schemas/instance.schema.json';
/** `$ref` targets and the plugin/types.ts type each stands for. */
const REF_TYPES: Record<string, string> = {
  [INSTANCE]: 'InstanceSpec',
  [`${INSTANCE}#/$defs/disk`]: 'DiskSpec',
  [`${INSTANCE}#/$defs/nic`]: 'NicSpec',
  [`${INSTANCE}#/$defs/nic/properties/backend`]: 'NicBackend',
  [`${INSTANCE}#/$defs/uuid`]: 'string',
};

function key(k: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? k : JSON.stringify(k);
}

/** The TypeScript type of values `s` accepts. */
export function schemaToType(s: Schema, indent = ''): string {
  if (typeof s.$ref === 'string') {
    const t = REF_TYPES[s.$ref];
    if (t === undefined) throw new Error(`no TypeScript type for $ref ${s.$ref}`);
    return t;
  }
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const alts = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (alts !== undefined && s.type === undefined && s.properties === undefined) return alts.map((a) => schemaToType(a, indent)).join(' | ');
  switch (s.type) {
    case 'string': return 'string';
    case 'integer': case 'number': return 'number';
    case 'boolean': return 'boolean';
    case 'null': return 'null';
    case 'array': {
      if (s.prefixItems !== undefined || s.items === undefined) return 'unknown[]';
      return `Array<${schemaToType(s.items as Schema, indent)}>`;
    }
    case 'object': case undefined: {
      const props = (s.properties ?? {}) as Record<string, Schema>;
      const required = new Set((s.required ?? []) as string[]);
      const addl = s.additionalProperties;
      const names = Object.keys(props);
      if (names.length === 0) {
        if (addl !== undefined && addl !== false && addl !== true) return `Record<string, ${schemaToType(addl as Schema, indent)}>`;
        return addl === false ? 'Record<string, never>' : 'Record<string, unknown>';
      }
      const inner = `${indent}  `;
      const lines = names.map((n) => `${inner}${key(n)}${required.has(n) ? '' : '?'}: ${schemaToType(props[n], inner)};`);
      return `{\n${lines.join('\n')}\n${indent}}`;
    }
    default:
      throw new Error(`no TypeScript type for schema type ${JSON.stringify(s.type)}`);
  }
}

/** The repository root, from either the source or the compiled file. */
function repoRoot(): string {
  return __dirname.includes(`${join('dist', 'plugin')}`) ? join(__dirname, '..', '..', '..') : join(__dirname, '..', '..');
}

/** Where the generated file lives in the source tree. */
export const GENERATED_FILE = join(repoRoot(), 'plugin', 'rpc', 'param-types.generated.ts');

/** The generated module's text for the schemas in `dir`. */
export function generateParamTypes(dir = join(repoRoot(), 'schemas', 'rpc')): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.schema.json')).sort();
  const entries = files.map((f) => {
    const method = f.slice(0, -'.schema.json'.length);
    const schema = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Schema;
    return `  ${JSON.stringify(method)}: ${schemaToType(schema, '  ')};`;
  });
  return [
    '// Generated from schemas/rpc/*.schema.json by plugin/rpc/schema-types.ts; do not edit.',
    '// Regenerate: npm run build && node dist/plugin/rpc/schema-types.js --write',
    "import type { DiskSpec, InstanceSpec, NicBackend, NicSpec } from '../types';",
    '',
    '/** The params of each method, as its schema accepts them. */',
    'export interface RpcParams {',
    ...entries,
    '}',
    '',
    '/** Names of the methods with a params schema. */',
    'export type RpcMethodName = keyof RpcParams;',
    '',
  ].join('\n');
}

if (require.main === module && process.argv.includes('--write')) {
  writeFileSync(GENERATED_FILE, generateParamTypes());
  process.stdout.write(`wrote ${GENERATED_FILE}\n`);
}
