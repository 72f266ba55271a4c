/**
 * QEMU's option syntax (`key=value,key=value`) takes a literal comma in a
 * value as `,,`. Without it a path like `/img/we,ird.raw` is split and the
 * tail parsed as a boolean option (QEMU 7.2: "short-form boolean option
 * 'ird.raw' deprecated", then "Could not open '/img/we'").
 */
export function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/** Renders `driver,k=v,…` from ordered pairs; values are escaped, booleans become on/off. */
export function renderOptions(head: string | undefined, pairs: ReadonlyArray<readonly [string, string | number | boolean]>): string {
  const parts = head === undefined ? [] : [head];
  for (const [k, v] of pairs) {
    const s = typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v);
    parts.push(`${k}=${escapeOptionValue(s)}`);
  }
  return parts.join(',');
}
