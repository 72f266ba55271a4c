/**
 * Command building: a 2.16 runtime plus node-local options becomes a
 * complete QEMU argv. Reads addresses only; never assigns them (that is
 * assign.ts), so the migration target and hotplug build exactly what the
 * runtime file says.
 */
import { GkdError } from '../errors';
import type { HvInfo, NicBackend, RuntimeV2_16 } from '../types';
import { blockdevArgs, diskDeviceArgs, diskReadOnly, netdevArgs, nicDeviceArgs, renderFlat, type DiskIoParams } from './device-args';
import { runtimeHvParams, type PlannerHvParams } from './hvparams';
import { SCSI_BUS, SCSI_CONTROLLER_ID, isScsiDiskType } from './drivers';
import { deviceOptions } from './kvm-extra';
import { escapeOptionValue } from './option-escape';

/** Node-local options of a command line: none of them is stored in the runtime file. */
export interface BuildOptions {
  /** `kvm` (default) or `tcg` (software emulation, for machines without KVM). */
  accel?: 'kvm' | 'tcg';
  /** QMP server socket to add. */
  qmp?: string;
  /** Node-local directory for the pid file and the serial socket (Ganeti's `/var/run/ganeti/kvm-hypervisor`). */
  runDir?: string;
  /** `-incoming` URI (`tcp:HOST:PORT`, `unix:PATH`, `defer`). */
  incoming?: string;
  /** Start with the CPUs stopped (`-S`). */
  paused?: boolean;
  /** `-serial` chardevs; default one unix socket `<runDir>/ctrl/<name>.serial`. The count must match on a migration target. */
  serials?: string[];
  /** NIC backends by NIC UUID; default a tap the kernel names. */
  nicBackends?: Readonly<Record<string, NicBackend>>;
  /** Tells whether a disk path is a block device (`host_device`) rather than a file; default: a file. */
  isBlockDevice?: (path: string) => boolean;
}

/** Ganeti's KVM run dir: pid files and serial/QMP sockets live under it. */
export const DEFAULT_RUN_DIR = '/var/run/ganeti/kvm-hypervisor';

/** The instance name recorded in kvm_cmd (`-name`), with QEMU's comma escaping undone. */
export function runtimeName(runtime: RuntimeV2_16): string {
  const cmd = runtime[0];
  const i = cmd.indexOf('-name');
  if (i < 0 || typeof cmd[i + 1] !== 'string') throw new GkdError('GKD_RUNTIME_INVALID', 'Cannot build a command line: kvm_cmd has no "-name"', { field: '[0]' });
  return String(cmd[i + 1]).replace(/,,/g, ',');
}

/** The disk I/O parameters stored in the runtime's hvparams. */
export function diskIo(runtime: RuntimeV2_16): DiskIoParams {
  return ioOf(runtimeHvParams(runtime[2]));
}

function ioOf(hv: PlannerHvParams): DiskIoParams {
  // Ganeti's "default" passes no discard option; QEMU's default is "ignore".
  return { cache: hv.disk_cache, aio: hv.disk_aio, discard: hv.disk_discard === 'default' ? 'ignore' : hv.disk_discard };
}

function requireHvInfo(h: unknown, where: string): HvInfo {
  const o = h as Partial<HvInfo> | undefined;
  if (o === undefined || typeof o.driver !== 'string' || typeof o.id !== 'string' || typeof o.bus !== 'string') {
    throw new GkdError('GKD_RUNTIME_INVALID', `Cannot build ${where}: its hvinfo lacks driver, id or bus`, { field: where });
  }
  return o as HvInfo;
}

/** Options that take a value and are node-local: Ganeti stores them in kvm_cmd, we add our own. */
const NODE_LOCAL_WITH_VALUE = new Set(['-pidfile', '-monitor', '-qmp', '-D', '-runas', '-chroot']);

