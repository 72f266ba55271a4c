/**
 * No kvm_extra that names a host path outside the configured roots passes:
 * generated kvm_extra strings put an absolute path outside the storage,
 * kernel and run-dir roots into one of the forms QEMU opens, runs or binds
 * (drives, block nodes, chardevs, memory backends, ROMs, firmware, sockets,
 * scripts), in either option spelling, quoted in any shell style and mixed
 * with harmless options. The rule must refuse every one, and the real
 * daemon must refuse it in instance.start (naming the field, writing
 * nothing) and in an incoming kvm_cmd of migration.accept.
 *
 * Reproduce a failure with the seed printed in the failure message:
 * GKD_FUZZ_SEED=<seed> npx mocha dist/test/property/rpc/kvm-extra-host-files.fuzz.test.js
 */
import { strict as assert } from 'node:assert';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { DEFAULT_RUN_DIR, shellSplit } from '../../../plugin/planner';
import { RpcClient } from '../../../plugin/rpc';
import { hostAccessProblems } from '../../../plugin/rpc/methods/qemu-host-access';
import { sampleSpec, spawnDaemon, tempDir, type DaemonProcess } from '../../integration/rpc/daemon-process';

const SEED = process.env.GKD_FUZZ_SEED !== undefined ? Number(process.env.GKD_FUZZ_SEED) : Date.now() % 2 ** 31;

/** An absolute path outside every root the tests configure (temp dirs, /dev/, Ganeti's run and disk dirs; /boot/ is no kernel root here). */
const outsidePath: fc.Arbitrary<string> = fc.tuple(
  fc.constantFrom('etc', 'root', 'home', 'usr', 'proc', 'bin', 'opt', 'boot', 'srv', 'sys', 'lib'),
  fc.array(fc.stringMatching(/^[a-z0-9_.]{1,8}$/), { minLength: 0, maxLength: 4 }),
).map(([first, rest]) => `/${[first, ...rest].join('/')}`);

/** The forms a host path takes in QEMU options: [args before, the option, its value]. */
const FORMS: ReadonlyArray<(p: string) => string[]> = [
  (p) => ['-drive', `file=${p},if=none,id=d`],
  (p) => ['-drive', `file=file:${p},if=none,id=d`],
  (p) => ['-blockdev', `driver=file,node-name=n,filename=${p}`],
  (p) => ['-blockdev', JSON.stringify({ driver: 'raw', 'node-name': 'r', file: { driver: 'file', filename: p } })],
  (p) => ['-chardev', `file,id=c,path=${p}`],
  (p) => ['-chardev', `null,id=c,logfile=${p}`],
  (p) => ['-chardev', `socket,id=c,path=${p},server=on,wait=off`],
  (p) => ['-chardev', `socket,id=c,path=${p}`],
  (p) => ['-serial', `file:${p}`],
  (p) => ['-serial', `unix:${p},server=on,wait=off`],
  (p) => ['-parallel', p],
  (p) => ['-object', `memory-backend-file,id=m,mem-path=${p},size=1M`],
  (p) => ['-object', `rng-random,id=r,filename=${p}`],
  (p) => ['-device', `loader,file=${p}`],
  (p) => ['-device', `virtio-net-pci,romfile=${p}`],
  (p) => ['-device', JSON.stringify({ driver: 'virtio-net-pci', romfile: p })],
  (p) => ['-device', 'virtio-rng-pci,id=r', '-set', `device.r.romfile=${p}`],
  (p) => ['-global', `virtio-net-pci.romfile=${p}`],
  (p) => ['-fw_cfg', `name=opt/x,file=${p}`],
  (p) => ['-netdev', `tap,id=n,script=${p}`],
  (p) => ['-netdev', `stream,id=s,server=on,addr.type=unix,addr.path=${p}`],
  (p) => ['-virtfs', `local,path=${p},mount_tag=t,security_model=none`],
  (p) => ['-incoming', `unix:${p}`],
  (p) => ['-vnc', `unix:${p}`],
  (p) => ['-unknown-option', p],
  ...['-kernel', '-initrd', '-bios', '-pflash', '-cdrom', '-hda', '-mem-path', '-dtb', '-L'].map((o) => (p: string) => [o, p]),
];

const HARMLESS: readonly string[][] = [['-device', 'virtio-rng-pci'], ['-usb'], ['-rtc', 'base=utc'], ['-vga', 'std'], ['-cpu', 'qemu64']];

