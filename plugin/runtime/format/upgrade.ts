/**
 * Upgrade steps, the way Ganeti upgrades a runtime file on read
 * (ganeti-facts.md section 1, "Loading and upgrade-on-read"), with one
 * deliberate difference: a PCI-era device keeps its PCI-era id in hvinfo, so
 * QEMU still knows it by that id and it stays hot-removable.
 *
 * Pure: input values are not mutated; results may share unchanged nested
 * values (nicparams, params, …) with the input.
 */
import type { HvParams, RuntimeDisk, RuntimeDiskEntry, RuntimeNic, RuntimeV2_10, RuntimeV2_16, RuntimeV2_9 } from '../../types';
import { type RuntimeChange, type StepResult, replaceKey } from './change';
import { type DeviceKind, PCI_ERA_BUS, pciEraDriver, pciEraId, slotToAddr } from './pci-era';

/** Options of the upgrade steps. */
export interface UpgradeOptions {
  /**
   * Returns a fresh random UUID. Called once per NIC without `uuid` (2.9
   * files from Ganeti before 2.8), as Ganeti does: such a NIC never matches
   * the cluster config again, which is why the change is reported.
   */
  uuid: () => string;
}

/**
 * 2.9 → 2.10: `disks` becomes `[]` (2.9 disks live as `-drive` options in
 * kvm_cmd and stay there; they can't be hot-removed), NICs without `uuid`
 * get one. Nothing else changes.
 */
export function upgrade2_9To2_10(value: RuntimeV2_9, options: UpgradeOptions): StepResult<RuntimeV2_10> {
  const changes: RuntimeChange[] = [];
  const nics = value[1].map((nic, i): RuntimeNic => {
    if (typeof nic.uuid === 'string') return nic;
    const uuid = options.uuid();
    changes.push({ kind: 'added', field: `nics[${i}].uuid`, device: `nics[${i}]`, detail: `gave nics[${i}] the new uuid "${uuid}"` });
    return replaceKey(nic, { key: 'uuid', as: 'uuid', value: uuid });
  });
  return { value: [value[0], nics, value[2], []], changes, problems: [] };
}

/** The 2.16 form of one PCI-era device dict: `pci` replaced in place by hvinfo. */
function deviceTo2_16<T extends RuntimeNic | RuntimeDisk>(dict: T, kind: DeviceKind, hvparams: HvParams): T {
  if (typeof dict.pci !== 'number') return replaceKey(dict, { key: 'hvinfo', as: 'hvinfo', value: {} });
  const slot = dict.pci;
  // Key order as Ganeti's upgrade builds it: driver, id, addr, bus.
  const hvinfo = {
    driver: pciEraDriver(kind, hvparams),
    id: pciEraId(kind, { uuid: String(dict.uuid), slot }),
    addr: slotToAddr(slot),
    bus: PCI_ERA_BUS,
  };
  return replaceKey(dict, { key: 'pci', as: 'hvinfo', value: hvinfo });
}

/**
 * 2.10 → 2.16: each device's `pci` slot becomes hvinfo `{driver, id, addr, bus}`
 * with the driver the runtime's own `disk_type`/`nic_type` gave it
 * (paravirtual → virtio-blk-pci / virtio-net-pci, else the type verbatim),
 * the PCI-era id `hot<kind>-<uuid group 1>-pci-<slot>`, the slot as hex and
 * bus `pci.0`. Devices without `pci` get `hvinfo: {}`, as Ganeti does.
 * Loses nothing: {@link downgrade2_16To2_10} restores the input exactly.
 */
export function upgrade2_10To2_16(value: RuntimeV2_10): StepResult<RuntimeV2_16> {
  const hvparams = value[2];
  const nics = value[1].map((nic) => deviceTo2_16(nic, 'nic', hvparams));
  const disks = value[3].map(([dict, link, uri]): RuntimeDiskEntry => [deviceTo2_16(dict, 'disk', hvparams), link, uri]);
  return { value: [value[0], nics, hvparams, disks], changes: [], problems: [] };
}