/**
 * A kvm_cmd ready to be extended with node-local options. Ours holds none;
 * one written by Ganeti holds its pid file, monitor, serial sockets,
 * `-daemonize` and `accel=` inside `-machine` (which QEMU refuses beside
 * `-accel`: "The -accel and "-machine accel=" options are incompatible").
 * Those are dropped; each serial port with a chardev is counted so the same
 * number of ports is rebuilt (a migration target must have the source's
 * serial devices). Ganeti's own read-time rewrites of options newer QEMUs
 * removed (`-localtime`, `-balloon virtio`) are applied too.
 */
export function nodeNeutralCommand(kvmCmd: readonly (string | number)[]): { cmd: string[]; serialPorts: number; origin: number[] } {
  const cmd: string[] = [];
  /** For each item of `cmd`, the index in kvm_cmd it comes from (for messages naming the runtime's place). */
  const origin: number[] = [];
  const push = (from: number, ...items: string[]): void => {
    cmd.push(...items);
    for (let k = 0; k < items.length; k++) origin.push(from + Math.min(k, 1));
  };
  let serialPorts = 0;
  for (let i = 0; i < kvmCmd.length; i++) {
    const a = String(kvmCmd[i]);
    const v = kvmCmd[i + 1] === undefined ? undefined : String(kvmCmd[i + 1]);
    if (NODE_LOCAL_WITH_VALUE.has(a)) i++;
    else if (a === '-daemonize' || a === '-enable-kvm') continue;
    else if (a === '-serial' && v !== undefined && v !== 'none') {
      serialPorts++;
      i++;
    } else if (a === '-machine' && v !== undefined) {
      push(i, a, v.split(',').filter((o) => !o.startsWith('accel=')).join(','));
      i++;
    } else if (a === '-localtime') push(i, '-rtc', 'base=localtime');
    else if (a === '-balloon' && v !== undefined && v.startsWith('virtio')) {
      push(i, '-device', `virtio-balloon${v.slice('virtio'.length)}`);
      i++;
    } else push(i, a);
  }
  return { cmd, serialPorts, origin };
}

/**
 * What Ganeti adds to the command line of an instance it starts without
 * storing it in kvm_cmd, for a runtime that lacks it: the SCSI controller
 * of a SCSI disk_type (`-device <scsi_controller_type>,id=scsi`, no
 * address, ahead of kvm_cmd's other devices, as Ganeti 3.0 places it, so
 * QEMU gives it the same slot), unless kvm_cmd has a device with id `scsi`.
 * Ganeti 3.0 stores its controller in kvm_cmd, and so does the planner; a
 * runtime from another writer may not, and its disks need the bus.
 * Inserted items come from no kvm_cmd index: their origin is -1.
 */
export function withImplicitDevices(neutral: { cmd: string[]; origin: number[] }, runtime: RuntimeV2_16): { cmd: string[]; origin: number[] } {
  const { cmd, origin } = neutral;
  const hv = runtimeHvParams(runtime[2]);
  const scsiDisks = isScsiDiskType(hv.disk_type) || runtime[3].some(([d]) => (d.hvinfo as { bus?: string } | undefined)?.bus === SCSI_BUS);
  const hasController = cmd.some((a, i) => i > 0 && cmd[i - 1] === '-device' && deviceOptions(a).get('id') === SCSI_CONTROLLER_ID);
  if (!scsiDisks || hasController) return neutral;
  const at = cmd.indexOf('-device');
  const pos = at < 0 ? cmd.length : at;
  return {
    cmd: [...cmd.slice(0, pos), '-device', `${hv.scsi_controller_type},id=${SCSI_CONTROLLER_ID}`, ...cmd.slice(pos)],
    origin: [...origin.slice(0, pos), -1, -1, ...origin.slice(pos)],
  };
}

/** Longest Unix socket path: sun_path holds 108 bytes with the terminating NUL (QEMU: "Path must be less than 108 bytes"). */
export const MAX_SOCKET_PATH = 107;

