/**
 * kvm_extra samples checked against QEMU 7.2 (pc, -nodefaults): the unit
 * tests assert what the planner makes of them, the QEMU tests that QEMU
 * itself refuses or starts with each, so the two cannot drift apart.
 */

/** Two equal names in one QEMU namespace: QEMU refuses to start ("Duplicate ID", "conflicts with an existing node name"). */
export const DUPLICATE_NAMES: readonly string[] = [
  '-device virtio-rng-pci,id=x -device virtio-rng-pci,id=x',
  `-device '{"driver":"virtio-rng-pci","id":"x"}' -device virtio-rng-pci,id=x`,
  '-device virtio-rng-pci,id=x -device virtio-rng-pci,id=y -set device.y.id=x',
  '-netdev user,id=x -netdev user,id=x',
  '-nic user,id=x -netdev user,id=x',
  '-netdev user,id=n -net nic,netdev=n,id=x -netdev user,id=x',
  '-object iothread,id=x -object rng-random,id=x,filename=/dev/urandom',
  '-chardev null,id=x -chardev null,id=x',
  '-blockdev driver=null-co,node-name=x -drive if=none,id=x,driver=null-co',
  '-drive if=none,id=x,driver=null-co -drive if=none,id=y,node-name=x,driver=null-co',
  '-chardev null,id=c -mon chardev=c,id=x -mon chardev=c,id=x',
];

/** Equal names in different namespaces: QEMU starts. */
export const SHARED_NAMES: readonly string[] = [
  '-device virtio-rng-pci,id=x -netdev user,id=x',
  '-device virtio-rng-pci,id=x -object rng-random,id=x,filename=/dev/urandom -chardev null,id=x',
  '-drive if=none,id=x,driver=null-co -device virtio-rng-pci,id=x',
  '-netdev user,id=x -chardev null,id=x',
];

/** Two devices on one PCI function of a bus: QEMU refuses to start ("slot N function F not available"). */
export const SLOT_CONFLICTS: readonly string[] = [
  '-device virtio-rng-pci,id=a,addr=5 -device virtio-rng-pci,id=b,addr=0x5',
  '-device virtio-rng-pci,id=a,addr=0x5 -device virtio-rng-pci,id=b,bus=pci.0,addr=5',
  '-device pci-bridge,id=br,chassis_nr=1,addr=0x9 -device virtio-rng-pci,id=a,bus=br,addr=3 -device virtio-rng-pci,id=b,bus=br,addr=0x3',
  '-device virtio-rng-pci,id=a,addr=0x5 -device virtio-rng-pci,id=b -set device.b.addr=0x5',
  // a has no addr: QEMU gives it slot 2, the lowest free, before b asks for 2.
  '-device virtio-rng-pci,id=a -device virtio-rng-pci,id=b,addr=2',
  // -vga and -nic take the lowest free slots at machine init, before any -device.
  '-vga std -device virtio-rng-pci,id=b,addr=2',
  '-nic user -device virtio-rng-pci,id=b,addr=2',
  '-net nic,addr=0x7 -device virtio-rng-pci,id=b,addr=7',
  `-device virtio-rng-pci,id=a,addr=0x6 -device '{"driver":"virtio-rng-pci","id":"b","addr":"0x6"}'`,
  // Slot 1 is the machine's own PIIX3.
  '-device virtio-rng-pci,id=b,addr=1',
];

/** One slot number on different functions or buses: QEMU starts. */
export const SLOTS_SHARED: readonly string[] = [
  '-device virtio-rng-pci,id=a,addr=0x5,multifunction=on -device virtio-rng-pci,id=b,addr=0x5.0x1',
  '-device pci-bridge,id=br,chassis_nr=1,addr=0x3 -device virtio-rng-pci,id=b,bus=br,addr=0x3',
];
