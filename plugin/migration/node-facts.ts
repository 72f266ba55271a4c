/**
 * What the local QEMU offers, for a migration target to check before it
 * starts anything: its machine types (`-machine help`) and device models
 * (`-device help`). Each binary is asked once per process.
 */
import { execFile } from 'node:child_process';
import { parseMachineHelp } from '../process/host-facts';

export interface QemuOffer {
  /** Machine names, aliases included (`pc`, `pc-i440fx-7.2`, `q35`…). */
  machines: Set<string>;
  /** Alias → versioned machine type. */
  aliases: Record<string, string>;
  /** Device model names and their aliases. */
  devices: Set<string>;
}

const cache = new Map<string, Promise<QemuOffer>>();

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
  let p = cache.get(qemu);
  if (p === undefined) {
    p = Promise.all([run(qemu, ['-machine', 'help']), run(qemu, ['-device', 'help'])]).then(([m, d]) => {
      const { machines, aliases } = parseMachineHelp(m);
      return { machines, aliases, devices: parseDeviceHelp(d) };
    });
    cache.set(qemu, p);
    p.catch(() => cache.delete(qemu)); // a binary installed later is asked again
  }
  return p;
}
