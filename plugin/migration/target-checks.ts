/**
 * Can this node run the incoming runtime exactly? Pure: the caller passes
 * what the local QEMU offers and how to test a path.
 *
 * The checks are the ones QEMU itself would fail on only after the source
 * started sending (machine type: "Machine type received is 'pc-i440fx-7.2'
 * and local is 'pc-i440fx-7.1'") or at start-up (a missing disk file or
 * device model), so the target refuses before anything runs.
 */
import { deviceOptions, splitOptions } from '../planner';
import type { RuntimeV2_16 } from '../types';
import type { QemuOffer } from './node-facts';

/** One reason the target cannot honour the runtime. */
export interface Refusal {
  /** JSON path into the runtime (`runtime[3][1]`) or the param (`incoming`). */
  field: string;
  /** QEMU id of the device concerned. */
  device?: string;
  reason: string;
}

/** The `-machine` type in kvm_cmd, or undefined when QEMU's default machine is used. */
export function machineType(kvmCmd: readonly (string | number)[]): string | undefined {
  for (let i = 0; i < kvmCmd.length - 1; i++) {
    if (kvmCmd[i] !== '-machine' && kvmCmd[i] !== '-M') continue;
    const opts = splitOptions(String(kvmCmd[i + 1]));
    const typed = opts.find((o) => o.startsWith('type='));
    if (typed !== undefined) return typed.slice(5);
    if (!opts[0].includes('=')) return opts[0];
  }
  return undefined;
}

/** Checks an `-incoming` URI; undefined when acceptable. */
export function incomingProblem(incoming: string): string | undefined {
  if (incoming === 'defer') return undefined;
  if (/^tcp:(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(incoming)) return undefined;
  if (/^unix:\/\S+$/.test(incoming)) return undefined;
  return `"${incoming}" is not "tcp:HOST:PORT", "unix:/PATH" or "defer"`;
}

/**
 * Everything that stops this node from running `runtime` as the source
 * runs it: machine type, device models, disk paths. Empty when it can.
 */
export function targetRefusals(runtime: RuntimeV2_16, offer: QemuOffer, exists: (path: string) => boolean): Refusal[] {
  const [kvmCmd, nics, , disks] = runtime;
  const out: Refusal[] = [];
  const machine = machineType(kvmCmd);
  if (machine !== undefined && !offer.machines.has(machine)) {
    const i = kvmCmd.findIndex((x) => x === '-machine' || x === '-M');
    out.push({ field: `runtime[0][${i + 1}]`, reason: `machine type "${machine}" is not available in the local QEMU` });
  }
  for (let i = 0; i < kvmCmd.length - 1; i++) {
    if (kvmCmd[i] !== '-device') continue;
    const kv = deviceOptions(String(kvmCmd[i + 1]));
    const driver = String(kv.get('driver') ?? '');
    const id = kv.get('id') === undefined ? undefined : String(kv.get('id'));
    if (!offer.devices.has(driver)) out.push({ field: `runtime[0][${i + 1}]`, ...(id === undefined ? {} : { device: id }), reason: `device model "${driver}" is not available in the local QEMU` });
  }
  nics.forEach((n, i) => {
    const h = (n.hvinfo ?? {}) as { driver?: string; id?: string };
    if (h.driver !== undefined && !offer.devices.has(h.driver)) {
      out.push({ field: `runtime[1][${i}].hvinfo.driver`, ...(h.id === undefined ? {} : { device: h.id }), reason: `NIC model "${h.driver}" is not available in the local QEMU` });
    }
  });
  disks.forEach(([d, path, uri], i) => {
    const h = (d.hvinfo ?? {}) as { driver?: string; id?: string };
    const device = h.id === undefined ? {} : { device: h.id };
    if (h.driver !== undefined && !offer.devices.has(h.driver)) {
      out.push({ field: `runtime[3][${i}][0].hvinfo.driver`, ...device, reason: `disk model "${h.driver}" is not available in the local QEMU` });
    }
    // A userspace URI (rbd, gluster) is reached over the network, not through a local path.
    if ((uri ?? null) === null && !exists(path)) {
      out.push({ field: `runtime[3][${i}][1]`, ...device, reason: `disk path "${path}" does not exist on this node` });
    }
  });
  return out;
}
