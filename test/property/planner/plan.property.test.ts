import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { GkdError } from '../../../plugin/errors';
import { buildArgv, isQemuId, planInstance } from '../../../plugin/planner';
import { splitOptions } from '../../../plugin/planner/kvm-extra';
import { isPciHvInfo, isScsiHvInfo, type InstanceSpec } from '../../../plugin/types';
import { specArb } from '../../helpers/specs';

/** Every `-device` in argv as a map of its options (driver under `driver`). */
function devicesOf(argv: string[]): Array<Map<string, string>> {
  return argv
    .filter((_, i) => argv[i - 1] === '-device')
    .map((d) => {
      const [driver, ...opts] = splitOptions(d);
      return new Map([['driver', driver], ...opts.map((o) => [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)] as [string, string])]);
    });
}

/** Usable SCSI targets per controller (qemu-lab probes, guest-visible), restated here so the test does not trust the planner's table. */
const SCSI_TARGETS: Record<string, number> = { lsi: 7, dc390: 7, mptsas1068: 8, megasas: 64, pvscsi: 64, 'virtio-scsi-pci': 256 };

/** The limits the planner must enforce. */
function exceedsALimit(spec: InstanceSpec): boolean {
  const hv = spec.hvparams as Record<string, any>;
  const scsi = ['scsi-hd', 'scsi-block', 'scsi-generic', 'scsi-cd'].includes(hv.disk_type);
  if (spec.disks.length > 16 || spec.nics.length > 8) return true;
  if (scsi && spec.disks.length > SCSI_TARGETS[hv.scsi_controller_type]) return true;
  if (hv.nic_type === 'ne2k_isa' && spec.nics.length > 1) return true;
  const q35 = String(hv.machine_version).includes('q35');
  if (hv.disk_type === 'ide' && spec.disks.length > (q35 ? 6 : 4)) return true;
  return false;
}

describe('planInstance() properties', () => {
  it('either plans a consistent layout or refuses with a GkdError, never anything else', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        let plan;
        try {
          plan = planInstance(spec);
        } catch (e) {
          assert.ok(e instanceof GkdError, `unexpected ${String(e)}`);
          assert.ok(['GKD_CAPACITY'].includes(e.code), `${e.code}: ${e.message}`);
          assert.ok(e.field, 'a refusal names a field');
          return;
        }
        // Every limit violation is an error, never an argv.
        assert.equal(exceedsALimit(spec), false, 'a spec over a limit was planned');
        const argv = buildArgv(plan.runtime, { accel: 'tcg', nicBackends: plan.backends });
        const devs = devicesOf(argv);

        // No two PCI functions share a bus address; no two SCSI devices share a target.
        const pci = new Set<string>();
        const scsi = new Set<string>();
        for (const d of devs) {
          if (d.has('addr')) {
            const [slot, fn = '0'] = d.get('addr')!.split('.');
            const key = `${d.get('bus') ?? 'root'}/${parseInt(slot, 16)}.${parseInt(fn, 16)}`;
            assert.ok(!pci.has(key), `PCI address ${key} used twice`);
            pci.add(key);
          }
          if (d.has('scsi-id')) {
            const key = `${d.get('bus')}/${d.get('channel')}:${d.get('scsi-id')}:${d.get('lun')}`;
            assert.ok(!scsi.has(key), `SCSI address ${key} used twice`);
            scsi.add(key);
          }
        }
        // Builtin root slots stay free.
        const q35 = plan.machine.family === 'q35';
        for (const d of devs) {
          if ((d.get('bus') ?? plan.machine.rootBus) === plan.machine.rootBus && d.has('addr')) {
            const slot = parseInt(d.get('addr')!.split('.')[0], 16);
            assert.ok(!plan.machine.builtinSlots.includes(slot), `slot ${slot} is the machine's own`);
          }
        }
        // Every id is a valid QEMU id; every device's hvinfo is exactly what argv says.
        for (const dev of plan.devices) {
          assert.ok(isQemuId(dev.id) && dev.id.length <= 31, dev.id);
          const d = devs.find((x) => x.get('id') === dev.id);
          assert.ok(d, `device ${dev.id} missing from argv`);
          for (const [k, v] of Object.entries(dev.hvinfo)) assert.equal(d.get(k), String(v), `${dev.id}.${k}`);
          if (isPciHvInfo(dev.hvinfo)) {
            if (q35) assert.equal(dev.hvinfo.addr, '0x0', 'q35 devices sit at slot 0 of their port');
            else assert.ok(parseInt(dev.hvinfo.addr, 16) >= Number((spec.hvparams as any).kvm_pci_reservations), 'pc devices respect the reservations');
          }
          if (isScsiHvInfo(dev.hvinfo)) assert.equal(dev.hvinfo.bus, 'scsi.0');
        }
        // On q35 each port carries at most one device, at slot 0.
        if (q35) {
          const perPort = new Map<string, number>();
          for (const d of devs) if (d.get('bus')?.startsWith('rp')) perPort.set(d.get('bus')!, (perPort.get(d.get('bus')!) ?? 0) + 1);
          for (const [port, n] of perPort) assert.equal(n, 1, `${port} carries ${n} devices`);
        }
        // Unknown hvparams pass through untouched.
        for (const [k, v] of Object.entries(spec.hvparams!)) if (k.startsWith('x_')) assert.deepEqual(plan.runtime[2][k], v);
      }),
      { numRuns: 600 },
    );
  });

  it('is deterministic: the same spec gives the same runtime', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        let a: unknown;
        try {
          a = planInstance(spec).runtime;
        } catch {
          return;
        }
        assert.deepEqual(planInstance(structuredClone(spec)).runtime, a);
      }),
      { numRuns: 200 },
    );
  });
});
