/**
 * Process management: starting and stopping QEMU.
 */

export { launchQemu, LAUNCH_DEFAULTS } from './qemu-launcher';
export type { LaunchQemuOptions, QemuExit, QemuProcess } from './qemu-launcher';
export { adoptQemu, type RunningQemu, type QmpSession } from './adopt';
