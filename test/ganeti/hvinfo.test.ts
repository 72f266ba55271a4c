/**
 * Ganeti is the oracle for hvinfo: for the same instance, the planner's
 * hvinfo of every disk and NIC equals what Ganeti 3.0 wrote into its runtime
 * file when it started the instance, and Ganeti's own hv_kvm code reads the
 * runtime file the planner writes and rebuilds the very same devices.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  addInstance, call, ensureGanetiNode, ganetiOracle, ganetiRuntime, gnt, hvinfoComparisons, removeInstance, RUNTIME_DIR, SKIP_GANETI, type AddOptions,
} from './helpers/lab';

/** One device's hvinfo in a few characters: driver@where. */
function describeHvinfo(h: Record<string, unknown>): string {
  const where = h.addr !== undefined ? String(h.addr) : h['scsi-id'] !== undefined ? `${String(h.bus)}:${String(h['scsi-id'])}` : String(h.bus ?? '-');
  return `${String(h.driver)}@${where}`;
}

interface Case {
  what: string;
  o: AddOptions;
}

const CASES: Case[] = [
  { what: 'paravirtual, 1 disk + 1 NIC (cluster defaults)', o: {} },
  { what: 'paravirtual, 12 disks + 8 NICs (every slot above the reservations)', o: { disks: 12, nics: 8 } },
  { what: 'paravirtual, 16 disks + 8 NICs with kvm_pci_reservations=4', o: { disks: 16, nics: 8, hv: { kvm_pci_reservations: 4 } } },
  { what: 'paravirtual, 3 disks + 2 NICs with kvm_pci_reservations=20', o: { disks: 3, nics: 2, hv: { kvm_pci_reservations: 20 } } },
  { what: 'scsi-hd on lsi, 7 disks + 2 NICs', o: { disks: 7, nics: 2, hv: { disk_type: 'scsi-hd' } } },
  { what: 'scsi-hd on megasas, 16 disks + 8 NICs', o: { disks: 16, nics: 8, hv: { disk_type: 'scsi-hd', scsi_controller_type: 'megasas' } } },
  { what: 'scsi-hd on virtio-scsi-pci, 16 disks + 8 NICs', o: { disks: 16, nics: 8, hv: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' } } },
  { what: 'e1000 NICs, 2 paravirtual disks', o: { disks: 2, nics: 3, hv: { nic_type: 'e1000' } } },
  {
    what: 'kvm_extra devices inside the reservations (an RNG at slot 5, a serial bus QEMU places itself)',
    o: { disks: 2, nics: 2, hv: { kvm_extra: '-device virtio-rng-pci,id=rng0,bus=pci.0,addr=0x5 -device virtio-serial-pci,id=vser0' } },
  },
];

type GanetiRuntime = ReturnType<typeof ganetiRuntime>;

/** The instance spec Ganeti's hooks would describe, read from Ganeti's own runtime file. */
function specFrom(name: string, rt: GanetiRuntime): Record<string, unknown> {
  const cmd = rt[0];
  const m = cmd.indexOf('-m');
  return {
    name,
    hvparams: rt[2],
    beparams: { maxmem: Number(cmd[m + 1]), vcpus: 1 },
    disks: rt[3].map(([d, link]) => ({ uuid: d.uuid, path: link, mode: d.mode, size: d.size, uri: null })),
    nics: rt[1].map((n) => ({ uuid: n.uuid, mac: n.mac, nicparams: n.nicparams })),
  };
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 is the oracle: planner hvinfo equals the hvinfo Ganeti writes', function () {
  this.timeout(300_000);
  const tmp = mkdtempSync(join(tmpdir(), 'gkd-oracle-'));

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
  });

  CASES.forEach((c, i) => {
    it(c.what, async () => {
      const name = `gkd-hv${i}.example.com`;
      await removeInstance(name);
      try {
        const add = await addInstance(name, { ...c.o, diskSizeMb: 1 });
        assert.equal(add.code, 0, add.stdout + add.stderr);
        await gnt('gnt-instance', 'start', name);
        const rt = ganetiRuntime(name);
        const plan = await call<{ runtime: GanetiRuntime; devices: Array<{ kind: string; uuid: string; hvinfo: Record<string, unknown> }> }>(
          'instance.plan', { instance: specFrom(name, rt) },
        );
        const ganeti = [
          ...rt[3].map(([d]) => ({ kind: 'disk', uuid: d.uuid, hvinfo: d.hvinfo })),
          ...rt[1].map((n) => ({ kind: 'nic', uuid: n.uuid, hvinfo: n.hvinfo })),
        ];
        const ours = plan.devices.map((d) => ({ kind: d.kind, uuid: d.uuid, hvinfo: d.hvinfo }));
        // Same keys in the same order too: Ganeti builds -device strings from the dict's order.
        assert.equal(JSON.stringify(ours), JSON.stringify(ganeti));

        // The instance Ganeti started, as it runs: no drift.
        const v = await call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name });
        assert.deepEqual(v.differences, []);
        assert.equal(v.clean, true);

        // Ganeti's own code reads the runtime file the planner writes and rebuilds the same devices.
        const ourFile = join(tmp, `${name}.runtime`);
        writeFileSync(ourFile, `${JSON.stringify(plan.runtime)}\n`);
        const fromOurs = ganetiOracle('rebuild', ourFile);
        const fromGanetis = ganetiOracle('rebuild', join(RUNTIME_DIR, `${name}.runtime`));
        assert.deepEqual(fromOurs.disk_devices, fromGanetis.disk_devices);
        assert.deepEqual(fromOurs.nic_devices, fromGanetis.nic_devices);
        assert.deepEqual(fromOurs.nic_macs, fromGanetis.nic_macs);
        hvinfoComparisons.push(`${c.what}: ${ours.length} devices equal (${ours.map((d) => describeHvinfo(d.hvinfo)).join(' ')}); verify clean; Ganeti's hv_kvm rebuilds the same -device list from either file`);
      } finally {
        await removeInstance(name);
      }
    });
  });
});
