/**
 * Reading the live device layout from QEMU, in hvinfo terms.
 */
export { readLiveLayout, readLiveDevice, listPeripherals, hvinfoDifferences, devfnToAddr, type LiveDevice, type Peripheral } from './live-layout';
