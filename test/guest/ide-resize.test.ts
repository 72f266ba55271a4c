/**
 * Growing an IDE disk (disk_type "ide", ide-hd on the PIIX controller of a
 * `pc` machine) under a booted Linux guest, through the daemon's
 * `disk.resize` (what the disk-grow post hook calls).
 *
 * QEMU takes the new size at once, but Linux's libata keeps the sector count
 * it read with IDENTIFY at probe time: nothing tells it the size changed
 * (IDE has no capacity-change notice, unlike virtio-blk's config interrupt
 * or SCSI's unit attention), and a SCSI rescan of the disk answers READ
 * CAPACITY from that cached count. The guest sees the new size only when
 * libata probes the disk anew, i.e. when the disk is detached and attached
 * again: deleting its SCSI device and scanning the host does that at once
 * (fine for a disk nothing holds); any libata revalidation (a host scan, or
 * error handling) finds "n_sectors mismatch", treats the disk as replaced
 * and re-attaches it under a new name, cutting a mounted file system off.
 *
 * One boot (the ata_piix driver is loaded on request, gk.modules); the tests
 * run in order on that guest. Disks: disks[0] master and disks[1] slave of
 * ide.0. The kit runs from its initramfs, so both are data disks.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, truncateSync } from 'node:fs';
import { dirname } from 'node:path';
import { RpcCallError, RpcClient } from '../../plugin/rpc';
import type { RuntimeStore } from '../../plugin/runtime';
import type { RuntimeV2_16 } from '../../plugin/types';
import { startDaemonGuest } from '../helpers/daemon-guest';
import { guestHvparams, guestKit, type GuestConsole } from '../helpers/guest';
import { useQemuCleanup, type TestQemu } from '../helpers/qemu';
import { makeSpec } from '../helpers/specs';
import { spawnDaemon, type DaemonProcess } from '../integration/rpc/daemon-process';

const NAME = 'ide1.example.com';
const MiB = 1024 * 1024;
/** localize() gives each disk a 1 MiB image. */
const BOOT_BYTES = 1 * MiB;
const GROWN_BYTES = 8 * MiB;
const sectors = (bytes: number): number => bytes / 512;

/** A disk as the guest has it: block device, libata port (ata1 = ide.0), IDE unit, size in 512-byte sectors. */
interface GuestIdeDisk {
  block: string;
  port: string;
  unit: number;
  host: string;
  sectors: number;
}

// One line per sd block device: "<name> <sysfs device path> <size>". The
// path reads …/ata1/host0/target0:0:1/0:0:1:0 for ide.0 unit 1.
const LIST_DISKS = `for d in /sys/block/sd*; do [ -e "$d" ] || continue; echo "\${d##*/} $(readlink -f "$d/device") $(cat "$d/size")"; done`;

async function ideDisks(con: GuestConsole): Promise<GuestIdeDisk[]> {
  const out = await con.check(LIST_DISKS);
  return out.split('\n').filter((l) => l.trim() !== '').map((l) => {
    const [block, devPath, size] = l.trim().split(/\s+/);
    const m = /\/(ata\d+)\/(host\d+)\/target\d+:\d+:(\d+)\//.exec(devPath);
    assert.ok(m, `${block} is not behind a libata port: ${devPath}`);
    return { block, port: m[1], host: m[2], unit: Number(m[3]), sectors: Number(size) };
  });
}

/** The guest's disk for runtime disk `index` (bus ide.N is libata port ata<N+1> on PIIX). */
async function guestDiskOf(con: GuestConsole, runtime: RuntimeV2_16, index: number): Promise<GuestIdeDisk> {
  const hv = runtime[3][index][0].hvinfo as { bus: string; unit: number };
  const port = `ata${Number(hv.bus.replace(/^ide\./, '')) + 1}`;
  const all = await ideDisks(con);
  const d = all.find((x) => x.port === port && x.unit === hv.unit);
  assert.ok(d, `the guest has no disk at ${port} unit ${hv.unit} (disks[${index}], ${hv.bus}); it has ${JSON.stringify(all)}`);
  return d;
}

interface ResizeResult {
  device: string;
  before: number;
  after: number;
  resized: boolean;
}

interface VirtualSizes {
  [qdev: string]: number | undefined;
}

async function qemuSizes(vm: TestQemu): Promise<VirtualSizes> {
  const blocks = await vm.qmp.execute<Array<{ qdev?: string; inserted?: { image?: { 'virtual-size'?: number } } }>>('query-block');
  return Object.fromEntries(blocks.map((b) => [b.qdev ?? '', b.inserted?.image?.['virtual-size']]));
}

