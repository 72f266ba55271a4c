/**
 * Downgrade steps. Ganeti never implemented these (its 2.16 downgrade hook
 * is an empty placeholder; ganeti-facts.md section 6), and pre-2.16 loaders
 * reject a device dict with `hvinfo`, so a node going back to an older
 * release needs its runtime files rewritten.
 *
 * A step never guesses: it returns the value it would write together with a
 * {@link RuntimeProblem} for everything the older format can't express; the
 * caller (`convertRuntime`) decides from the options whether to refuse.
 */
import type { HvInfo, HvParams, RuntimeDisk, RuntimeDiskEntry, RuntimeNic, RuntimeV2_10, RuntimeV2_16, RuntimeV2_9 } from '../../types';
import { type RuntimeChange, type RuntimeProblem, type StepResult, replaceKey } from './change';
import { type DeviceKind, PCI_ERA_BUS, canonicalAddrToSlot, pciEraDriver, pciEraId, typeParam } from './pci-era';

function quoteHv(h: object): string {
  return JSON.stringify(h);
}

/** Checks one 2.16 device and returns its 2.10 form plus what that form loses. */
function deviceTo2_10<T extends RuntimeNic | RuntimeDisk>(
  dict: T,
  kind: DeviceKind,
  field: string,
  hvparams: HvParams,
  problems: RuntimeProblem[],
): T {
  const hv = (dict.hvinfo ?? {}) as Partial<HvInfo> & Record<string, unknown>;
  if (Object.keys(hv).length === 0) return replaceKey(dict, { key: 'hvinfo', as: 'pci', value: undefined });
  const device = String(hv.id);
  const label = `${kind} "${device}"`;
  const hvField = `${field}.hvinfo`;
  const dropAll = (reason: string): T => {
    problems.push({
      needs: 'force',
      field: hvField,
      device,
      reason,
      change: { kind: 'dropped', field: hvField, device, detail: `dropped hvinfo ${quoteHv(hv)} (the older release places the device itself)` },
    });
    return replaceKey(dict, { key: 'hvinfo', as: 'pci', value: undefined });
  };
  if (typeof hv['scsi-id'] === 'number') {
    return dropAll(`${label} is on SCSI bus "${hv.bus}" (channel ${hv.channel}, scsi-id ${hv['scsi-id']}, lun ${hv.lun}); 2.10 has only PCI slots`);
  }
  if (typeof hv.unit === 'number') return dropAll(`${label} is on IDE bus "${hv.bus}" unit ${hv.unit}; 2.10 has only PCI slots`);
  if (typeof hv.addr !== 'string') return dropAll(`${label} is on bus "${hv.bus}" without a PCI address; 2.10 has only PCI slots`);
  if (hv.bus !== PCI_ERA_BUS) return dropAll(`${label} is on PCI bus "${hv.bus}"; 2.10 knows only "${PCI_ERA_BUS}"`);
  const slot = canonicalAddrToSlot(hv.addr);
  if (slot === undefined) {
    return dropAll(`${label} has addr "${hv.addr}"; 2.10 stores only slots 0x0 to 0x1f written as Ganeti writes them`);
  }
  const era = pciEraDriver(kind, hvparams);
  if (hv.driver !== era) {
    problems.push({
      needs: 'force',
      field: `${hvField}.driver`,
      device,
      reason: `${label} uses driver "${hv.driver}"; 2.10 rebuilds it as "${era}" from ${typeParam(kind)} "${String(hvparams[typeParam(kind)] ?? 'paravirtual')}"`,
      change: { kind: 'dropped', field: `${hvField}.driver`, device, detail: `dropped driver "${hv.driver}" (2.10 rebuilds ${label} as "${era}")` },
    });
  }
  const eraId = pciEraId(kind, { uuid: String(dict.uuid), slot });
  if (hv.id !== eraId) {
    problems.push({
      needs: 'allowIdChange',
      field: `${hvField}.id`,
      device,
      reason: `${label} would be renamed "${eraId}" (2.10 derives ids from the slot)`,
      change: { kind: 'renamed', field: `${hvField}.id`, device, detail: `renamed "${hv.id}" to "${eraId}" (QEMU keeps the old id until the instance restarts or migrates)` },
    });
  }
  return replaceKey(dict, { key: 'hvinfo', as: 'pci', value: slot });
}

/** q35 machine types: the alias and every versioned `pc-q35-X.Y`. */
const Q35_TYPE = /^(q35|pc-q35(-.*)?)$/;

/** The machine type of a `-machine` value (`q35,accel=kvm`, `type=pc-q35-7.2,…`). */
function machineTypeOf(value: string): string {
  const opts = value.split(',');
  return opts.find((o) => o.startsWith('type='))?.slice(5) ?? opts[0];
}

/**
 * What makes the runtime a q35 (PCI Express) machine: a q35 type after
 * `-machine`/`-M` in kvm_cmd, `hvparams.machine_version` naming one, and
 * every `pcie-root-port` in kvm_cmd. The PCI-era releases put every
 * hot-added device on `pci.0`, which q35 doesn't have, so no option
 * accepts any of these (`needs: 'never'`).
 */
