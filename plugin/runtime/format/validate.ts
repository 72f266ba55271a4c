/**
 * Per-format validation against `schemas/runtime/<id>.schema.json`
 * (JSON Schema 2020-12, ajv). Errors name the place readably
 * (`disks[0].hvinfo`) and carry the JSON pointer in `data`.
 */
import Ajv2020 from 'ajv/dist/2020';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { GkdError } from '../../errors';
import type { RuntimeFormatId, RuntimeV2_10, RuntimeV2_16, RuntimeV2_9 } from '../../types';
import schema29 from '../../../schemas/runtime/2.9.schema.json';
import schema210 from '../../../schemas/runtime/2.10.schema.json';
import schema216 from '../../../schemas/runtime/2.16.schema.json';
import { pointerToField } from './field-path';

/** The runtime type a format id stands for. */
export type RuntimeOf<F extends RuntimeFormatId> = F extends '2.9'
  ? RuntimeV2_9
  : F extends '2.10'
    ? RuntimeV2_10
    : RuntimeV2_16;

/** One reason a value is not valid for a format. */
export interface RuntimeIssue {
  /** Readable location, e.g. `disks[0].hvinfo`. */
  field: string;
  /** JSON pointer into the runtime array, e.g. `/3/0/0/hvinfo`. */
  pointer: string;
  /** What is wrong, e.g. `must have required property "bus"`. */
  message: string;
}

/** At most this many reasons go into an error message; all are in `data.issues`. */
const MAX_REASONS_IN_MESSAGE = 3;

const SCHEMAS: Record<RuntimeFormatId, object> = { '2.9': schema29, '2.10': schema210, '2.16': schema216 };
const compiled = new Map<RuntimeFormatId, ValidateFunction>();
let ajv: Ajv2020 | undefined;

function validatorFor(format: RuntimeFormatId): ValidateFunction {
  let fn = compiled.get(format);
  if (fn === undefined) {
    // Compiled lazily: a CLI run that only detects never pays for ajv's code generation.
    ajv ??= new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
    fn = ajv.compile(SCHEMAS[format]);
    compiled.set(format, fn);
  }
  return fn;
}

function describeError(e: ErrorObject): RuntimeIssue {
  const pointer = e.instancePath;
  let message: string;
  switch (e.keyword) {
    case 'required':
      message = `must have required property "${String(e.params.missingProperty)}"`;
      break;
    case 'additionalProperties':
      message = `must not have property "${String(e.params.additionalProperty)}"`;
      break;
    case 'false schema':
      // A `false` subschema forbids a key: `pci` in 2.16, `hvinfo` in 2.10, SCSI keys next to `addr`.
      message = 'must not be present here';
      break;
    case 'dependentRequired':
      message = `must have property "${String(e.params.missingProperty)}" when "${String(e.params.property)}" is present`;
      break;
    case 'pattern':
      message = `must match pattern ${String(e.params.pattern)}`;
      break;
    default:
      message = (e.message ?? 'is invalid').replace(/'/g, '"').replace(/NOT/g, 'not');
  }
  return { field: pointerToField(pointer), pointer, message };
}

/**
 * Every reason `value` is not a valid runtime file of `format` (empty when valid).
 * `if`/`then` wrapper errors are left out: the inner error says what is wrong.
 */
export function runtimeIssues(value: unknown, format: RuntimeFormatId): RuntimeIssue[] {
  const fn = validatorFor(format);
  if (fn(value)) return [];
  const seen = new Set<string>();
  const out: RuntimeIssue[] = [];
  for (const e of fn.errors ?? []) {
    if (e.keyword === 'if') continue;
    const issue = describeError(e);
    const k = `${issue.pointer} ${issue.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(issue);
    }
  }
  return out;
}

/** True when `value` is a valid runtime file of `format`. */
export function isValidRuntime<F extends RuntimeFormatId>(value: unknown, format: F): value is RuntimeOf<F> {
  return validatorFor(format)(value);
}

/**
 * Checks `value` against the schema of `format`.
 *
 * @throws GkdError `GKD_RUNTIME_INVALID`, e.g.
 *   `Cannot accept runtime file as 2.16: disks[0].hvinfo: must have required property "bus"`;
 *   `field` is the first failing place, `data.issues` lists them all.
 */
export function validateRuntime<F extends RuntimeFormatId>(value: unknown, format: F): asserts value is RuntimeOf<F> {
  const issues = runtimeIssues(value, format);
  if (issues.length === 0) return;
  const shown = issues.slice(0, MAX_REASONS_IN_MESSAGE).map((i) => `${i.field}: ${i.message}`);
  const more = issues.length > MAX_REASONS_IN_MESSAGE ? ` (and ${issues.length - MAX_REASONS_IN_MESSAGE} more)` : '';
  throw new GkdError('GKD_RUNTIME_INVALID', `Cannot accept runtime file as ${format}: ${shown.join('; ')}${more}`, {
    field: issues[0].field,
    data: { format, issues },
  });
}
