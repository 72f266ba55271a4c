/**
 * The hooks on a real Ganeti 3.0 node refuse only what Ganeti or QEMU would
 * fail on anyway, and say why; every value Ganeti 3.0 accepts for disk_type,
 * nic_type and scsi_controller_type either starts, or is refused by the hook
 * exactly when QEMU refuses it too.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import {
  addInstance, call, callError, ensureGanetiNode, gnt, gntTry, GANETI_PY, HOOKS_DIR, qemuPid, removeInstance, RUNTIME_DIR, SKIP_GANETI,
} from './helpers/lab';

/** Ganeti 3.0's accepted values, read from Ganeti's own constants. */
function ganetiValues(constant: string): string[] {
  const r = spawnSync('/usr/bin/python3', ['-c', `import sys, json; sys.path.insert(0, "${GANETI_PY}"); from ganeti import constants as C; print(json.dumps(sorted(C.${constant})))`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as string[];
}

/** Runs `gnt-instance start`; returns its exit code and output. */
async function start(name: string): Promise<{ code: number; out: string }> {
  const r = await gntTry('gnt-instance', 'start', name);
  return { code: r.code, out: r.stdout + r.stderr };
}

async function stop(name: string): Promise<void> {
  if (qemuPid(name) !== undefined) await gnt('gnt-instance', 'stop', '--timeout=0', name);
}

(SKIP_GANETI ? describe.skip : describe)('Ganeti 3.0 node: the hooks refuse only what would fail anyway', function () {
  this.timeout(600_000);
  const NAME = 'gkd-types.example.com';
  const LSI = 'gkd-lsi.example.com';

  before(async function () {
    this.timeout(1_200_000);
    await ensureGanetiNode();
    for (const n of [NAME, LSI, 'gkd-p.example.com']) await removeInstance(n);
    const r = await addInstance(NAME, { disks: 1, nics: 1, diskSizeMb: 1 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    for (const n of [NAME, LSI]) await removeInstance(n).catch(() => undefined);
  });

  // What QEMU 7.2 does with each disk type as Ganeti 3.0 passes it, on a file-backed disk.
  const DISK_TYPE_STARTS: Record<string, boolean> = {
    paravirtual: true, 'scsi-hd': true, 'scsi-cd': true, ide: true, pflash: true,
    // scsi-block and scsi-generic need a SCSI block device; a file is refused by QEMU.
    'scsi-block': false, 'scsi-generic': false,
    // -drive if=scsi|sd|mtd does not start on a pc machine.
    scsi: false, sd: false, mtd: false,
  };

  it('every disk_type Ganeti 3.0 accepts: modify -H + start succeeds, or the start is refused by QEMU and, where the planner knows it, by the hook first with the reason', async () => {
    const values = ganetiValues('HT_KVM_VALID_DISK_TYPES');
    assert.deepEqual(values.slice().sort(), Object.keys(DISK_TYPE_STARTS).sort(), "the table above covers Ganeti's list");
    const seen: string[] = [];
    for (const t of values) {
      await gnt('gnt-instance', 'modify', '-H', `disk_type=${t}`, NAME);
      const r = await start(NAME);
      seen.push(`${t}: exit ${r.code}`);
      if (DISK_TYPE_STARTS[t]) {
        assert.equal(r.code, 0, `${t} must start: ${r.out}`);
        assert.ok(qemuPid(NAME) !== undefined, `${t}: QEMU runs`);
      } else {
        assert.notEqual(r.code, 0, `${t} does not start in QEMU: ${r.out}`);
        // The planner lays these out like Ganeti: QEMU's own refusal (no SCSI block device) is what stops them.
        if (t === 'scsi-block' || t === 'scsi-generic') assert.doesNotMatch(r.out, /kvm-devices instance-start-pre: refused/, r.out);
        if (['scsi', 'sd', 'mtd'].includes(t)) {
          // The hook stops it before QEMU, naming the parameter and the reason.
          assert.match(r.out, new RegExp(`kvm-devices instance-start-pre: refused: Cannot use hvparams.disk_type "${t}".*do(es)? not start`), r.out);
        }
      }
      await stop(NAME);
    }
    await gnt('gnt-instance', 'modify', '-H', 'disk_type=paravirtual', NAME);
    process.stdout.write(`        disk types: ${seen.join(', ')}\n`);
  });

  it('every nic_type Ganeti 3.0 accepts: modify -H + start succeeds, except ne2k_isa, which Ganeti puts on PCI: refused by the hook with the reason', async () => {
    try {
      for (const t of ganetiValues('HT_KVM_VALID_NIC_TYPES')) {
        await gnt('gnt-instance', 'modify', '-H', `nic_type=${t}`, NAME);
        const r = await start(NAME);
        if (t === 'ne2k_isa') {
          assert.notEqual(r.code, 0);
          assert.match(r.out, /instance-start-pre: refused: .*"ne2k_isa": Ganeti puts them on the PCI bus/);
        } else {
          assert.equal(r.code, 0, `${t}: ${r.out}`);
        }
        await stop(NAME);
      }
    } finally {
      await gnt('gnt-instance', 'modify', '-H', 'nic_type=paravirtual', NAME);
    }
  });

  it('with the plugin\'s start hook moved aside, every value it refuses (disk_type scsi, sd, mtd; nic_type ne2k_isa) fails to start anyway, in Ganeti or QEMU', async () => {
    const hook = join(HOOKS_DIR, 'instance-start-pre.d', 'kvm-devices');
    // Ganeti runs only hook files named [A-Za-z0-9_-]+: with a dot in its name the hook is skipped.
    const aside = `${hook}.aside`;
    renameSync(hook, aside);
    const seen: string[] = [];
    try {
      for (const hv of ['disk_type=scsi', 'disk_type=sd', 'disk_type=mtd', 'nic_type=ne2k_isa']) {
        await gnt('gnt-instance', 'modify', '-H', hv, NAME);
        const r = await start(NAME);
        assert.notEqual(r.code, 0, `${hv} started without the hook: ${r.out}`);
        assert.doesNotMatch(r.out, /kvm-devices/, `${hv}: the hook was moved aside, yet it ran`);
        seen.push(`${hv}: ${(/Error: (.*)/.exec(r.out)?.[1] ?? r.out.trim().split('\n').pop() ?? '').slice(0, 160)}`);
        await stop(NAME);
        await gnt('gnt-instance', 'modify', '-H', 'disk_type=paravirtual,nic_type=paravirtual', NAME);
      }
    } finally {
      renameSync(aside, hook);
      await gnt('gnt-instance', 'modify', '-H', 'disk_type=paravirtual,nic_type=paravirtual', NAME);
    }
    process.stdout.write(`        without the hook:\n${seen.map((l) => `          ${l}`).join('\n')}\n`);
  });

  it('every scsi_controller_type Ganeti 3.0 accepts, with scsi-hd disks: modify -H + start succeeds', async () => {
    await gnt('gnt-instance', 'modify', '-H', 'disk_type=scsi-hd', NAME);
    for (const t of ganetiValues('HT_KVM_VALID_SCSI_CONTROLLER_TYPES')) {
      await gnt('gnt-instance', 'modify', '-H', `scsi_controller_type=${t}`, NAME);
      const r = await start(NAME);
      assert.equal(r.code, 0, `${t}: ${r.out}`);
      const v = await call<{ differences: unknown[] }>('instance.verify', { name: NAME });
      assert.deepEqual(v.differences, [], `${t}: instance.verify`);
      await stop(NAME);
    }
    await gnt('gnt-instance', 'modify', '-H', 'disk_type=paravirtual,scsi_controller_type=lsi', NAME);
  });

  it('disk_discard, disk_cache and disk_aio: each value Ganeti 3.0 accepts starts', async () => {
    // Ganeti itself allows disk_aio=native only with disk_cache=none.
    const settings = [
      ...ganetiValues('HT_VALID_DISCARD_TYPES').map((v) => `disk_discard=${v}`),
      ...ganetiValues('HT_VALID_CACHE_TYPES').map((v) => `disk_cache=${v},disk_aio=threads`),
      ...ganetiValues('HT_KVM_VALID_AIO_TYPES').map((v) => `disk_aio=${v},disk_cache=${v === 'native' ? 'none' : 'default'}`),
    ];
    for (const hv of settings) {
      await gnt('gnt-instance', 'modify', '-H', hv, NAME);
      const r = await start(NAME);
      assert.equal(r.code, 0, `${hv}: ${r.out}`);
      await stop(NAME);
    }
    await gnt('gnt-instance', 'modify', '-H', 'disk_discard=default,disk_cache=default,disk_aio=threads', NAME);
  });

  it('lsi: 8 scsi-hd disks are refused at add; an instance that grew to 8 starts with a warning; a 9th disk makes the start refused as QEMU would', async () => {
    const add8 = await addInstance(LSI, { disks: 8, nics: 0, diskSizeMb: 1, hv: { disk_type: 'scsi-hd' } });
    assert.notEqual(add8.code, 0);
    assert.match(add8.stdout + add8.stderr, /instance-add-pre: refused: Cannot place 8 SCSI disks on "lsi".*7 usable targets/);

    const add7 = await addInstance(LSI, { disks: 7, nics: 0, diskSizeMb: 1, hv: { disk_type: 'scsi-hd' } });
    assert.equal(add7.code, 0, add7.stdout + add7.stderr);
    // Grown while stopped: instance-modify-pre sees the old disk list, the post hook warns about the new one.
    const grow = await gnt('gnt-instance', 'modify', '--disk', 'add:size=1M', LSI);
    assert.match(grow.stdout + grow.stderr, /instance-modify-post: warning: .*WARNING: Cannot place 8 SCSI disks on "lsi"/);
    const r8 = await start(LSI);
    assert.equal(r8.code, 0, `8 disks on lsi start in QEMU: ${r8.out}`);
    await stop(LSI);

    await gnt('gnt-instance', 'modify', '--disk', 'add:size=1M', LSI);
    const r9 = await start(LSI);
    assert.notEqual(r9.code, 0);
    assert.match(r9.out, /instance-start-pre: refused: Cannot place 9 SCSI disks on "lsi"/);
    assert.equal(qemuPid(LSI), undefined, 'the hook stopped it before QEMU');
  });

  it('instance.cleanup refuses while QEMU runs; the stop and remove post hooks run then keep the runtime file and say so', async () => {
    await gnt('gnt-instance', 'start', NAME);
    const file = join(RUNTIME_DIR, `${NAME}.runtime`);
    const e = await callError('instance.cleanup', { name: NAME });
    assert.equal(e.code, 'GKD_INSTANCE_RUNNING');
    assert.ok(existsSync(file));
    for (const hpath of ['instance-stop', 'instance-remove']) {
      // The installed hook, as ganeti-noded runs it: environment reset to PATH plus GANETI_*.
      const hook = spawnSync(join(HOOKS_DIR, `${hpath}-post.d`, 'kvm-devices'), [], {
        cwd: '/', encoding: 'utf8',
        env: { PATH: '/sbin:/bin:/usr/sbin:/usr/bin', GANETI_HOOKS_PATH: hpath, GANETI_HOOKS_PHASE: 'post', GANETI_INSTANCE_NAME: NAME, GANETI_INSTANCE_HYPERVISOR: 'kvm' },
      });
      assert.equal(hook.status, 0, `${hpath}: ${hook.stdout}${hook.stderr}`);
      assert.match(hook.stdout, /runtime file kept: .*QEMU \(pid \d+\) is still running it/, hpath);
      assert.ok(existsSync(file), `the live runtime file is still there after ${hpath}-post`);
    }
    await stop(NAME);
  });
});
