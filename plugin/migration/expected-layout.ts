/**
 * The device layout a runtime file promises: every disk and NIC with its
 * hvinfo, plus every `-device` of kvm_cmd (the SCSI controller, q35 root
 * ports, kvm_extra devices). A migration target rebuilds exactly this, so
 * the source QEMU must have exactly this too. kvm_cmd is read as the
 * command is built (`nodeNeutralCommand`): Ganeti's `-balloon virtio[,…]`
 * is the `-device virtio-balloon[,…]` QEMU gets. Pure.
 */
import { deviceOptions, nodeNeutralCommand, withImplicitDevices } from '../planner';
import type { RuntimeV2_16 } from '../types';

/** Where a device is recorded in the runtime. */
export type RecordedIn = 'disk' | 'nic' | 'kvm_cmd';

/** One device the runtime records. */
export interface ExpectedDevice {
  /** QEMU id; for a kvm_cmd device without one, undefined (QEMU files it under peripheral-anon). */
  id?: string;
  recordedIn: RecordedIn;
  /** Index in the runtime's disks / NICs / kvm_cmd (for kvm_cmd: of the option's value as stored; -1 for a device Ganeti adds without storing it, the SCSI controller). */
  index: number;
  /** hvinfo-shaped fields to compare with QEMU (driver, bus, addr, SCSI address, unit). */
  fields: Record<string, unknown>;
  /** Disks: the path QEMU opens and the userspace URI. */
  path?: string;
  uri?: string | null;
  /** NICs: the MAC address. */
  mac?: string;
}

const COMPARED = ['driver', 'bus', 'addr', 'channel', 'scsi-id', 'lun', 'unit'] as const;
const INTEGER_KEYS = new Set(['channel', 'scsi-id', 'lun', 'unit']);

/** The hvinfo-shaped fields of a `-device` value (`virtio-scsi-pci,id=scsi,bus=pci.0,addr=0x5`). */
export function deviceOptionFields(value: string): { id?: string; fields: Record<string, unknown> } {
  const kv = deviceOptions(value);
  const fields: Record<string, unknown> = { driver: String(kv.get('driver') ?? '') };
  for (const k of COMPARED) {
    const v = kv.get(k);
    if (k === 'driver' || v === undefined) continue;
    fields[k] = INTEGER_KEYS.has(k) ? Number(v) : String(v);
  }
  const id = kv.get('id');
  return id === undefined ? { fields } : { id: String(id), fields };
}

function hvinfoFields(h: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of COMPARED) if (h[k] !== undefined) out[k] = h[k];
  return out;
}

/** Every device the runtime records, in runtime order: kvm_cmd, NICs, disks. */
export function expectedLayout(runtime: RuntimeV2_16): ExpectedDevice[] {
  const [kvmCmd, nics, , disks] = runtime;
  const out: ExpectedDevice[] = [];
  const { cmd, origin } = withImplicitDevices(nodeNeutralCommand(kvmCmd), runtime);
  for (let i = 0; i < cmd.length - 1; i++) {
    if (cmd[i] !== '-device') continue;
    const { id, fields } = deviceOptionFields(cmd[i + 1]);
    out.push({ ...(id === undefined ? {} : { id }), recordedIn: 'kvm_cmd', index: origin[i + 1], fields });
  }
  nics.forEach((n, i) => {
    const h = (n.hvinfo ?? {}) as Record<string, unknown>;
    if (typeof h.id !== 'string') return; // no placement recorded (hvinfo {}): nothing to compare
    out.push({ id: h.id, recordedIn: 'nic', index: i, fields: hvinfoFields(h), ...(typeof n.mac === 'string' ? { mac: n.mac } : {}) });
  });
  disks.forEach(([d, path, uri], i) => {
    const h = (d.hvinfo ?? {}) as Record<string, unknown>;
    if (typeof h.id !== 'string') return;
    out.push({ id: h.id, recordedIn: 'disk', index: i, fields: hvinfoFields(h), path, uri });
  });
  return out;
}
