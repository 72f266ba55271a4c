/**
 * What the local QEMU offers, for a migration target to check before it
 * starts anything: its machine types (`-machine help`) and device models
 * (`-device help`). Each binary is asked once per process.
 */
import { execFile } from 'node:child_process';
import { parseMachineHelp } from '../process/host-facts';
import { BinaryFactsCache } from '../process/qemu-binary';
import { QEMU_DEVICE_ALIASES } from './drift';

export interface QemuOffer {
  /** Machine names, aliases included (`pc`, `pc-i440fx-7.2`, `q35`…). */
  machines: Set<string>;
  /** Alias → versioned machine type. */
  aliases: Record<string, string>;
  /** Device model names and their aliases. */
  devices: Set<string>;
  /** Device alias → the type it stands for (`virtio-balloon` → `virtio-balloon-pci`). */
  deviceAliases: Record<string, string>;
}

// Refreshed when the binary changes on disk (an upgrade may add machines and devices); bounded.
const cache = new BinaryFactsCache<QemuOffer>();

/** Names from `-device help` (`name "virtio-blk-pci", bus PCI, alias "virtio-blk"`). */
export function parseDeviceHelp(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const name = /^name "([^"]+)"/.exec(line);
    if (name === null) continue;
    out.add(name[1]);
    const alias = /alias "([^"]+)"/.exec(line);
    if (alias !== null) out.add(alias[1]);
  }
  return out;
}

/** Alias → type from `-device help` (`name "virtio-balloon-pci", bus PCI, alias "virtio-balloon"`). */
export function parseDeviceAliases(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^name "([^"]+)".*\balias "([^"]+)"/.exec(line);
    if (m !== null) out[m[2]] = m[1];
  }
  return out;
}

function run(qemu: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(qemu, args, { timeout: 10_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}

/**
 * The machines and devices of QEMU binary `qemu`.
 * @throws Error when the binary cannot be run (the caller names the field)
 */
export function qemuOffer(qemu: string): Promise<QemuOffer> {
  // A failure is not cached: a binary installed later is asked again.
  return cache.get(qemu, () => Promise.all([run(qemu, ['-machine', 'help']), run(qemu, ['-device', 'help'])]).then(([m, d]) => {
    const { machines, aliases } = parseMachineHelp(m);
    return { machines, aliases, devices: parseDeviceHelp(d), deviceAliases: parseDeviceAliases(d) };
  }));
}

/**
 * The device aliases of QEMU binary `qemu`, for drift checks; QEMU 7.2's x86
 * list when the binary cannot (or may not) be run here.
 */
export async function deviceAliasesOf(qemu: string | undefined): Promise<Readonly<Record<string, string>>> {
  if (qemu === undefined) return QEMU_DEVICE_ALIASES;
  return qemuOffer(qemu).then((o) => ({ ...QEMU_DEVICE_ALIASES, ...o.deviceAliases }), () => QEMU_DEVICE_ALIASES);
}
