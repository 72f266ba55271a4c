/**
 * The device planner: instance spec → hvinfo, runtime, QEMU argv.
 * Pure functions over plain data.
 */
export { planInstance, autoSparePorts, type Plan, type PlanOptions, type PlannedDevice } from './assign';
export { buildArgv, runtimeName, diskIo, nodeNeutralCommand, withImplicitDevices, DEFAULT_RUN_DIR, type BuildOptions } from './build-args';
export { parseInstanceSpec } from './spec';
export { blockdevArgs, diskDeviceArgs, diskReadOnly, netdevArgs, nicDeviceArgs, renderFlat, type QemuDict, type DiskIoParams } from './device-args';
export { deviceId, isUuid, isQemuId } from './device-id';
export { DISK_MODELS, NIC_MODELS, SCSI_CONTROLLERS, SCSI_BUS, SCSI_CONTROLLER_ID, MAX_DISKS, MAX_NICS, isScsiDiskType } from './drivers';
export { fillHvParams, runtimeHvParams, HVPARAM_DEFAULTS, type PlannerHvParams } from './hvparams';
export { resolveMachine, type MachineLayout } from './machine';
export { lowestFreeSlot, slotToAddr, addrToSlot } from './pci-slots';
export { parsePorts, portId, type RootPort } from './pcie-ports';
export { claimedSlots, deviceOptions, optionName, shellSplit, splitOptions } from './kvm-extra';
export { diskEntry, nicEntry, inferDevType, DEFAULT_NICPARAMS, GANETI_DISK_FIELDS, GANETI_NIC_FIELDS, type EntryOptions } from './runtime-entry';
