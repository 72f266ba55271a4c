/**
 * Params validation: every method's params are checked against its schema
 * before the handler runs, and a failure becomes JSON-RPC -32602 with one
 * entry per failing path.
 */
import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import { JSONRPCErrorCode, JSONRPCErrorException } from 'json-rpc-2.0';

/** One failing location in the params, as JSON Pointer. */
export interface ParamError {
  path: string;
  message: string;
}

/**
 * One validator per method, compiled on the method's first call: compiling
 * every schema at start costs the daemon about as much memory as the rest of
 * its start-up, for methods most nodes call rarely (migration, cdrom, resize).
 * test/unit/rpc/params.test.ts compiles every schema, so a broken one fails
 * there rather than at a call.
 */
export class ParamsValidator {
  #ajv: Ajv2020 | undefined;
  #shared: Record<string, unknown>[] = [];
  #schemas = new Map<string, Record<string, unknown>>();
  #byMethod = new Map<string, ValidateFunction>();

  /** Registers a schema that other schemas `$ref` by its `$id`. */
  addSharedSchema(schema: Record<string, unknown>): void {
    const id = schema.$id;
    if (typeof id === 'string' && !this.#shared.some((s) => s.$id === id)) this.#shared.push(schema);
  }

  /** Registers `schema` for `method`; it is compiled on the method's first {@link check}. */
  add(method: string, schema: Record<string, unknown>): void {
    this.#schemas.set(method, schema);
    this.#byMethod.delete(method);
  }

  /** The compiled validator for `method`; undefined when it has no schema. */
  #validator(method: string): ValidateFunction | undefined {
    let fn = this.#byMethod.get(method);
    if (fn !== undefined) return fn;
    const schema = this.#schemas.get(method);
    if (schema === undefined) return undefined;
    if (this.#ajv === undefined) {
      this.#ajv = new Ajv2020({ allErrors: true, strict: false });
      for (const s of this.#shared) this.#ajv.addSchema(s);
    }
    fn = this.#ajv.compile(schema);
    this.#byMethod.set(method, fn);
    return fn;
  }

  /**
   * Checks `params` for `method`.
   * @throws JSONRPCErrorException -32602 with `data.errors` listing each failing path
   */
  check(method: string, params: unknown): void {
    const validate = this.#validator(method);
    if (validate === undefined || validate(params)) return;
    const errors = toParamErrors(validate.errors ?? []);
    const first = errors[0];
    const where = first === undefined ? '' : `: ${first.path || '/'} ${first.message}`;
    throw new JSONRPCErrorException(`Invalid params for "${method}"${where}`, JSONRPCErrorCode.InvalidParams, { errors });
  }
}

/** Turns ajv errors into paths that name the offending field itself. */
export function toParamErrors(errors: ErrorObject[]): ParamError[] {
  const out: ParamError[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    let path = e.instancePath;
    const p = e.params as Record<string, unknown>;
    // ajv reports a missing or extra property at its parent; point at the property.
    if (e.keyword === 'required' && typeof p.missingProperty === 'string') path += `/${escapePointer(p.missingProperty)}`;
    if (e.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
      path += `/${escapePointer(p.additionalProperty)}`;
    }
    const message = e.keyword === 'additionalProperties' ? 'is not an accepted parameter'
      : e.keyword === 'required' ? 'is required' : e.message ?? 'is invalid';
    const key = `${path}\0${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path, message });
  }
  return out;
}

function escapePointer(s: string): string {
  return s.replaceAll('~', '~0').replaceAll('/', '~1');
}
