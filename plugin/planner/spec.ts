/**
 * The instance spec's JSON Schema check (schemas/instance.schema.json),
 * turning ajv's first error into a GkdError that names the field.
 */
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import { GkdError } from '../errors';
import type { InstanceSpec } from '../types';
import schema from '../../schemas/instance.schema.json';

// Compiled on first use: compiling costs more than a whole CLI start otherwise would.
let validateFn: ValidateFunction<InstanceSpec> | undefined;
function validator(): ValidateFunction<InstanceSpec> {
  validateFn ??= new Ajv2020({ allErrors: true, strict: false }).compile<InstanceSpec>(schema);
  return validateFn;
}

/** `/disks/3/uuid` → `disks[3].uuid`. */
export function pointerToField(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc === '' ? p : `${acc}.${p}`), '');
}

/** Checks the shape of an instance spec; throws GKD_SPEC_INVALID naming the first bad field. */
export function parseInstanceSpec(value: unknown): InstanceSpec {
  const validate = validator();
  if (validate(value)) return value;
  const errs = validate.errors ?? [];
  const e = errs[0];
  let field = pointerToField(e?.instancePath ?? '');
  if (e?.keyword === 'required') field = field === '' ? String(e.params.missingProperty) : `${field}.${String(e.params.missingProperty)}`;
  if (e?.keyword === 'additionalProperties') field = `${field}.${String(e.params.additionalProperty)}`;
  const msg = `Cannot read instance spec: ${field === '' ? 'the document' : field} ${e?.keyword === 'required' ? 'is missing' : e?.message ?? 'is invalid'}`;
  throw new GkdError('GKD_SPEC_INVALID', msg, {
    field,
    data: { errors: errs.map((x) => ({ path: x.instancePath, keyword: x.keyword, message: x.message, params: x.params })) },
  });
}
