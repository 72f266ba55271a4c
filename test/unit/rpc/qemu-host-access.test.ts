import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shellSplit } from '../../../plugin/planner';
import { hostAccessProblems, hostAccesses } from '../../../plugin/rpc/methods/qemu-host-access';
import { DEFAULT_RUN_DIR } from '../../../plugin/planner';

const FIXTURES = join(__dirname, '..', '..', '..', '..', 'test', 'fixtures', 'runtime');

describe('what kvm_extra and an incoming kvm_cmd may make a root QEMU touch', () => {
  const base = mkdtempSync(join(tmpdir(), 'gkd-host-access-'));
  const storage = join(base, 'storage');
  const kernels = join(base, 'boot');
  const runDir = join(base, 'run');
  const runtimeDir = join(runDir, 'conf');
  for (const d of [storage, kernels, runDir, runtimeDir]) mkdirSync(d, { recursive: true });
  writeFileSync(join(storage, 'disk0'), '');
  symlinkSync('/etc/hostname', join(storage, 'escape'));
  const config = { storageRoots: [storage, '/dev/'], kernelRoots: [kernels], runDir, runtimeDir };
  const problems = async (extra: string): Promise<Array<{ index: number; message: string }>> => hostAccessProblems(shellSplit(extra), config);

  // [kvm_extra, index of the refused value in its split form, what the message must say]
  const refused: Array<[string, number, RegExp]> = [
    ['-drive file=/etc/shadow', 1, /file= "\/etc\/shadow" must lie under one of the storage roots/],
    ['--drive file=/etc/shadow,if=none,id=d', 1, /storage roots/],
    ['-chardev file,id=c,path=/etc/x', 1, /path= "\/etc\/x" must lie under one of the storage roots/],
    ['-chardev file,id=c,path=/etc/x,logfile=/etc/y', 1, /path=/],
    ['-chardev null,id=c,logfile=/etc/cron.d/x', 1, /logfile= "\/etc\/cron.d\/x"/],
    ['-netdev tap,id=n,script=/tmp/x', 1, /script= makes QEMU run that program as root/],
    ['-netdev tap,id=n,script=no,downscript=/tmp/x', 1, /downscript=/],
    ['-netdev tap,id=n,helper=/tmp/h', 1, /helper=/],
    ['-nic tap,script=/tmp/x', 1, /script=/],
    ['-netdev bridge,id=n,br=br0', 1, /bridge runs the bridge helper/],
    ['-nic bridge,br=br0', 1, /bridge helper/],
    ['-netdev user,id=n,smb=/srv', 1, /smbd/],
    ['-netdev user,id=n,guestfwd=tcp:10.0.2.100:1234-cmd:/bin/sh', 1, /runs? a command/],
    ['-incoming exec:true', 1, /exec: makes QEMU run a command/],
    ['-serial exec:true', 1, /exec:/],
    ['-plugin file=/tmp/p.so', 1, /loads a shared object/],
    ['-runas nobody', 1, /changes the user/],
    ['-chroot /tmp', 1, /another root directory/],
    ['-sandbox off', 1, /system call filter off/],
    ['-serial file:/etc/x', 1, /file: "\/etc\/x" must lie under one of the storage roots/],
    ['-serial pipe:/etc/x', 1, /pipe:/],
    ['-parallel /etc/x', 1, /storage roots/],
    ['-object memory-backend-file,id=m,mem-path=/etc/x,size=1M', 1, /mem-path=/],
    ['-mem-path /etc/x', 1, /-mem-path "\/etc\/x"/],
    ['-object filter-dump,id=f,netdev=n,file=/etc/x', 1, /file=/],
    [`-blockdev '{"driver":"qcow2","node-name":"q","file":{"driver":"file","filename":"/etc/shadow"}}'`, 1, /file\.filename= "\/etc\/shadow"/],
    ['-blockdev driver=file,node-name=f,filename=/etc/shadow', 1, /filename=/],
    ['-blockdev driver=vvfat,node-name=f,dir=/etc', 1, /dir= "\/etc"/],
    ['-drive file=disk.img,if=none,id=d', 1, /must be an absolute path/],
    [`-drive 'file=json:{"driver":"file","filename":"/etc/shadow"}',if=none`, 1, /absolute path/],
    ['-drive file=fat:/etc,if=none', 1, /absolute path/],
    ['-drive file=file:/etc/shadow,if=none', 1, /storage roots/],
    ['-drive file=rbd:pool/img:conf=/etc/x.conf,if=none', 1, /conf= "\/etc\/x.conf" must lie under one of the storage or kernel roots/],
    ['-drive file=nbd:unix:/run/x.sock,if=none', 1, /connect to an existing Unix socket/],
    [`-drive file=${storage}/../../etc/shadow`, 1, /"\." or "\.\."/],
    [`-drive file=${storage}/escape`, 1, /symlink to "\/etc\/hostname"/],
    ['-kernel /etc/hostname', 1, /kernel roots/],
    [`-initrd ${storage}/disk0`, 1, /kernel roots/],
    ['-bios /etc/x', 1, /storage or kernel roots/],
    ['-pflash /etc/x', 1, /storage roots/],
    [`-pflash ${kernels}/OVMF_VARS.fd`, 1, /storage roots/],
    ['-dtb /etc/x', 1, /storage or kernel roots/],
    ['-fw_cfg name=opt/x,file=/etc/shadow', 1, /file=/],
    ['-acpitable file=/etc/a:/etc/b', 1, /file=/],
    ['-device loader,file=/etc/shadow', 1, /file=/],
    ['-device virtio-net-pci,romfile=/etc/shadow', 1, /romfile=/],
    ['-device virtio-net-pci,romfile=../../etc/shadow', 1, /absolute path/],
    ['-device virtio-rng-pci,id=r -set device.r.romfile=/etc/shadow', 3, /romfile=/],
    ['-global virtio-net-pci.romfile=/etc/shadow', 1, /romfile=/],
    ['-global driver=virtio-net-pci,property=romfile,value=/etc/shadow', 1, /romfile=/],
    ['-virtfs local,path=/,mount_tag=root,security_model=passthrough', 1, /path= "\/" must lie under/],
    ['-fsdev local,id=f,path=/root,security_model=none', 1, /path=/],
    [`-chardev file,id=c,path=${kernels}/vmlinuz`, 1, /storage roots/],
    ['-D /tmp/qemu.log', 1, /Ganeti's KVM log dir/],
    ['-pidfile /etc/x', 1, /pid file dirs/],
    ['-L ../etc', 1, /absolute path/],
    ['-k ../../etc/shadow', 1, /absolute path/],
    // Sockets: QEMU listens under the run dir only, never in the runtime dir, and never connects.
    ['-chardev socket,id=c,path=/etc/x.sock,server=on', 1, /must lie under one of the run dirs/],
    [`-chardev socket,id=c,path=${runDir}/ctrl/other.qmp`, 1, /connect to an existing Unix socket/],
    [`-chardev socket,id=c,path=${runtimeDir}/victim.runtime,server=on,wait=off`, 1, /must not lie in/],
    [`-serial unix:${runDir}/ctrl/other.qmp`, 1, /connect/],
    ['-monitor unix:/etc/x,server,nowait', 1, /control socket dirs/],
    ['-netdev stream,id=s,addr.type=unix,addr.path=/run/x.sock', 1, /connect/],
    ['-netdev stream,id=s,server=on,addr.type=unix,addr.path=/etc/x.sock', 1, /run dirs/],
    ['-netdev dgram,id=d,local.type=unix,local.path=/etc/x', 1, /run dirs/],
    ['-netdev vde,id=v,sock=/run/vde.ctl', 1, /connect/],
    ['-blockdev driver=nbd,node-name=n,server.type=unix,server.path=/run/x', 1, /connect/],
    ['-object pr-manager-helper,id=p,path=/run/qemu-pr-helper.sock', 1, /connect/],
    ['-incoming unix:/etc/shadow', 1, /run dirs/],
    // A monitor outside the control dirs could be sent a migration stream (guest RAM) by migration.start.
    [`-qmp unix:${runDir}/evil.sock,server=on,wait=off`, 1, /must lie under one of the control socket dirs/],
    [`-monitor unix:${runDir}/evil.sock,server,nowait`, 1, /control socket dirs/],
    [`-chardev socket,id=m,path=${runDir}/evil.sock,server=on,wait=off -mon chardev=m,mode=control`, 1, /control socket dirs/],
    [`-chardev socket,id=m,path=${runDir}/evil.sock,server=on,wait=off -monitor chardev:m`, 1, /control socket dirs/],
    // QEMU binds at the whole rest of a migration address, commas included: no part of it escapes the check.
    [`-incoming unix:${runDir}/a,/../../etc/x`, 1, /"\." or "\.\."/],
    ['-vnc unix:/etc/x', 1, /run dirs/],
    // The conservative fallback: any other value beginning with "/".
    ['-unknown-option /etc/x', 1, /storage roots/],
    ['-spice port=5900,x509-dir=/etc/pki', 1, /x509-dir=/],
    ['-object secret,id=s,file=/etc/shadow', 1, /storage or kernel roots/],
    ['-device virtio-rng-pci /etc/x', 2, /storage roots/],
  ];
  for (const [extra, index, message] of refused) {
    it(`refuses ${extra}`, async () => {
      const p = await problems(extra);
      assert.ok(p.length > 0, 'accepted');
      assert.equal(p[0].index, index, p[0].message);
      assert.match(p[0].message, message);
    });
  }

  const allowed: string[] = [
    '',
    '-device virtio-rng-pci',
    '-device virtio-rng-pci,id=rng0,addr=0x5 -device virtio-serial-pci,id=vser0',
    `-chardev socket,id=c,path=${runDir}/x.sock,server=on,wait=off`,
    `-chardev socket,id=qga0,path=${runDir}/ctrl/inst1.qga,server=on,wait=off -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0`,
    `-serial unix:${runDir}/ctrl/inst1.serial1,server=on,wait=off`,
    `-drive file=${storage}/disk0,if=none,id=d,format=raw`,
    `-blockdev '{"driver":"raw","node-name":"r","file":{"driver":"file","filename":"${storage}/disk0"}}'`,
    `-chardev file,id=log,path=${storage}/console.log`,
    '-object rng-random,id=r,filename=/dev/urandom -device virtio-rng-pci,rng=r',
    `-kernel ${kernels}/vmlinuz -initrd ${kernels}/initrd.img -append "root=/dev/vda1 init=/bin/sh"`,
    `-bios ${kernels}/OVMF.fd`,
    '-bios bios-256k.bin',
    '-device e1000,romfile= -device virtio-net-pci,romfile=efi-virtio.rom',
    '-netdev tap,id=n,ifname=tap9,script=no,downscript=no',
    '-netdev user,id=n,hostfwd=tcp::2222-:22',
    '-drive file=rbd:pool/image,if=none,id=r',
    '-drive file=gluster://host/vol/img,if=none,id=g',
    '-fw_cfg name=opt/x,string=/y',
    `-vnc unix:${runDir}/vnc.sock`,
    '-vga std -usb -usbdevice tablet -rtc base=utc -cpu host -k fr',
    '-sandbox on,obsolete=deny',
    '-incoming tcp:0:4444',
    `-chardev socket,id=m,path=${runDir}/ctrl/inst1.mon2,server=on,wait=off -mon chardev=m,mode=readline`,
    `-qmp unix:${runDir}/ctrl/inst1.qmp2,server=on,wait=off`,
  ];
  for (const extra of allowed) {
    it(`allows ${extra === '' ? "Ganeti's default (empty) kvm_extra" : extra}`, async () => {
      assert.deepEqual(await problems(extra), []);
    });
  }

  it('reports every refused value of a kvm_extra, in order', async () => {
    const p = await problems('-drive file=/etc/a -device virtio-rng-pci -chardev file,id=c,path=/etc/b');
    assert.deepEqual(p.map((x) => x.index), [1, 5]);
  });

  it('classifies without the roots: kinds and paths for each option form', () => {
    const kinds = (extra: string): string[] => hostAccesses(shellSplit(extra)).map((a) => `${a.kind}:${a.path ?? ''}`);
    assert.deepEqual(kinds('-kernel /k -bios /b -cdrom /c -D /l -pidfile /p'), ['kernel:/k', 'read:/b', 'disk:/c', 'log:/l', 'pidfile:/p']);
    assert.deepEqual(kinds('-chardev socket,id=a,path=/s,server=on -chardev socket,id=b,path=/t'), ['socket:/s', 'connect:/t']);
    assert.deepEqual(kinds('-netdev tap,id=n,script=/x'), ['exec:']);
  });

  for (const file of ['ganeti/kvm_runtime.json', 'ganeti/v2.15.2/kvm_runtime.json', 'ganeti-3.0/inst1.example.com.runtime', 'ganeti-3.0/inst2.example.com.runtime']) {
    it(`passes the kvm_cmd Ganeti itself wrote (${file}): its pid file, monitor and serial sockets, and -D log`, async () => {
      const cmd = (JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as unknown[][])[0].map(String);
      // As on a Ganeti node: the run dir is Ganeti's, the runtime dir its conf/.
      const node = { storageRoots: ['/dev/', '/var/run/ganeti/instance-disks/'], kernelRoots: ['/boot/'], runDir: DEFAULT_RUN_DIR, runtimeDir: `${DEFAULT_RUN_DIR}/conf` };
      assert.deepEqual(await hostAccessProblems(cmd.slice(1), node, 1), []);
    });
  }

  it('in a Ganeti kvm_cmd, a -pidfile or socket in the runtime dir is refused', async () => {
    const node = { storageRoots: ['/dev/'], kernelRoots: ['/boot/'], runDir: DEFAULT_RUN_DIR, runtimeDir: `${DEFAULT_RUN_DIR}/conf` };
    const p = await hostAccessProblems(['-name', 'x', '-serial', `unix:${DEFAULT_RUN_DIR}/conf/y.runtime,server,nowait`], node, 1);
    assert.equal(p[0]?.index, 4);
    assert.match(p[0].message, /must not lie in/);
  });
});
