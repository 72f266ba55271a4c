/**
 * The guest-facing view of a q35 layout: query-pci once firmware has
 * numbered the root ports' secondary buses (after `cont`; without a kernel
 * SeaBIOS still enumerates PCI before it finds nothing to boot). Before
 * that, query-pci does not list devices behind root ports at all.
 */
import { strict as assert } from 'node:assert';
import { parsePorts } from '../../../plugin/planner';
import type { QmpClient } from '../../../plugin/qmp';
import type { HvInfo, RuntimeV2_16 } from '../../../plugin/types';
import { isPciHvInfo } from '../../../plugin/types';

export interface PciDev {
  bus: number;
  slot: number;
  function: number;
  qdev_id: string;
  pci_bridge?: { bus: { number: number; secondary: number; subordinate: number }; devices: PciDev[] };
}
export interface PciBus {
  bus: number;
  devices: PciDev[];
}

/** Resumes the VM and waits until every root port on bus 0 has a secondary bus number. */
export async function runFirmware(qmp: QmpClient, timeoutMs = 20_000): Promise<PciBus[]> {
  await qmp.execute('cont');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pci = await qmp.execute<PciBus[]>('query-pci');
    const bridges = pci[0].devices.filter((d) => d.pci_bridge !== undefined);
    if (bridges.every((b) => b.pci_bridge!.bus.secondary > 0)) return pci;
    if (Date.now() > deadline) assert.fail(`firmware did not number the root ports within ${timeoutMs} ms: ${JSON.stringify(bridges.map((b) => [b.qdev_id, b.pci_bridge!.bus.secondary]))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Where query-pci shows each qdev id: the root port it sits behind ('' on bus 0), its slot and function. */
export function placements(pci: PciBus[]): Map<string, { port: string; slot: number; fn: number }> {
  const out = new Map<string, { port: string; slot: number; fn: number }>();
  for (const d of pci[0].devices) {
    if (d.qdev_id !== '') out.set(d.qdev_id, { port: '', slot: d.slot, fn: d.function });
    for (const c of d.pci_bridge?.devices ?? []) if (c.qdev_id !== '') out.set(c.qdev_id, { port: d.qdev_id, slot: c.slot, fn: c.function });
  }
  return out;
}

/**
 * Asserts the running guest's PCI tree has every root port where kvm_cmd
 * declares it and every PCI device of `hvinfos` (plus `-device`s of kvm_cmd
 * on a port, like the SCSI controller) alone at 00.0 behind its port.
 */
export function assertPciTree(pci: PciBus[], runtime: RuntimeV2_16, hvinfos: HvInfo[]): void {
  const at = placements(pci);
  for (const p of parsePorts(runtime[0])) {
    assert.deepEqual(at.get(p.id), { port: '', slot: p.slot, fn: p.fn }, `root port ${p.id}`);
  }
  const onPorts: Array<{ id: string; bus: string }> = hvinfos.filter(isPciHvInfo).map((h) => ({ id: h.id, bus: h.bus }));
  const cmd = runtime[0];
  for (let i = 0; i < cmd.length - 1; i++) {
    const m = cmd[i] === '-device' ? /^(?!pcie-root-port)[^,]+,id=([^,]+),bus=(rp\d+),/.exec(String(cmd[i + 1])) : null;
    if (m !== null) onPorts.push({ id: m[1], bus: m[2] });
  }
  for (const d of onPorts) {
    assert.deepEqual(at.get(d.id), { port: d.bus, slot: 0, fn: 0 }, `${d.id} in query-pci`);
  }
  for (const d of pci[0].devices) {
    const n = d.pci_bridge?.devices.length ?? 0;
    assert.ok(n <= 1, `${d.qdev_id} has ${n} devices behind it`);
  }
}
