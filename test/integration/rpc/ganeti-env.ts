/** A realistic Ganeti hook environment (the variables Ganeti's BuildInstanceHookEnv exports). */

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

/**
 * What Ganeti exports to instance-add hooks (`gnt-instance add`): the disks
 * come from `ComputeDisks` dicts that have no UUID yet, so `BuildDiskEnv`'s
 * `disk.get("uuid", "")` exports DISK<n>_UUID empty; no logical-id variables.
 */
export const GANETI_ADD_ENV: Record<string, string> = (() => {
  const env: Record<string, string> = {
    ...GANETI_ENV,
    GANETI_HOOKS_PATH: 'instance-add', GANETI_OP_CODE: 'OP_INSTANCE_CREATE', GANETI_INSTANCE_STATUS: 'up',
    GANETI_ADD_MODE: 'create', GANETI_SRC_NODE: '', GANETI_SRC_PATH: '', GANETI_SRC_IMAGES: '',
    GANETI_INSTANCE_DISK0_UUID: '', GANETI_INSTANCE_DISK1_UUID: '',
  };
  for (const k of ['DISK0_VG', 'DISK0_ID', 'DISK1_VG', 'DISK1_ID']) delete env[`GANETI_INSTANCE_${k}`];
  return env;
})();
