/**
 * Readable names for places inside a runtime file, so errors say
 * `disks[1].hvinfo.bus` instead of `/3/1/0/hvinfo/bus`.
 */

const MEMBERS = ['kvm_cmd', 'nics', 'hvparams', 'disks'] as const;

function key(seg: string | number): string {
  if (typeof seg === 'number' || /^\d+$/.test(seg)) return `[${seg}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
}

/**
 * The readable name of a location given as path segments from the top of
 * the runtime array: `[3, 1, 0, 'hvinfo', 'bus']` → `disks[1].hvinfo.bus`,
 * `[3, 1, 1]` → `disks[1].link`, `[]` → `runtime`.
 */
export function fieldPath(segments: ReadonlyArray<string | number>): string {
  if (segments.length === 0) return 'runtime';
  const [top, ...rest] = segments;
  const idx = Number(top);
  const name = Number.isInteger(idx) && idx >= 0 && idx < MEMBERS.length ? MEMBERS[idx] : `runtime[${String(top)}]`;
  if (name !== 'disks' || rest.length < 2) return name + rest.map(key).join('');
  // A disk entry is [dict, link, uri]: name the triple's members.
  const [i, member, ...more] = rest;
  const part = String(member) === '0' ? '' : String(member) === '1' ? '.link' : String(member) === '2' ? '.uri' : key(member);
  return `disks[${String(i)}]${part}${more.map(key).join('')}`;
}

/** {@link fieldPath} for a JSON pointer such as ajv's `instancePath` (`/3/1/0/hvinfo`). */
export function pointerToField(pointer: string): string {
  if (pointer === '') return fieldPath([]);
  const segs = pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  return fieldPath(segs);
}
