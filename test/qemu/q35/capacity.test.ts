/**
 * The hot-add capacity table in docs/q35.md, recomputed: for a few starting
 * device counts with default hvparams, plan the instance on pc and on q35,
 * start it paused on real QEMU, read what QEMU occupies (the allocator's own
 * readOccupancy) and count how many disks, NICs, and disks and NICs
 * together the real allocator still places. The doc must hold exactly this
 * table, so it cannot drift from the code.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isGkdError } from '../../../plugin/errors';
import { freeCapacity } from '../../../plugin/hotplug';
import { readOccupancy } from '../../../plugin/hotplug/occupancy';
import { SCSI_BUS } from '../../../plugin/planner';
import { startPlanned } from '../../helpers/plan-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { makeSpec } from '../../helpers/specs';

const ROWS: Array<[string, Record<string, unknown>, number, number]> = [
  ['paravirtual', {}, 1, 1],
  ['paravirtual', {}, 4, 2],
  ['paravirtual', {}, 8, 4],
  ['paravirtual', {}, 12, 6],
  ['paravirtual', {}, 16, 4],
  ['scsi-hd (lsi)', { disk_type: 'scsi-hd' }, 1, 1],
  ['scsi-hd (virtio-scsi-pci)', { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }, 1, 1],
];

describe('hot-add capacity, q35 vs pc (docs/q35.md)', function () {
  this.timeout(60_000);
  useQemuCleanup();

  it('docs/q35.md holds the table the allocator gives on real QEMU', async () => {
    const lines = [
      '| disk_type | disks + NICs at start | pc: disks | pc: NICs | pc: both | q35: disks | q35: NICs | q35: both |',
      '|---|---|---|---|---|---|---|---|',
    ];
    for (const [label, hv, disks, nics] of ROWS) {
      const cells: string[] = [];
      for (const machine of ['pc', 'q35']) {
        let p;
        try {
          p = await startPlanned(makeSpec({ disks, nics, hvparams: { ...hv, machine_version: machine } }));
        } catch (e) {
          // An instance the planner cannot even start with: nothing to hot-add.
          assert.ok(isGkdError(e) && e.code === 'GKD_CAPACITY', String(e));
          cells.push('cannot start', '', '');
          continue;
        }
        const live = await readOccupancy(p.vm.qmp, SCSI_BUS);
        const rt = p.plan.runtime;
        cells.push(String(freeCapacity(rt, 'disk', live)), String(freeCapacity(rt, 'nic', live)), String(freeCapacity(rt, ['disk', 'nic'], live)));
        await p.vm.stop();
      }
      lines.push(`| ${label} | ${disks} + ${nics} | ${cells.join(' | ')} |`);
    }
    const table = lines.join('\n');
    const doc = readFileSync(join(__dirname, '..', '..', '..', '..', 'docs', 'q35.md'), 'utf8');
    assert.ok(doc.includes(table), `docs/q35.md must contain this table:\n${table}\n`);
  });
});
