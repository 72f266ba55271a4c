/**
 * Which `-device` models are PCI devices, so that one without `addr` in
 * kvm_extra is known to take a root-bus slot. The list is QEMU 7.2's
 * x86_64 `-device help` entries on "bus PCI" (and their aliases) whose
 * name does not already say so; every model named `…-pci` or `…-pci-…`
 * counts too, which also covers most models newer QEMUs add.
 */
const PCI_MODELS: ReadonlySet<string> = new Set([
  // Bridges and ports.
  'cxl-downstream', 'cxl-rp', 'cxl-upstream', 'i82801b11-bridge', 'ioh3420', 'pci-bridge', 'pci-bridge-seat', 'pcie-root-port',
  'pxb', 'pxb-cxl', 'pxb-pcie', 'x3130-upstream', 'xio3130-downstream',
  // USB controllers.
  'ich9-usb-ehci1', 'ich9-usb-ehci2', 'ich9-usb-uhci1', 'ich9-usb-uhci2', 'ich9-usb-uhci3', 'ich9-usb-uhci4', 'ich9-usb-uhci5',
  'ich9-usb-uhci6', 'nec-usb-xhci', 'pci-ohci', 'piix3-usb-uhci', 'piix4-usb-uhci', 'qemu-xhci', 'usb-ehci',
  // Storage.
  'am53c974', 'cxl-type3', 'dc390', 'ich9-ahci', 'ahci', 'lsi53c810', 'lsi53c895a', 'lsi', 'megasas', 'megasas-gen2', 'mptsas1068',
  'nvme', 'piix3-ide', 'piix4-ide', 'pvscsi', 'virtio-9p', 'virtio-blk', 'virtio-scsi',
  // Network.
  'e1000', 'e1000-82540em', 'e1000-82544gc', 'e1000-82545em', 'e1000e', 'i82550', 'i82551', 'i82557a', 'i82557b', 'i82557c',
  'i82558a', 'i82558b', 'i82559a', 'i82559b', 'i82559c', 'i82559er', 'i82562', 'i82801', 'ne2k_pci', 'pcnet', 'pvrdma', 'rocker',
  'rtl8139', 'tulip', 'vmxnet3', 'virtio-net',
  // Input, serial and other buses.
  'pci-serial', 'pci-serial-2x', 'pci-serial-4x', 'tpci200', 'virtio-input-host', 'virtio-keyboard', 'virtio-mouse', 'virtio-serial',
  'virtio-tablet',
  // Display.
  'ati-vga', 'bochs-display', 'cirrus-vga', 'qxl', 'qxl-vga', 'secondary-vga', 'VGA', 'vhost-user-vga', 'virtio-vga', 'virtio-vga-gl',
  'vmware-svga', 'virtio-gpu', 'virtio-gpu-gl',
  // Sound.
  'AC97', 'ac97', 'ES1370', 'es1370', 'ich9-intel-hda', 'intel-hda',
  // Miscellaneous.
  'acpi-erst', 'AMDVI-PCI', 'ctucan_pci', 'edu', 'ivshmem-doorbell', 'ivshmem-plain', 'kvaser_pci', 'mioe3680_pci', 'pci-testdev',
  'pcm3680_pci', 'i6300esb', 'pci-ipmi-bt', 'pci-ipmi-kcs', 'virtio-balloon', 'virtio-iommu', 'virtio-rng',
]);

/** Whether QEMU's `-device` model `driver` is a PCI device (x86_64). */
export function isPciModel(driver: string): boolean {
  return PCI_MODELS.has(driver) || /-pci(?:-|$)/.test(driver);
}
