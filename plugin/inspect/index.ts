/**
 * Reading the live device layout from QEMU, in hvinfo terms.
 */
export { readLiveLayout, readLiveDevice, hvinfoDifferences, devfnToAddr, type LiveDevice } from './live-layout';
