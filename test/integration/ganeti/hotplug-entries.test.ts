/**
 * The runtime file after hot-adds through the engine (what `disk.add` and
 * `nic.add` do) is read by Ganeti 3.0's own code, which rebuilds every
 * device the way our command line has it, hot-added ones included.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { ganetiRebuild, optionPairs, optionValues } from '../../helpers/ganeti';
import { startHotplugVm } from '../../helpers/hotplug-vm';
import { useQemuCleanup } from '../../helpers/qemu';
import { macN, makeSpec, uuidN } from '../../helpers/specs';

describe('hot-added entries Ganeti 3.0 reads', function () {
  this.timeout(60_000);
  useQemuCleanup();

  for (const hvparams of [{}, { disk_type: 'scsi-hd', scsi_controller_type: 'lsi' }, { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' }]) {
    it(`after disk and NIC hot-adds (${JSON.stringify(hvparams)})`, async () => {
      const h = await startHotplugVm(makeSpec({ disks: 1, nics: 1, hvparams }));
      const d = await h.engine.addDisk(h.name, { uuid: uuidN(0xd1), path: h.image('hot.raw'), iv_name: 'disk/1', size: 1, custom: 'dropped' } as never);
      const n = await h.engine.addNic(h.name, { uuid: uuidN(0xe1), mac: macN(0xe1), backend: { type: 'user' } });
      const text = readFileSync(h.store.path(h.name), 'utf8');
      const g = ganetiRebuild(text);
      assert.deepEqual(g.disks.map((x) => x.hvinfo), (await h.runtime())[3].map(([x]) => x.hvinfo));
      assert.deepEqual(g.disks[1].hvinfo, d.hvinfo);
      assert.equal(g.disks[1].dev_type, 'file');
      assert.equal(g.disks[1].iv_name, 'disk/1');
      const devices = optionValues(g.block_options, '-device').map((v) => Object.fromEntries(optionPairs(v)));
      assert.deepEqual(devices[1], { ...Object.fromEntries(Object.entries(d.hvinfo).map(([k, v]) => [k, String(v)])), drive: d.hvinfo.id });
      assert.equal(g.nics[1].device, `${Object.entries(n.hvinfo).map(([k, v], i) => (i === 0 ? String(v) : `${k}=${String(v)}`)).join(',')},netdev=${n.hvinfo.id},mac=${macN(0xe1)}`);
      assert.deepEqual(g.nics[1].nicparams, { mode: 'bridged', link: 'xen-br0', vlan: '' });
      assert.doesNotMatch(text, /custom/);
      await h.close();
    });
  }
});
