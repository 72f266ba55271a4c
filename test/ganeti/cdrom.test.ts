/**
 * Live CD-ROM change on a real Ganeti 3.0 instance: `gnt-instance modify -H
 * cdrom_image_path=…` on a running instance changes the medium in QEMU at
 * once through the instance-modify post hook (Ganeti 3.0 alone applies it
 * at the next start), the runtime file's kvm_cmd names the new image (what
 * a migration target opens), an empty value ejects, and a missing image is
 * refused before QEMU is touched.
 */
import { strict as assert } from 'node:assert';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestConsole } from '../helpers/guest';
import { callError, ensureGanetiNode, ganetiRuntime, gnt, guestHv, qmpOnce, removeInstance, SKIP_GANETI, startGuestInstance } from './helpers/lab';

interface Block {
  device: string;
  tray_open?: boolean;
  inserted?: { file: string };
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0: live CD-ROM change through the instance-modify post hook', function () {
  this.timeout(300_000);
  const NAME = 'gkd-cd.example.com';
  let con: GuestConsole | undefined;
  /** The guest kit loads its IDE CD-ROM driver on request. */
  const GUEST_CD_ARGS = 'gk.modules=ata_piix,sr_mod';
  // Under Ganeti's file storage dir: a storage root of the daemon.
  const DIR = '/srv/ganeti/file-storage/gkd-images';
  const A = join(DIR, 'a.iso');
  const B = join(DIR, 'b.iso');

  const drive = async (): Promise<Block | undefined> => (await qmpOnce<Block[]>(NAME, 'query-block')).find((b) => b.device === 'ide0-cd0');
  const kvmCmdDrive = (): string => {
    const cmd = ganetiRuntime(NAME)[0].map(String);
    return cmd.filter((a, i) => cmd[i - 1] === '-drive' && a.includes('media=cdrom'))[0] ?? '';
  };

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    mkdirSync(DIR, { recursive: true });
    writeFileSync(A, Buffer.alloc(64 * 1024, 'a'));
    writeFileSync(B, Buffer.alloc(64 * 1024, 'b'));
    // An IDE CD-ROM has a tray and a medium to change; Ganeti's default (cdrom_disk_type taken from
    // disk_type, here paravirtual) is a read-only virtio disk, which QEMU cannot change live.
    // A booted guest with the IDE CD-ROM driver reads the medium itself.
    con = await startGuestInstance(NAME, { disks: 1, nics: 0, diskSizeMb: 1, kernelArgs: GUEST_CD_ARGS, hv: { cdrom_image_path: A, cdrom_disk_type: 'ide' } });
  });

  /** The first bytes of the guest's CD-ROM, as the guest reads them ('' when it has no medium). */
  const guestReads = async (): Promise<string> => {
    assert.ok(con !== undefined);
    // The console ends output with a newline of its own.
    return (await con.run('head -c 4 /dev/sr0 2>/dev/null')).out.replace(/\n$/, '');
  };

  after(async () => {
    con?.close();
    await removeInstance(NAME).catch(() => undefined);
    rmSync(DIR, { recursive: true, force: true });
  });

  it('Ganeti started QEMU with the first image', async () => {
    assert.equal((await drive())?.inserted?.file, A);
    assert.match(kvmCmdDrive(), /^file=.*a\.iso,/);
    assert.equal(await guestReads(), 'aaaa');
  });

  it('modify -H cdrom_image_path on the running instance: QEMU has the new image at once, and kvm_cmd names it', async () => {
    const r = await gnt('gnt-instance', 'modify', '-H', `cdrom_image_path=${B}`, NAME);
    assert.doesNotMatch(r.stdout + r.stderr, /WARNING/, r.stdout + r.stderr);
    assert.equal((await drive())?.inserted?.file, B);
    assert.match(kvmCmdDrive(), /^file=.*b\.iso,.*media=cdrom/);
    // The guest reads the new medium without a reboot (after the tray's close, the drive reports
    // "not ready" for a moment, as a real one does).
    let seen = '';
    const t0 = Date.now();
    while (seen !== 'bbbb' && Date.now() - t0 < 10_000) {
      seen = await guestReads();
      if (seen !== 'bbbb') await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(seen, 'bbbb');
    process.stdout.write(`        the guest read the new medium ${Date.now() - t0} ms after the modify returned\n`);
  });

  it('an empty cdrom_image_path ejects the medium', async () => {
    await gnt('gnt-instance', 'modify', '-H', 'cdrom_image_path=', NAME);
    const d = await drive();
    assert.equal(d?.inserted, undefined, JSON.stringify(d));
    assert.doesNotMatch(kvmCmdDrive(), /file=/);
    assert.equal(await guestReads(), '');
  });

  it('a virtio CD-ROM (Ganeti\'s default cdrom_disk_type with paravirtual disks) cannot change live: the hook says so, the image applies at the next start', async () => {
    await gnt('gnt-instance', 'stop', '--timeout=0', NAME);
    await gnt('gnt-instance', 'modify', '-H', `cdrom_disk_type=,cdrom_image_path=${A}`, NAME);
    await gnt('gnt-instance', 'start', NAME);
    const r = await gnt('gnt-instance', 'modify', '-H', `cdrom_image_path=${B}`, NAME);
    assert.match(r.stdout + r.stderr, /WARNING: CD-ROM 1 not changed live, it applies at the next start: .*only IDE CD-ROM drives/);
    await gnt('gnt-instance', 'stop', '--timeout=0', NAME);
    await gnt('gnt-instance', 'modify', '-H', 'cdrom_disk_type=ide', NAME);
    await gnt('gnt-instance', 'start', NAME);
    con?.close();
    con = await guestHv(NAME, GUEST_CD_ARGS).console();
    await con.waitReady(90_000);
  });

  it('cdrom.change refuses a missing image and an image outside the storage roots, changing nothing', async () => {
    await gnt('gnt-instance', 'modify', '-H', `cdrom_image_path=${A}`, NAME);
    assert.equal((await drive())?.inserted?.file, A);
    const before = JSON.stringify(ganetiRuntime(NAME));
    const missing = await callError('cdrom.change', { name: NAME, slot: 1, path: join(DIR, 'missing.iso') });
    assert.equal(missing.code, 'GKD_UNSUPPORTED_VALUE');
    assert.equal(missing.field, 'path');
    assert.match(missing.message, /Cannot insert ".*missing\.iso": ENOENT/);
    const outside = await callError('cdrom.change', { name: NAME, slot: 1, path: '/etc/hostname' });
    assert.match(outside.message, /storage roots|must lie under/);
    assert.equal(JSON.stringify(ganetiRuntime(NAME)), before);
    assert.equal((await drive())?.inserted?.file, A);
  });
});