function q35LayoutProblems(kvmCmd: ReadonlyArray<string | number>, hvparams: HvParams): RuntimeProblem[] {
  const out: RuntimeProblem[] = [];
  kvmCmd.forEach((item, i) => {
    if ((item !== '-machine' && item !== '-M') || typeof kvmCmd[i + 1] !== 'string') return;
    const type = machineTypeOf(kvmCmd[i + 1] as string);
    if (!Q35_TYPE.test(type)) return;
    out.push({
      needs: 'never',
      field: `kvm_cmd[${i + 1}]`,
      device: `kvm_cmd[${i + 1}]`,
      reason: `kvm_cmd[${i + 1}] makes it a q35 machine ("${type}"); releases before 2.16 put hot-added devices on "${PCI_ERA_BUS}", which q35 lacks`,
    });
  });
  const mv = hvparams.machine_version;
  if (typeof mv === 'string' && Q35_TYPE.test(mv)) {
    out.push({
      needs: 'never',
      field: 'hvparams.machine_version',
      device: 'hvparams.machine_version',
      reason: `hvparams.machine_version is "${mv}", a q35 machine; releases before 2.16 put hot-added devices on "${PCI_ERA_BUS}", which q35 lacks`,
    });
  }
  kvmCmd.forEach((item, i) => {
    if (typeof item === 'string' && item.includes('pcie-root-port')) {
      const id = /(?:^|,)id=([^,]+)/.exec(item)?.[1] ?? `kvm_cmd[${i}]`;
      out.push({
        needs: 'never',
        field: `kvm_cmd[${i}]`,
        device: id,
        reason: `kvm_cmd[${i}] adds "pcie-root-port" "${id}"; releases before 2.16 can only manage devices on "${PCI_ERA_BUS}"`,
      });
    }
  });
  return out;
}

/**
 * 2.16 → 2.10. A device goes back to an integer `pci` slot when its hvinfo
 * is exactly what the 2.10 → 2.16 upgrade makes of that slot: bus `pci.0`,
 * canonical hex addr below 0x20, the driver the runtime's `disk_type` /
 * `nic_type` gives, and the PCI-era id. `hvinfo: {}` is simply removed.
 * Everything else is a problem: SCSI, IDE and ISA hvinfo, other buses
 * (q35 root ports, `pcie.0`) and odd addrs (`force` drops the hvinfo), another
 * driver (`force` keeps the slot, drops the driver), a new-style id
 * (`allowIdChange` or `force`: 2.10 can only name it by the PCI-era id), and
 * a q35 machine (machine type in kvm_cmd or hvparams, or a `pcie-root-port`
 * in kvm_cmd: never).
 */
export function downgrade2_16To2_10(value: RuntimeV2_16): StepResult<RuntimeV2_10> {
  const hvparams = value[2];
  const problems: RuntimeProblem[] = q35LayoutProblems(value[0], hvparams);
  const nics = value[1].map((nic, i) => deviceTo2_10(nic, 'nic', `nics[${i}]`, hvparams, problems));
  const disks = value[3].map(
    ([dict, link, uri], i): RuntimeDiskEntry => [deviceTo2_10(dict, 'disk', `disks[${i}]`, hvparams, problems), link, uri],
  );
  return { value: [value[0], nics, hvparams, disks], changes: [], problems };
}

function label2_10(kind: DeviceKind, dict: RuntimeNic | RuntimeDisk, field: string, names?: ReadonlyMap<string, string>): string {
  const known = names?.get(String(dict.uuid));
  if (known !== undefined) return known;
  return typeof dict.pci === 'number' ? pciEraId(kind, { uuid: String(dict.uuid), slot: dict.pci }) : `${field} (uuid ${String(dict.uuid)})`;
}

/** QEMU ids by device uuid, so a 2.16 → 2.9 refusal names devices as the 2.16 file does. */
export function deviceNames(value: RuntimeV2_16): Map<string, string> {
  const names = new Map<string, string>();
  const add = (d: RuntimeNic | RuntimeDisk): void => {
    const id = (d.hvinfo as { id?: unknown } | undefined)?.id;
    if (typeof id === 'string' && typeof d.uuid === 'string') names.set(d.uuid, id);
  };
  value[1].forEach(add);
  value[3].forEach(([d]) => add(d));
  return names;
}

/**
 * 2.10 → 2.9. 2.9 has no disks list (its disks are `-drive` options inside
 * kvm_cmd, so it can't know about hot-plugged ones) and no NIC slots: any
 * disk entry and any NIC `pci` is a problem that only `force` accepts
 * (dropping the entry or the slot). NIC uuids stay (2.8+ NICs have them).
 * A q35 machine is refused as in the 2.16 → 2.10 step, whatever the options.
 */
export function downgrade2_10To2_9(value: RuntimeV2_10, names?: ReadonlyMap<string, string>): StepResult<RuntimeV2_9> {
  const problems: RuntimeProblem[] = q35LayoutProblems(value[0], value[2]);
  const changes: RuntimeChange[] = [];
  const nics = value[1].map((nic, i) => {
    if (typeof nic.pci !== 'number') return nic;
    const field = `nics[${i}].pci`;
    const device = label2_10('nic', nic, `nics[${i}]`, names);
    problems.push({
      needs: 'force',
      field,
      device,
      reason: `nic "${device}" has PCI slot ${nic.pci}; 2.9 cannot store a NIC's slot`,
      change: { kind: 'dropped', field, device, detail: `dropped PCI slot ${nic.pci} of nic "${device}"` },
    });
    return replaceKey(nic, { key: 'pci', as: 'pci', value: undefined });
  });
  value[3].forEach(([dict], i) => {
    const field = `disks[${i}]`;
    const device = label2_10('disk', dict, field, names);
    problems.push({
      needs: 'force',
      field,
      device,
      reason: `disk "${device}" is listed in disks; 2.9 keeps disks only as -drive options in kvm_cmd`,
      change: { kind: 'dropped', field, device, detail: `dropped disk "${device}" (uuid ${String(dict.uuid)}) from the disks list` },
    });
  });
  return { value: [value[0], nics, value[2]], changes, problems };
}
