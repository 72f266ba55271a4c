/**
 * Hotplug: disk and NIC add/remove on a live QEMU over QMP.
 */
export { HotplugEngine, HOTPLUG_DEFAULTS, type HotplugEngineOptions, type CallOptions, type AddResult, type RemoveResult } from './engine';
export { QmpConnections } from './connections';
export { allocate, hotplugModel, machineFromCmd, type LiveOccupancy, type DeviceKind } from './allocate';
export { hotplugSupported, freeCapacity, type SupportAnswer } from './supported';
export { announceDue, ANNOUNCE_MAX_GAP, type PendingEvent, type RemovedEvent } from './pending';
export type { AddPhase, AddTiming, AddTimingHook, PhaseSpan } from './timing';
