import { strict as assert } from 'node:assert';
import { devfnToAddr, hvinfoDifferences } from '../../../plugin/inspect';

describe('hvinfoDifferences()', () => {
  it('is empty when QEMU has the device where hvinfo says', () => {
    assert.deepEqual(hvinfoDifferences({ driver: 'virtio-blk-pci', id: 'd', bus: 'pci.0', addr: '0xc' }, { id: 'd', driver: 'virtio-blk-pci', bus: 'pci.0', addr: '0xc' }), []);
    assert.deepEqual(hvinfoDifferences({ driver: 'scsi-hd', id: 'd', bus: 'scsi.0', channel: 0, 'scsi-id': 3, lun: 0 }, { id: 'd', driver: 'scsi-hd', bus: 'scsi.0', channel: 0, 'scsi-id': 3, lun: 0 }), []);
  });
  it('names every field that differs', () => {
    assert.deepEqual(hvinfoDifferences({ driver: 'virtio-blk-pci', id: 'd', bus: 'pci.0', addr: '0xc' }, { id: 'd', driver: 'scsi-hd', bus: 'pci.0', addr: '0xd' }), [
      'driver: runtime "virtio-blk-pci", QEMU "scsi-hd"',
      'addr: runtime "0xc", QEMU "0xd"',
    ]);
    assert.deepEqual(hvinfoDifferences({ driver: 'scsi-hd', id: 'd', bus: 'scsi.0', channel: 0, 'scsi-id': 3, lun: 0 }, { id: 'd', driver: 'scsi-hd', bus: 'scsi.0', channel: 0, 'scsi-id': 2, lun: 0 }), ['scsi-id: runtime 3, QEMU 2']);
  });
  it('compares addr as a slot, not as text', () => {
    assert.deepEqual(hvinfoDifferences({ addr: '0x0c' }, { id: 'd', driver: 'x', addr: '0xc' }), []);
    assert.deepEqual(hvinfoDifferences({ addr: '0x1.0x0' }, { id: 'd', driver: 'x', addr: '0x1' }), []);
  });
});

describe('devfnToAddr()', () => {
  it('renders slot and function', () => {
    assert.equal(devfnToAddr(12 << 3), '0xc');
    assert.equal(devfnToAddr((1 << 3) | 3), '0x1.0x3');
  });
});
