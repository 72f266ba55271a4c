/**
 * Machine types as data: the root bus and the slots the machine itself
 * occupies under `-nodefaults` (QEMU 7.2 query-pci: pc has the host bridge
 * at 00.0 and PIIX3 ISA/IDE/PM at 01.x; q35 has the host bridge at 00.0 and
 * LPC/AHCI/SMBus at 1f.x).
 */
import { GkdError } from '../errors';

/** The two PC machine families QEMU offers. */
export type MachineFamily = 'pc' | 'q35';

export interface MachineLayout {
  family: MachineFamily;
  /** The value given to `-machine`. */
  type: string;
  /** `pci.0` (i440fx) or `pcie.0` (q35). */
  rootBus: string;
  /** Root-bus slots QEMU fills itself. */
  builtinSlots: readonly number[];
  /** IDE buses and units per bus (PIIX3: 2 x 2; ICH9 AHCI: 6 ports x 1). */
  ide: { buses: number; units: number };
}

/** Slots on a PCI bus. */
export const PCI_SLOTS = 32;

const PC_RE = /^pc(-i440fx)?-\d+(\.\d+)+$/;
const Q35_RE = /^pc-q35-\d+(\.\d+)+$/;

/**
 * Resolves `machine_version`. An empty value means QEMU's default machine
 * (`pc`); an alias (`pc`, `q35`) is frozen to the versioned type the local
 * QEMU maps it to when the caller knows it (`aliases`), because a migration
 * target must run the very same machine type.
 */
export function resolveMachine(machineVersion: string, aliases: Readonly<Record<string, string>> = {}): MachineLayout {
  let type = machineVersion === '' ? 'pc' : machineVersion;
  if (aliases[type] !== undefined) type = aliases[type];
  if (type === 'pc' || PC_RE.test(type)) {
    return { family: 'pc', type, rootBus: 'pci.0', builtinSlots: [0, 1], ide: { buses: 2, units: 2 } };
  }
  if (type === 'q35' || Q35_RE.test(type)) {
    return { family: 'q35', type, rootBus: 'pcie.0', builtinSlots: [0, 0x1f], ide: { buses: 6, units: 1 } };
  }
  throw new GkdError(
    'GKD_UNSUPPORTED_VALUE',
    `Cannot use hvparams.machine_version ${JSON.stringify(machineVersion)}: expected "", "pc", "q35", "pc-i440fx-X.Y" or "pc-q35-X.Y"`,
    { field: 'hvparams.machine_version' },
  );
}
