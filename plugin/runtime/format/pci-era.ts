/**
 * The facts of Ganeti's PCI era (2.10 to 2.15) that the 2.10 <-> 2.16
 * conversion must reproduce exactly: the device id, the driver the old
 * release rebuilds a device with, and the slot/addr encoding.
 *
 * Sources (facts, not code): ganeti-facts.md sections 1 and 2; Ganeti
 * v2.15.2 `_GenerateDeviceKVMId` and v2.16.2 `_UpgradeSerializedRuntime`.
 */
import type { HvParams } from '../../types';

/** The two device kinds a runtime file lists. */
export type DeviceKind = 'disk' | 'nic';

/** The only PCI bus the PCI-era releases know. */
export const PCI_ERA_BUS = 'pci.0';

/** Slots on pci.0 (QEMU_PCI_SLOTS). */
export const PCI_SLOTS = 32;

/** Ganeti's default for `disk_type` and `nic_type` when the runtime lacks it. */
const DEFAULT_TYPE = 'paravirtual';

/**
 * The id a PCI-era release gives a device: `hot<kind>-<first uuid group>-pci-<slot>`,
 * e.g. `hotdisk-7c079136-pci-4`. QEMU knows a device started or hot-added
 * by such a release under this id, so it must survive upgrades.
 */
export function pciEraId(kind: DeviceKind, device: { uuid: string; slot: number }): string {
  return `hot${kind}-${device.uuid.split('-')[0]}-pci-${device.slot}`;
}

/**
 * The QEMU driver a PCI-era release builds for a device of `kind`, read from
 * the runtime's own hvparams: `paravirtual` means virtio, anything else is
 * the hvparam value verbatim (e.g. `e1000`, `ide`). Missing hvparams take
 * Ganeti's default, `paravirtual`.
 */
export function pciEraDriver(kind: DeviceKind, hvparams: HvParams): string {
  const raw = hvparams[kind === 'disk' ? 'disk_type' : 'nic_type'];
  const type = typeof raw === 'string' ? raw : DEFAULT_TYPE;
  if (type !== 'paravirtual') return type;
  return kind === 'disk' ? 'virtio-blk-pci' : 'virtio-net-pci';
}

/** The hvparam a device kind's driver comes from, for messages. */
export function typeParam(kind: DeviceKind): 'disk_type' | 'nic_type' {
  return kind === 'disk' ? 'disk_type' : 'nic_type';
}

/** A slot as Ganeti writes it in hvinfo: Python's `hex()`, lower case, no padding (`0xc`). */
export function slotToAddr(slot: number): string {
  return `0x${slot.toString(16)}`;
}

/**
 * The slot an hvinfo `addr` names, or undefined unless `addr` is exactly what
 * {@link slotToAddr} produces for a slot on pci.0. Other spellings (`0x0c`,
 * `0XC`) are valid hex but would not come back byte-identical.
 */
export function canonicalAddrToSlot(addr: string): number | undefined {
  if (!/^0x(0|[1-9a-f][0-9a-f]?)$/.test(addr)) return undefined;
  const slot = Number.parseInt(addr.slice(2), 16);
  return slot < PCI_SLOTS ? slot : undefined;
}
