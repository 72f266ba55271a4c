/**
 * Runtime-file test data: Ganeti's own samples (test/fixtures/runtime/ganeti)
 * and small hand-made runtimes for each format.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeV2_10, RuntimeV2_16, RuntimeV2_9 } from '../../plugin/types';

/** The repository root, from dist/test/helpers. */
export const REPO_ROOT = join(__dirname, '..', '..', '..');
export const GANETI_DATA = join(REPO_ROOT, 'test', 'fixtures', 'runtime', 'ganeti');

export function readSample(rel: string): unknown {
  return JSON.parse(readFileSync(join(GANETI_DATA, rel), 'utf8'));
}

/** Ganeti master's test/data/kvm_runtime.json (2.16). */
export function sample216(): RuntimeV2_16 {
  return readSample('kvm_runtime.json') as RuntimeV2_16;
}

/** Ganeti v2.15.2's test/data/kvm_runtime.json (2.10). */
export function sample210(): RuntimeV2_10 {
  return readSample('v2.15.2/kvm_runtime.json') as RuntimeV2_10;
}

/** A 2.16 runtime built from serialized_nics.json and serialized_disks.json. */
export function sampleSerialized216(): RuntimeV2_16 {
  const base = sample216();
  return [base[0], readSample('serialized_nics.json'), base[2], readSample('serialized_disks.json')] as RuntimeV2_16;
}

export const NIC_UUID = '003fc157-66a8-4e6d-8b7e-ec4f69751396';
export const DISK_UUID = '9e7c85f6-b6e5-4243-b27d-680b78c6d203';
export const DISK2_UUID = '7c079136-2573-4112-82d0-0d3d2aa90d8f';

/** A small 2.9 file: one NIC with uuid, a disk only as -drive in kvm_cmd. */
export function tiny29(): RuntimeV2_9 {
  return [
    ['/usr/bin/kvm', '-name', 'inst1', '-m', 1024, '-drive', 'file=/var/run/ganeti/instance-disks/inst1:0,format=raw,if=virtio'],
    [{ mac: 'aa:00:00:bf:2f:16', nicparams: { mode: 'bridged', link: 'br0' }, uuid: NIC_UUID }],
    { disk_type: 'paravirtual', nic_type: 'paravirtual', kvm_extra: '' },
  ];
}

/** A small 2.10 file: a PV NIC at slot 6, a PV disk at slot 4, with unknown extra fields. */
export function tiny210(): RuntimeV2_10 {
  return [
    ['/usr/bin/kvm', '-name', 'inst1', '-m', 1024],
    [{ mac: 'aa:00:00:bf:2f:16', nicparams: { mode: 'bridged', link: 'br0' }, uuid: NIC_UUID, pci: 6, x_future: { a: [1] } }],
    { disk_type: 'paravirtual', nic_type: 'paravirtual', some_new_hvparam: true },
    [[{ dev_type: 'plain', size: 1024, mode: 'rw', uuid: DISK2_UUID, pci: 4, x_new: 'kept' }, '/var/run/ganeti/instance-disks/inst1:0', null]],
  ];
}

/** A 2.16 file like Ganeti 2.16 writes with disk_type scsi-hd: SCSI disk, PCI NIC. */
export function scsi216(): RuntimeV2_16 {
  return [
    ['/usr/bin/kvm', '-name', 'inst1', '-m', 1024, '-device', 'virtio-scsi-pci,id=scsi'],
    [
      {
        mac: 'aa:00:00:bf:2f:16',
        uuid: NIC_UUID,
        hvinfo: { driver: 'virtio-net-pci', id: 'nic-003fc157-66a8-4e6d', bus: 'pci.0', addr: '0xc' },
      },
    ],
    { disk_type: 'scsi-hd', nic_type: 'paravirtual', scsi_controller_type: 'virtio-scsi-pci', kvm_pci_reservations: 12 },
    [
      [
        {
          dev_type: 'plain',
          size: 10240,
          mode: 'rw',
          uuid: DISK_UUID,
          hvinfo: { driver: 'scsi-hd', id: 'disk-9e7c85f6-b6e5-4243', bus: 'scsi.0', channel: 0, 'scsi-id': 0, lun: 0 },
        },
        '/var/run/ganeti/instance-disks/inst1:0',
        null,
      ],
    ],
  ];
}

/** A deterministic uuid generator for tests. */
export function counterUuid(): () => string {
  let n = 0;
  return () => `00000000-0000-4000-8000-${(++n).toString(16).padStart(12, '0')}`;
}