describe('growing an IDE disk under a booted guest (pc, ata_piix)', function () {
  this.timeout(180_000);
  useQemuCleanup();

  let vm: TestQemu;
  let con: GuestConsole;
  let daemon: DaemonProcess;
  let client: RpcClient;
  let store: RuntimeStore;
  let runtime: RuntimeV2_16;

  before(async () => {
    const kit = guestKit();
    const spec = makeSpec({ name: NAME, disks: 2, nics: 0, hvparams: { disk_type: 'ide', machine_version: 'pc', ...guestHvparams(kit, 'gk.modules=ata_piix'), reboot_behavior: 'exit' } });
    spec.beparams = { ...spec.beparams, maxmem: 256 };
    let dir: string;
    ({ vm, dir, runtime, store, con } = await startDaemonGuest(spec));
    await con.waitReady(60_000);
    daemon = await spawnDaemon({ dir, env: { GKD_STORAGE_ROOTS: `${dir}:/dev/`, GKD_KERNEL_ROOTS: `${dirname(kit.kernel)}/` } });
    client = await RpcClient.connect(daemon.socket);
  });

  after(async () => {
    await client?.close().catch(() => undefined);
    await daemon?.stop();
    con?.close();
  });

  /** Grows disks[index]'s image (what the storage layer does) and has the daemon tell QEMU, accepting the re-probe. */
  async function grow(index: number): Promise<ResizeResult> {
    truncateSync(runtime[3][index][1], GROWN_BYTES);
    return client.call<ResizeResult>('disk.resize', { name: NAME, index, allowIdeReprobe: true });
  }

  it('disk.resize refuses an IDE disk unless the caller accepts the re-probe, changing nothing in QEMU or the runtime file', async () => {
    const id = (runtime[3][1][0].hvinfo as { id: string }).id;
    truncateSync(runtime[3][1][1], GROWN_BYTES);
    const file = readFileSync(store.path(NAME));
    const e = await client.call('disk.resize', { name: NAME, index: 1 }).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof RpcCallError, 'refused');
    const d = e.data as { code: string; field: string; device: string };
    assert.deepEqual([d.code, d.field, d.device], ['GKD_UNSUPPORTED_VALUE', 'allowIdeReprobe', id]);
    assert.match(e.message, /IDE disk.*next full restart/);
    assert.equal((await qemuSizes(vm))[id], BOOT_BYTES, 'QEMU keeps the old size');
    assert.deepEqual(readFileSync(store.path(NAME)), file, 'the runtime file is unchanged');
  });

  it('disk.resize with allowIdeReprobe grows the IDE disk in QEMU at once, but the guest keeps its boot-time size, even after a SCSI rescan of the disk', async () => {
    const id = (runtime[3][1][0].hvinfo as { id: string }).id;
    const before = await guestDiskOf(con, runtime, 1);
    assert.equal(before.sectors, sectors(BOOT_BYTES));

    const r = await grow(1);
    assert.deepEqual(r, { name: NAME, device: id, before: BOOT_BYTES, after: GROWN_BYTES, resized: true });
    assert.equal((await qemuSizes(vm))[id], GROWN_BYTES, 'QEMU has the new size (query-block)');
    assert.equal((await store.read(NAME)).upgraded[3][1][0].size, GROWN_BYTES / MiB, 'the runtime file has the new size');

    // libata answers READ CAPACITY from the count IDENTIFY gave at probe time.
    await con.check(`echo 1 > /sys/block/${before.block}/device/rescan`);
    const after = await guestDiskOf(con, runtime, 1);
    assert.deepEqual(after, before, 'the guest still has the boot-time size');
  });

  it('deleting the idle disk\'s SCSI device and scanning its host re-probes it: the guest sees the new size', async () => {
    const before = await guestDiskOf(con, runtime, 1);
    assert.equal(before.sectors, sectors(BOOT_BYTES), 'the previous test left the guest with the old size');
    const mark = (await con.dmesg()).length;

    // Synchronous: the delete detaches the ATA device, the scan waits for libata's error handler to probe it.
    await con.check(`echo 1 > /sys/block/${before.block}/device/delete && echo '- - -' > /sys/class/scsi_host/${before.host}/scan`, 60_000);
    const after = await guestDiskOf(con, runtime, 1);
    assert.equal(after.sectors, sectors(GROWN_BYTES), 'the guest sees the grown disk');
    // Nothing held the disk, so its name was free again.
    assert.equal(after.block, before.block);
    const log = (await con.dmesg()).slice(mark);
    assert.match(log, new RegExp(`${before.port}\\.01: ${sectors(GROWN_BYTES)} sectors`), 'libata read the new size with IDENTIFY');
    assert.doesNotMatch(log, /n_sectors mismatch/);
  });

  it('on a mounted disk a re-probe is an unplug: libata drops the disk on "n_sectors mismatch", it returns under a new name and the file system loses it', async () => {
    const disk = await guestDiskOf(con, runtime, 0);
    assert.equal(disk.sectors, sectors(BOOT_BYTES));
    await con.check(`mke2fs -q /dev/${disk.block} && mkdir -p /mnt/d0 && mount -t ext2 /dev/${disk.block} /mnt/d0 && echo kept > /mnt/d0/f && sync`);

    await grow(0);
    assert.equal((await guestDiskOf(con, runtime, 0)).sectors, sectors(BOOT_BYTES), 'nothing changed in the guest by itself');
    const mark = (await con.dmesg()).length;

    // A host scan revalidates every disk on the port (as libata's error handling does after a bus error).
    await con.check(`echo '- - -' > /sys/class/scsi_host/${disk.host}/scan`, 90_000);
    const log = (await con.dmesg()).slice(mark);
    assert.match(log, new RegExp(`${disk.port}\\.00: n_sectors mismatch ${sectors(BOOT_BYTES)} != ${sectors(GROWN_BYTES)}`));
    assert.match(log, new RegExp(`${disk.port}\\.00: detaching`));

    const back = await guestDiskOf(con, runtime, 0);
    assert.equal(back.sectors, sectors(GROWN_BYTES), 'the re-attached disk has the new size');
    assert.notEqual(back.block, disk.block, 'the mount still holds the old device, so the disk came back under another name');
    // The mount stays on the detached device: its data is out of reach.
    const read = await con.run('cat /mnt/d0/f');
    assert.notEqual(read.rc, 0, `the mounted file system still reads: ${read.out}`);
    assert.match(read.out, /Input\/output error/);
    await con.run('umount -l /mnt/d0');
  });
});
