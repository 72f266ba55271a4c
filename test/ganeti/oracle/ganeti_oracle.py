#!/usr/bin/python3
"""Asks Ganeti's own KVM code about a runtime file; prints JSON.

  ganeti_oracle.py rebuild FILE   what Ganeti passes QEMU for the file's disks
                                  and NICs when it starts QEMU from it (the
                                  migration-target path): the -device values
  ganeti_oracle.py upgrade FILE   the runtime as Ganeti reads it (upgraded)

Ganeti's modules import with Debian's Python and need no daemon.
"""
import json
import sys

sys.path.insert(0, "/usr/share/ganeti/3.0")
from ganeti.hypervisor import hv_kvm  # noqa: E402

QEMU = "/usr/bin/qemu-system-x86_64"


def rebuild(text):
  h = hv_kvm.KVMHypervisor()
  _kvm_cmd, nics, hvparams, disks = hv_kvm._AnalyzeSerializedRuntime(text)
  kvmhelp = h._GetKVMOutput(QEMU, h._KVMOPT_HELP)
  devlist = h._GetKVMOutput(QEMU, h._KVMOPT_DEVICELIST)
  opts = h._GenerateKVMBlockDevicesOptions(hvparams, disks, kvmhelp, devlist)
  devices = [opts[i + 1] for i, o in enumerate(opts) if o == "-device"]
  drives = [opts[i + 1] for i, o in enumerate(opts) if o == "-drive"]
  # NIC -device values are built inline at start from each NIC's hvinfo.
  nic_devices = [hv_kvm._GenerateDeviceHVInfoStr(n.hvinfo) for n in nics]
  return {"disk_devices": devices, "drives": drives, "nic_devices": nic_devices,
          "nic_macs": [n.mac for n in nics]}


def main():
  if len(sys.argv) != 3 or sys.argv[1] not in ("rebuild", "upgrade"):
    sys.stderr.write(__doc__)
    return 2
  with open(sys.argv[2]) as f:
    text = f.read()
  if sys.argv[1] == "rebuild":
    out = rebuild(text)
  else:
    out = hv_kvm._UpgradeSerializedRuntime(text)
  json.dump(out, sys.stdout)
  return 0


if __name__ == "__main__":
  sys.exit(main())
