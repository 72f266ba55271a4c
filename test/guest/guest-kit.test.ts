/**
 * Proves the guest kit end to end: the kernel + initramfs from prepare.sh
 * boot under TCG, /init answers on the command channel, and devices given on
 * the command line are visible in the guest.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GuestConsole, guestArgs, guestKit, stopQemu } from '../helpers/guest';

const VIRTIO_VENDOR = '0x1af4';
const VIRTIO_NET_TRANSITIONAL = '0x1000';
const VIRTIO_BLK_TRANSITIONAL = '0x1001';

describe('guest kit', function () {
  this.timeout(60_000);

  let dir: string | undefined;
  let proc: ChildProcess | undefined;
  let con: GuestConsole | undefined;

  afterEach(async () => {
    con?.close();
    // Only reached with a live QEMU when the test failed before quitting it.
    if (proc && proc.exitCode === null && proc.signalCode === null) await stopQemu(proc, { timeoutMs: 2_000 });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = proc = con = undefined;
  });

  it('boots a guest that sees a virtio-blk disk and a virtio-net NIC', async () => {
    const kit = guestKit(); // throws with instructions when prepare.sh has not run
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-guest-'));
    const disk = path.join(dir, 'disk0.raw');
    const serialLog = path.join(dir, 'ttyS0.log');
    const cmdSocket = path.join(dir, 'ttyS1.sock');
    const qmpSocket = path.join(dir, 'qmp.sock');
    const mac = '52:54:00:12:34:56';
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', disk, '16M']);

    const args = [
      '-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-m', '256',
      '-qmp', `unix:${qmpSocket},server=on,wait=off`,
      ...guestArgs(kit, { serialLog, cmdSocket }),
      '-drive', `file=${disk},if=none,format=raw,id=disk0`,
      '-device', 'virtio-blk-pci,id=disk0,drive=disk0,bus=pci.0,addr=0x5',
      '-netdev', 'user,id=n0',
      '-device', `virtio-net-pci,id=nic0,netdev=n0,mac=${mac},bus=pci.0,addr=0x6`,
    ];
    proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    con = new GuestConsole({ serialLog, cmdSocket, proc });

    const ready = await con.waitReady(45_000);
    assert.equal(ready.kernel, kit.kernelVersion);

    // The protocol carries quoting, newlines and exit codes intact.
    assert.deepEqual(await con.run(`printf '%s\\n' "a 'b'" 'c"d'\nexit 3`), { rc: 3, out: `a 'b'\nc"d\n` });
    assert.deepEqual(await con.run('true'), { rc: 0, out: '' });
    assert.deepEqual(await con.run('printf x; echo y >&2'), { rc: 0, out: 'xy\n' });

    assert.ok((await con.blockDevices()).includes('vda'), 'guest lists vda');
    assert.equal((await con.check('cat /sys/block/vda/size')).trim(), String((16 * 1024 * 1024) / 512));

    const nics = await con.netDevices();
    assert.deepEqual(nics, [{ name: 'eth0', mac }]);

    const pci = await con.pciDevices();
    const at = (addr: string) => pci.find((d) => d.address === addr);
    assert.deepEqual(
      [at('0000:00:05.0')?.vendor, at('0000:00:05.0')?.device, at('0000:00:05.0')?.driver],
      [VIRTIO_VENDOR, VIRTIO_BLK_TRANSITIONAL, 'virtio-pci'],
    );
    assert.deepEqual([at('0000:00:06.0')?.vendor, at('0000:00:06.0')?.device], [VIRTIO_VENDOR, VIRTIO_NET_TRANSITIONAL]);

    const st = await con.waitFor((s) => s.block.includes('vda') && s.net.length === 1, 5_000);
    assert.deepEqual(st.scsi, []);

    const end = await stopQemu(proc, { qmpSocket });
    assert.deepEqual(end, { code: 0, signal: null });
  });
});
