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
 * no option can drop (a q35 layout in kvm_cmd).
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

/**
 * A copy of `obj` with `oldKey` replaced by `newKey` at the same position
 * (appended when `oldKey` is absent; removed when `value` is undefined).
 * Keeping the position makes a round trip byte-identical, not only equal.
 * Built with `Object.fromEntries` so keys such as `__proto__` stay plain data.
 */
export function replaceKey<T extends object>(obj: T, oldKey: string, newKey: string, value: unknown): T {
  const entries: Array<[string, unknown]> = [];
  let placed = false;
  for (const [k, v] of Object.entries(obj)) {
    if (k === oldKey) {
      if (value !== undefined) entries.push([newKey, value]);
      placed = true;
    } else if (k !== newKey) {
      entries.push([k, v]);
    }
  }
  if (!placed && value !== undefined) entries.push([newKey, value]);
  return Object.fromEntries(entries) as T;
}