/** Refuses a socket path QEMU would refuse at start, naming the input that made it long. */
function checkSocketPath(path: string, field: string, name: string): void {
  const bytes = new TextEncoder().encode(path).length;
  if (bytes > MAX_SOCKET_PATH) {
    throw new GkdError('GKD_SPEC_INVALID', `Cannot build a command line for "${name}": the socket path "${path}" is ${bytes} bytes, over the ${MAX_SOCKET_PATH} a Unix socket allows; use a shorter ${field === 'qmp' ? 'QMP socket path' : 'instance name or run dir'}`, { field });
  }
}

/** Builds the full argv; argv[0] is the QEMU binary. */
export function buildArgv(runtime: RuntimeV2_16, options: BuildOptions = {}): string[] {
  const [kvmCmd, nics, hvparams, disks] = runtime;
  const hv = runtimeHvParams(hvparams);
  const name = runtimeName(runtime);
  const runDir = options.runDir ?? DEFAULT_RUN_DIR;
  const io = ioOf(hv);
  const neutral = nodeNeutralCommand(kvmCmd);
  const { serialPorts } = neutral;
  const { cmd } = withImplicitDevices(neutral, runtime);
  const argv = cmd;
  argv.push('-accel', options.accel ?? 'kvm');
  argv.push('-pidfile', `${runDir}/pid/${name}`);
  // `-serial none` (kept in cmd) means the instance was made without a serial port.
  const ports = serialPorts > 0 ? serialPorts : cmd.some((a, i) => a === '-serial' && cmd[i + 1] === 'none') ? 0 : 1;
  const serialPaths = Array.from({ length: ports }, (_, i) => `${runDir}/ctrl/${name}.serial${i === 0 ? '' : i}`);
  if (options.serials === undefined) for (const p of serialPaths) checkSocketPath(p, 'name', name);
  if (options.qmp !== undefined) checkSocketPath(options.qmp, 'qmp', name);
  const defaultSerials = serialPaths.map((p) => `unix:${escapeOptionValue(p)},server=on,wait=off`);
  for (const s of options.serials ?? defaultSerials) argv.push('-serial', s);
  if (options.qmp !== undefined) argv.push('-qmp', `unix:${escapeOptionValue(options.qmp)},server=on,wait=off`);

  // Without -nodefaults (Ganeti's command lines), QEMU adds a NIC of its own when no network option is
  // given; Ganeti passes "-net none" for an instance without NICs, outside kvm_cmd, so must we.
  if (nics.length === 0 && !cmd.includes('-nodefaults') && !cmd.some((a) => a === '-net' || a === '-netdev' || a === '-nic')) argv.push('-net', 'none');
  nics.forEach((nic, i) => {
    const h = requireHvInfo(nic.hvinfo, `nics[${i}]`);
    const backend = (nic.uuid !== undefined ? options.nicBackends?.[nic.uuid] : undefined) ?? { type: 'tap' };
    // vhost-net needs KVM's ioeventfds; under TCG QEMU can't use it.
    const vhost = hv.vhost_net && (options.accel ?? 'kvm') === 'kvm' && backend.type === 'tap';
    argv.push('-netdev', renderFlat(netdevArgs(h.id, backend, vhost), 'type'));
    argv.push('-device', renderFlat(nicDeviceArgs(h, String(nic.mac ?? '')), 'driver'));
  });
  // A kvm_cmd with -boot (Ganeti stores -boot d / n / a for a cdrom, network or floppy boot_order) decides
  // the boot device itself; a bootindex on the first disk would override it.
  const bootFromDisk = !cmd.includes('-boot');
  disks.forEach(([disk, link, uri], i) => {
    const h = requireHvInfo(disk.hvinfo, `disks[${i}]`);
    const src = { path: link, uri, readOnly: diskReadOnly(disk.mode, h.driver), blockDevice: options.isBlockDevice?.(link) ?? false };
    argv.push('-blockdev', renderFlat(blockdevArgs(h.id, src, io, `disks[${i}]`)));
    const dev = diskDeviceArgs(h, io, { bootindex: i === 0 && bootFromDisk ? 1 : undefined });
    argv.push('-device', renderFlat(dev, 'driver'));
  });
  if (options.paused) argv.push('-S');
  if (options.incoming !== undefined) argv.push('-incoming', options.incoming);
  return argv;
}
