/**
 * Any format to any format, through the chain 2.9 ⇄ 2.10 ⇄ 2.16, with
 * validation of the input (against its detected format) and of the output.
 */
import { GkdError } from '../../errors';
import type { AnyRuntime, RuntimeFormatId, RuntimeV2_10, RuntimeV2_16, RuntimeV2_9 } from '../../types';
import type { RuntimeChange, RuntimeProblem, StepResult } from './change';
import { RUNTIME_FORMATS, detectFormat } from './detect';
import { deviceNames, downgrade2_10To2_9, downgrade2_16To2_10 } from './downgrade';
import { upgrade2_10To2_16, upgrade2_9To2_10 } from './upgrade';
import { type RuntimeOf, validateRuntime } from './validate';

/** Options of {@link convertRuntime}. */
export interface ConvertOptions {
  /**
   * Fresh random UUID source, needed only to upgrade a 2.9 file with a NIC
   * that has no uuid; the pure core has no randomness of its own.
   * @default none: such a file throws TypeError
   */
  uuid?: () => string;
  /**
   * Downgrade even when a device keeps its place but 2.10 can only name it by
   * its PCI-era id (`hotdisk-<uuid group>-pci-<slot>`). QEMU keeps the old id
   * until the instance restarts or migrates, so until then the older release
   * can't hot-remove that device. Reported as `renamed` changes.
   * @default false
   */
  allowIdChange?: boolean;
  /**
   * Downgrade even when information is lost; implies `allowIdChange`. Every
   * loss is reported as a `dropped` change. Never overrides a q35 machine
   * (a q35 machine type in kvm_cmd or `hvparams.machine_version`, or a
   * `pcie-root-port` in kvm_cmd).
   * @default false
   */
  force?: boolean;
  /** Instance name, for messages only. */
  name?: string;
}

/** What {@link convertRuntime} returns. */
export interface ConvertResult<F extends RuntimeFormatId> {
  from: RuntimeFormatId;
  to: F;
  /** The converted value; `value` itself when `from === to`. */
  value: RuntimeOf<F>;
  /** What changed beyond re-encoding, in chain order; empty for a lossless conversion. */
  changes: RuntimeChange[];
}

function accepted(p: RuntimeProblem, options: ConvertOptions): boolean {
  if (p.needs === 'never') return false;
  if (p.needs === 'allowIdChange') return options.allowIdChange === true || options.force === true;
  return options.force === true;
}

function refuse(to: RuntimeFormatId, refused: RuntimeProblem[], options: ConvertOptions): GkdError {
  const who = options.name === undefined ? 'runtime file' : `runtime file of "${options.name}"`;
  const hint = refused.some((p) => p.needs === 'never')
    ? ''
    : refused.every((p) => p.needs === 'allowIdChange')
      ? ' (--allow-id-change accepts this)'
      : ' (--force drops this and reports each loss)';
  return new GkdError('GKD_RUNTIME_LOSSY', `Cannot downgrade ${who} to ${to}: ${refused.map((p) => p.reason).join('; ')}${hint}`, {
    field: refused[0].field,
    device: refused[0].device,
    data: { to, problems: refused.map(({ needs, field, device, reason }) => ({ needs, field, device, reason })) },
  });
}

function step(
  value: AnyRuntime,
  from: RuntimeFormatId,
  up: boolean,
  options: ConvertOptions,
  names?: ReadonlyMap<string, string>,
): StepResult<AnyRuntime> {
  if (up && from === '2.9') {
    const uuid =
      options.uuid ??
      (() => {
        throw new TypeError('convertRuntime: options.uuid is required to upgrade a 2.9 file with a NIC that has no uuid');
      });
    return upgrade2_9To2_10(value as RuntimeV2_9, { uuid });
  }
  if (up) return upgrade2_10To2_16(value as RuntimeV2_10);
  if (from === '2.16') return downgrade2_16To2_10(value as RuntimeV2_16);
  return downgrade2_10To2_9(value as RuntimeV2_10, names);
}

/**
 * Converts a parsed runtime file to format `to`.
 *
 * Upgrades never lose information. A downgrade is lossless unless an option
 * says otherwise; the guarantees (proven by the property tests):
 * - for every valid 2.10 file F: `convert(convert(F, '2.16'), '2.10')` deep-equals F;
 * - for every valid 2.16 file F: `convert(F, '2.10')` either throws
 *   `GKD_RUNTIME_LOSSY` or returns G with `convert(G, '2.16')` deep-equal to F;
 * - likewise 2.9 ⇄ 2.10 ⇄ 2.16, except that a 2.9 NIC without uuid gets one.
 *
 * @throws GkdError `GKD_RUNTIME_UNKNOWN_FORMAT` / `GKD_RUNTIME_INVALID` for bad input;
 *   `GKD_RUNTIME_LOSSY` naming each device and what `to` can't express.
 */
export function convertRuntime<F extends RuntimeFormatId>(value: unknown, to: F, options: ConvertOptions = {}): ConvertResult<F> {
  const from = detectFormat(value);
  validateRuntime(value, from);
  let current: AnyRuntime = value;
  const changes: RuntimeChange[] = [];
  const problems: RuntimeProblem[] = [];
  let i = RUNTIME_FORMATS.indexOf(from);
  const target = RUNTIME_FORMATS.indexOf(to);
  if (target < 0) throw new TypeError(`convertRuntime: unknown format "${String(to)}"`);
  // Devices keep the names the source file gives them in every message.
  const names = from === '2.16' && target < i ? deviceNames(value as RuntimeV2_16) : undefined;
  while (i !== target) {
    const up = target > i;
    const r = step(current, RUNTIME_FORMATS[i], up, options, names);
    current = r.value;
    changes.push(...r.changes);
    problems.push(...r.problems);
    i += up ? 1 : -1;
  }
  // 2.16 → 2.9 meets a q35 machine in both steps: name it once.
  const seen = new Set<string>();
  const refused = problems.filter((p) => !accepted(p, options)).filter((p) => !seen.has(`${p.field}\0${p.reason}`) && !!seen.add(`${p.field}\0${p.reason}`));
  if (refused.length > 0) throw refuse(to, refused, options);
  for (const p of problems) if (p.change !== undefined) changes.push(p.change);
  // Defensive: a step that produced an invalid file is a bug, never written.
  validateRuntime(current, to);
  return { from, to, value: current as RuntimeOf<F>, changes };
}
