/**
 * Ganeti's runtime-file encoding. Ganeti's `serializer.Dump` is Python's
 * `json.dumps` with default arguments (separators `", "` and `": "`, no
 * indent, keys in insertion order, `ensure_ascii`), end-of-line spaces
 * stripped, plus a trailing newline (ganeti-facts.md section 1). We produce
 * the same bytes so a file we write is indistinguishable from Ganeti's, and
 * parsing accepts any valid JSON.
 */
import { GkdError } from '../../errors';
import { checkBudget, pointerToDotted } from '../../value-budget';

/** Python's `json` escapes for these characters; every other non-printable-ASCII one becomes `\uXXXX`. */
const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
};

// Printable ASCII minus `"` and `\`: the only characters ensure_ascii leaves alone
// (DEL, 0x7f, is escaped too).
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function encodeString(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    const code = s.charCodeAt(i);
    const short = SHORT_ESCAPES[ch];
    if (short !== undefined) out += short;
    else if (code >= 0x20 && code <= 0x7e) out += ch;
    // UTF-16 code units: astral characters come out as surrogate pairs, as in Python.
    else out += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return `${out}"`;
}

/**
 * A number as Python prints it. Integers (all a Ganeti runtime file holds)
 * print as digits; other floats follow Python's `repr`: shortest digits,
 * exponent form below 1e-4 or from 1e16 with at least two exponent digits.
 * JSON.parse keeps no int/float distinction, so an integral float literal
 * (`1024.0`) comes back as `1024`; Ganeti writes none.
 */
function encodeNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`serializeRuntime: cannot encode ${n} (not valid JSON)`);
  // Below 1e21 an integer prints as digits, as JSON.stringify and Python's int do; larger values
  // only come from float literals, which Python prints in exponent form.
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  const [mant, expText] = n.toExponential().split('e');
  const exp = Number(expText);
  if (exp >= -4 && exp < 16) return String(n);
  const sign = exp < 0 ? '-' : '+';
  return `${mant}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** One value in Python `json.dumps` form (no newline). */
export function encodePythonJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return encodeString(value);
    case 'number':
      return encodeNumber(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map((v) => encodePythonJson(v === undefined ? null : v)).join(', ')}]`;
      const parts: string[] = [];
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined) parts.push(`${encodeString(k)}: ${encodePythonJson(v)}`);
      }
      return `{${parts.join(', ')}}`;
    }
    default:
      throw new TypeError(`serializeRuntime: cannot encode a ${typeof value}`);
  }
}

/** A runtime value as Ganeti writes the file: one line of JSON and a newline. */
export function serializeRuntime(value: unknown): string {
  return `${encodePythonJson(value)}\n`;
}

/**
 * Parses runtime file text. Accepts any valid JSON (pretty-printed,
 * compact, with or without the trailing newline, with a UTF-8 BOM).
 *
 * @throws GkdError `GKD_RUNTIME_INVALID`, e.g. `Cannot parse runtime file: Unexpected end of JSON input`
 */
export function parseRuntime(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new GkdError('GKD_RUNTIME_INVALID', `Cannot parse runtime file: ${why}`, { field: 'runtime', cause: e });
  }
  // Detection, validation, conversion and the encoder all recurse: measure the value first.
  const over = checkBudget(value);
  if (over !== undefined) {
    const field = pointerToDotted(over.path, 'runtime');
    throw new GkdError('GKD_RUNTIME_INVALID', `Cannot read runtime file: ${field} ${over.message}`, { field, data: { path: over.path } });
  }
  return value;
}
