/**
 * Instance names become file names (`<dir>/<name>.runtime`), so only names
 * that can't escape the directory or hide among our own dot-files pass.
 */
import { GkdError } from '../errors';

/** Ganeti instance names are host names (FQDNs); 200 keeps `<name>.runtime` and our temp names under 255 bytes. */
const MAX_NAME_LENGTH = 200;
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** The suffix of a runtime file. */
export const RUNTIME_SUFFIX = '.runtime';

/** True when `name` is usable as an instance name for a runtime file. */
export function isSafeInstanceName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= MAX_NAME_LENGTH && SAFE_NAME.test(name) && !name.includes('..');
}

/**
 * Checks an instance name before it becomes part of a path: letters,
 * digits, `.`, `_`, `-`; not starting with `.` or `-`; no `..`; at most
 * 200 characters.
 *
 * @throws GkdError `GKD_RUNTIME_NAME_INVALID`, e.g.
 *   `Cannot use instance name "../etc/passwd": only letters, digits, ".", "_" and "-" are allowed, not starting with "." or "-"`
 */
export function assertInstanceName(name: unknown): asserts name is string {
  if (isSafeInstanceName(name)) return;
  const shown = typeof name === 'string' ? JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name) : String(name);
  const why =
    typeof name !== 'string'
      ? `it is a ${typeof name}, not a string`
      : name.length > MAX_NAME_LENGTH
        ? `it is ${name.length} characters long, at most ${MAX_NAME_LENGTH} are allowed`
        : 'only letters, digits, ".", "_" and "-" are allowed, not starting with "." or "-" and without ".."';
  throw new GkdError('GKD_RUNTIME_NAME_INVALID', `Cannot use instance name ${shown}: ${why}`, { field: 'name' });
}
