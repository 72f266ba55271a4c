/**
 * What a conversion did to a file beyond the mechanical re-encoding, and
 * what a downgrade could not do without losing information.
 */

/** One reported effect of a conversion. */
export interface RuntimeChange {
  /** `added`: new data (a generated NIC uuid); `renamed`: a device id changed; `dropped`: information removed. */
  kind: 'added' | 'renamed' | 'dropped';
  /** Readable place, e.g. `disks[1].hvinfo`. */
  field: string;
  /** The device concerned: its QEMU id, or its place when it has none. */
  device: string;
  /** One line, e.g. `dropped hvinfo {"driver":"scsi-hd",…}`. */
  detail: string;
}

/**
 * Something the target format cannot express. `needs` says which option
 * accepts the loss: `allowIdChange` for a device id the older release
 * recomputes differently, `force` for dropped placement, `never` for what
 * no option can drop (a q35 machine).
 */
export interface RuntimeProblem {
  needs: 'allowIdChange' | 'force' | 'never';
  field: string;
  device: string;
  /** Why, e.g. `disk "disk-9e7c85f6-b6e5-4243" is on SCSI bus "scsi.0"`. */
  reason: string;
  /** What the converted value does instead, when the option allows it. */
  change?: RuntimeChange;
}

/** A conversion step's output: the value as it would be written if every problem were accepted. */
export interface StepResult<T> {
  value: T;
  changes: RuntimeChange[];
  problems: RuntimeProblem[];
}

/** What {@link replaceKey} does: put `as` where `key` was, holding `value`. */
export interface KeyReplacement {
  key: string;
  as: string;
  /** The new value; undefined removes `key` without a replacement. */
  value: unknown;
}

/**
 * A copy of `obj` with `r.key` replaced by `r.as` at the same position
 * (appended when `r.key` is absent; removed when `r.value` is undefined).
 * Keeping the position makes a round trip byte-identical, not only equal.
 * Built with `Object.fromEntries` so keys such as `__proto__` stay plain data.
 */
export function replaceKey<T extends object>(obj: T, r: KeyReplacement): T {
  const entries: Array<[string, unknown]> = [];
  let placed = false;
  for (const [k, v] of Object.entries(obj)) {
    if (k === r.key) {
      if (r.value !== undefined) entries.push([r.as, r.value]);
      placed = true;
    } else if (k !== r.as) {
      entries.push([k, v]);
    }
  }
  if (!placed && r.value !== undefined) entries.push([r.as, r.value]);
  return Object.fromEntries(entries) as T;
}
