#!/usr/bin/python3
"""Runs QMP commands on a QEMU monitor socket, as Ganeti's node daemon does
on its own monitor, including the one thing Node cannot do: pass an open
file descriptor with a command (SCM_RIGHTS), which Ganeti's disk hot-add
relies on.

Usage: qmp-steps.py SOCKET STEPS-JSON

STEPS-JSON is a list of {"execute": NAME, "arguments": {...}} with, for
`add-fd`, "open": PATH (opened read-write here, passed to QEMU, closed
here). "$fdset" in a later step's arguments becomes the fdset-id of the
last add-fd (a number when it is the whole value). Prints the list of results as JSON; exits 1 on
the first QMP error.
"""
import array
import json
import os
import socket
import sys


def main():
  sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  sock.connect(sys.argv[1])
  reader = sock.makefile("r")
  reader.readline()  # greeting

  def execute(cmd, args=None, fd=None):
    msg = {"execute": cmd}
    if args:
      msg["arguments"] = args
    data = json.dumps(msg).encode()
    if fd is None:
      sock.sendall(data)
    else:
      sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                             array.array("i", [fd]))])
    while True:
      reply = json.loads(reader.readline())
      if "return" in reply or "error" in reply:
        return reply

  def substitute(value, fdset):
    if value == "$fdset":
      return fdset
    if isinstance(value, str):
      return value.replace("$fdset", str(fdset))
    if isinstance(value, dict):
      return {k: substitute(v, fdset) for k, v in value.items()}
    if isinstance(value, list):
      return [substitute(v, fdset) for v in value]
    return value

  execute("qmp_capabilities")
  results = []
  fdset = None
  for step in json.loads(sys.argv[2]):
    fd = os.open(step["open"], os.O_RDWR) if "open" in step else None
    try:
      reply = execute(step["execute"], substitute(step.get("arguments"), fdset), fd)
    finally:
      if fd is not None:
        os.close(fd)
    if "error" in reply:
      sys.stderr.write("%s: %s\n" % (step["execute"], json.dumps(reply["error"])))
      sys.exit(1)
    if step["execute"] == "add-fd":
      fdset = reply["return"]["fdset-id"]
    results.append(reply["return"])
  print(json.dumps(results))


main()