/** One argument written as a shell would read it back: bare (when safe), single- or double-quoted. */
function quote(arg: string, style: number): string {
  if (style === 0 && /^[A-Za-z0-9_./:=,+-]+$/.test(arg)) return arg;
  if (style === 2 && !/["\\$`]/.test(arg)) return `"${arg}"`;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A kvm_extra with one host path outside the roots, and the args it splits into. */
const hostileExtra = fc.record({
  path: outsidePath,
  form: fc.nat(FORMS.length - 1),
  dashes: fc.boolean(),
  before: fc.array(fc.constantFrom(...HARMLESS), { maxLength: 2 }),
  after: fc.array(fc.constantFrom(...HARMLESS), { maxLength: 2 }),
  styles: fc.array(fc.nat(2), { minLength: 12, maxLength: 12 }),
}).map(({ path, form, dashes, before, after, styles }) => {
  const hostile = FORMS[form](path).map((a) => (dashes && a.startsWith('-') && !a.startsWith('--') ? `-${a}` : a));
  const args = [...before.flat(), ...hostile, ...after.flat()];
  return { path, args, extra: args.map((a, i) => quote(a, styles[i % styles.length])).join(' ') };
});

describe(`kvm_extra naming host paths outside the roots (seed ${SEED}, rerun with GKD_FUZZ_SEED=${SEED})`, function () {
  this.timeout(300_000);

  it('the rule refuses every generated kvm_extra (the split form equals what was generated)', async () => {
    const config = { storageRoots: ['/dev/', '/var/run/ganeti/instance-disks/'], kernelRoots: ['/nonexistent-kernels/'], runDir: DEFAULT_RUN_DIR, runtimeDir: `${DEFAULT_RUN_DIR}/conf` };
    await fc.assert(
      fc.asyncProperty(hostileExtra, async ({ args, extra }) => {
        assert.deepEqual(shellSplit(extra), args);
        const problems = await hostAccessProblems(args, config);
        assert.ok(problems.length > 0, `accepted: ${extra}`);
      }),
      { seed: SEED, numRuns: 2000, endOnFailure: true },
    );
  });

  describe('through the real daemon', () => {
    let d: DaemonProcess;
    let c: RpcClient;
    before(async () => {
      // Roots of the test's own: the node's file-storage paths and /boot/ must not decide what is outside.
      const dir = tempDir('gkd-extra-fuzz-');
      d = await spawnDaemon({ dir, env: { GKD_STORAGE_ROOTS: `/dev/:${join(dir, 'storage')}`, GKD_KERNEL_ROOTS: join(dir, 'boot') } });
      c = await RpcClient.connect(d.socket);
    });
    after(async () => {
      await c?.close();
      await d?.stop();
    });
    const runtimeFiles = (): string[] => (existsSync(d.runtimeDir) ? readdirSync(d.runtimeDir) : []);

    it('instance.start refuses each with -32602 naming /instance/hvparams/kvm_extra and writes nothing; migration.accept refuses it in a kvm_cmd', async () => {
      const planned = await c.call<{ runtime: unknown[][] }>('instance.plan', { instance: { ...sampleSpec('fuzz3'), disks: [] } });
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(hostileExtra, async ({ args, extra }) => {
          runs++;
          const spec = sampleSpec('fuzz3') as { hvparams: Record<string, unknown> };
          spec.hvparams = { ...spec.hvparams, kvm_extra: extra };
          await assert.rejects(c.call('instance.start', { instance: spec }), (e: any) => {
            assert.equal(e.code, -32602, `${extra}: ${e.message}`);
            assert.equal(e.data.errors[0].path, '/instance/hvparams/kvm_extra');
            return true;
          });
          const runtime = structuredClone(planned.runtime);
          const at = runtime[0].length;
          runtime[0].push(...args);
          await assert.rejects(c.call('migration.accept', { name: 'fuzz3', runtime, incoming: 'defer' }), (e: any) => {
            assert.equal(e.data?.code, 'GKD_MIGRATION_REFUSED', `${extra}: ${e.message}`);
            const index = Number(/^runtime\[0\]\[(\d+)\]$/.exec(String(e.data.field))?.[1]);
            assert.ok(index >= at, `${extra}: ${e.data.field}`);
            return true;
          });
          assert.deepEqual(runtimeFiles(), [], extra);
        }),
        { seed: SEED, numRuns: 150, endOnFailure: true },
      );
      assert.equal(runs, 150);
      assert.ok(!existsSync(join(d.runtimeDir, 'fuzz3.runtime')));
    });
  });
});
