import { strict as assert } from 'node:assert';
import { HookEnvError, specFromHookEnv } from '../../../plugin/cli/hook-env';
import { parseInstanceSpec } from '../../../plugin/planner';

/** What Ganeti exports for a started two-disk, one-NIC KVM instance. */
export const GANETI_ENV: Record<string, string> = {
  GANETI_HOOKS_VERSION: '2', GANETI_HOOKS_PHASE: 'pre', GANETI_HOOKS_PATH: 'instance-start',
  GANETI_OP_CODE: 'OP_INSTANCE_STARTUP', GANETI_DATA_DIR: '/var/lib/ganeti', GANETI_OBJECT_TYPE: 'INSTANCE',
  GANETI_CLUSTER: 'cluster.example.com', GANETI_MASTER: 'node1.example.com', GANETI_OP_TARGET: 'inst1.example.com',
  GANETI_INSTANCE_NAME: 'inst1.example.com', GANETI_INSTANCE_PRIMARY: 'node1.example.com', GANETI_INSTANCE_SECONDARIES: '',
  GANETI_INSTANCE_OS_TYPE: 'debootstrap+default', GANETI_INSTANCE_STATUS: 'up', GANETI_INSTANCE_MINMEM: '256',
  GANETI_INSTANCE_MAXMEM: '256', GANETI_INSTANCE_MEMORY: '256', GANETI_INSTANCE_VCPUS: '1',
  GANETI_INSTANCE_DISK_TEMPLATE: 'plain', GANETI_INSTANCE_HYPERVISOR: 'kvm', GANETI_INSTANCE_TAGS: '', GANETI_FORCE: 'False',
  GANETI_INSTANCE_NIC_COUNT: '1', GANETI_INSTANCE_NIC0_UUID: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
  GANETI_INSTANCE_NIC0_IP: '', GANETI_INSTANCE_NIC0_MAC: 'aa:00:00:bf:2f:16', GANETI_INSTANCE_NIC0_MODE: 'bridged',
  GANETI_INSTANCE_NIC0_LINK: 'br0', GANETI_INSTANCE_NIC0_VLAN: '', GANETI_INSTANCE_NIC0_BRIDGE: 'br0',
  GANETI_INSTANCE_DISK_COUNT: '2',
  GANETI_INSTANCE_DISK0_UUID: '9e7c85f6-b6e5-4243-b27d-680b78c6d203', GANETI_INSTANCE_DISK0_SIZE: '1024',
  GANETI_INSTANCE_DISK0_MODE: 'rw', GANETI_INSTANCE_DISK0_DEV_TYPE: 'plain', GANETI_INSTANCE_DISK0_VG: 'xenvg',
  GANETI_INSTANCE_DISK0_ID: '9e7c85f6.disk0',
  GANETI_INSTANCE_DISK1_UUID: '5a1d3c11-0b7e-4a59-8f3e-2c4d6e8f0a12', GANETI_INSTANCE_DISK1_SIZE: '2048',
  GANETI_INSTANCE_DISK1_MODE: 'ro', GANETI_INSTANCE_DISK1_DEV_TYPE: 'plain', GANETI_INSTANCE_DISK1_VG: 'xenvg',
  GANETI_INSTANCE_DISK1_ID: '5a1d3c11.disk1',
  GANETI_INSTANCE_BE_maxmem: '256', GANETI_INSTANCE_BE_minmem: '256', GANETI_INSTANCE_BE_vcpus: '1',
  GANETI_INSTANCE_BE_auto_balance: 'True', GANETI_INSTANCE_BE_always_failover: 'False', GANETI_INSTANCE_BE_spindle_use: '1',
  GANETI_INSTANCE_HV_disk_type: 'scsi-hd', GANETI_INSTANCE_HV_scsi_controller_type: 'virtio-scsi-pci',
  GANETI_INSTANCE_HV_nic_type: 'paravirtual', GANETI_INSTANCE_HV_kvm_pci_reservations: '12',
  GANETI_INSTANCE_HV_machine_version: 'pc', GANETI_INSTANCE_HV_kvm_extra: '', GANETI_INSTANCE_HV_vhost_net: 'False',
  GANETI_INSTANCE_HV_disk_cache: 'default', GANETI_INSTANCE_HV_kernel_path: '', GANETI_INSTANCE_HV_vnc_bind_address: '',
  GANETI_INSTANCE_HV_serial_speed: '38400',
};

describe('specFromHookEnv()', () => {
  it('reads disks, NICs, beparams and typed hvparams from the Ganeti hook environment', () => {
    const spec = specFromHookEnv(GANETI_ENV);
    assert.equal(spec.name, 'inst1.example.com');
    assert.deepEqual(spec.disks.map((d) => [d.uuid, d.path, d.size, d.mode]), [
      ['9e7c85f6-b6e5-4243-b27d-680b78c6d203', '/var/run/ganeti/instance-disks/inst1.example.com:0', 1024, 'rw'],
      ['5a1d3c11-0b7e-4a59-8f3e-2c4d6e8f0a12', '/var/run/ganeti/instance-disks/inst1.example.com:1', 2048, 'ro'],
    ]);
    assert.deepEqual(spec.nics[0], {
      uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:bf:2f:16',
      nicparams: { mode: 'bridged', link: 'br0' }, ip: null,
    });
    assert.equal(spec.hvparams?.kvm_pci_reservations, 12);
    assert.equal(spec.hvparams?.vhost_net, false);
    assert.equal(spec.hvparams?.disk_type, 'scsi-hd');
    // Unknown to the planner: passed through untouched, as a string.
    assert.equal(spec.hvparams?.serial_speed, '38400');
    assert.deepEqual(spec.beparams, { maxmem: 256, minmem: 256, vcpus: 1, auto_balance: true, always_failover: false, spindle_use: 1 });
    parseInstanceSpec(spec);
  });

  it('names the variable that is missing or malformed', () => {
    const env = { ...GANETI_ENV };
    delete env.GANETI_INSTANCE_DISK1_UUID;
    assert.throws(() => specFromHookEnv(env), (e: HookEnvError) => e.variable === 'GANETI_INSTANCE_DISK1_UUID');
    assert.throws(() => specFromHookEnv({ ...GANETI_ENV, GANETI_INSTANCE_NIC_COUNT: 'x' }), /GANETI_INSTANCE_NIC_COUNT="x"/);
  });
});
