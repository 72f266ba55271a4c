#!/usr/bin/python3
"""Reads a runtime file with Ganeti 3.0's own KVM code and prints, as JSON,
what a Ganeti migration target would build from it.

Usage: rebuild-devices.py RUNTIME-FILE [QEMU-BINARY]

Ganeti is the oracle here: this calls its installed Python modules
(GANETI_PY, default /usr/share/ganeti/3.0) and copies none of them. The
hvparams are filled from Ganeti's cluster defaults first, as a target fills
them from the instance's configuration. Output:
  {"nics": [{"mac", "nicparams", "hvinfo", "uuid", "device"}...],
   "disks": [{"dev_type", "mode", "hvinfo", "uuid", "link", "uri"}...],
   "block_options": [...]}  (the -device/-drive options Ganeti builds)
Exit 3 when Ganeti's code is not installed, 1 with the traceback on stderr
when Ganeti's code fails on the file.
"""
import json
import os
import sys

root = os.environ.get("GANETI_PY", "/usr/share/ganeti/3.0")
if not os.path.isdir(os.path.join(root, "ganeti")):
  sys.stderr.write("Ganeti's Python code is not installed at %s (Debian package"
                   " 'ganeti')\n" % root)
  sys.exit(3)
sys.path.insert(0, root)

from ganeti import constants, objects  # noqa: E402
from ganeti.hypervisor import hv_kvm  # noqa: E402

path = sys.argv[1]
qemu = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/qemu-system-x86_64"
with open(path) as f:
  text = f.read()

kvm_cmd, nics, hvparams, disks = hv_kvm._AnalyzeSerializedRuntime(text)
hvp = objects.FillDict(constants.HVC_DEFAULTS[constants.HT_KVM], hvparams)
h = hv_kvm.KVMHypervisor()
kvmhelp = h._GetKVMOutput(qemu, h._KVMOPT_HELP)
devlist = h._GetKVMOutput(qemu, h._KVMOPT_DEVICELIST)
block = h._GenerateKVMBlockDevicesOptions(hvp, disks, kvmhelp, devlist)

out_nics = []
for nic in nics:
  # What Ganeti puts after -device for a NIC with hvinfo at start and on a
  # migration target, and what its NIC hooks read.
  device = None
  if "id" in nic.hvinfo:
    device = "%s,netdev=%s,mac=%s" % (hv_kvm._GenerateDeviceHVInfoStr(nic.hvinfo),
                                      nic.hvinfo["id"], nic.mac)
  out_nics.append({
    "mac": nic.mac,
    "nicparams": nic.nicparams,
    "mode": nic.nicparams[constants.NIC_MODE],
    "link": nic.nicparams[constants.NIC_LINK],
    "hvinfo": nic.hvinfo,
    "uuid": nic.uuid,
    "device": device,
  })
out_disks = [{
  "dev_type": d.dev_type,
  "logical_id": list(d.logical_id) if d.logical_id is not None else None,
  "iv_name": d.iv_name,
  "mode": d.mode,
  "hvinfo": d.hvinfo,
  "uuid": d.uuid,
  "link": link,
  "uri": uri,
} for d, link, uri in disks]
print(json.dumps({"nics": out_nics, "disks": out_disks, "block_options": block}))
