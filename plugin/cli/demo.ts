/**
 * `kvm-devices demo`: the main job end to end on real QEMU, on an embedded
 * instance, through two real daemons (a source node and a target node) on
 * Unix sockets in a private temp dir. Software emulation (TCG) and QEMU
 * user networking, so it needs no KVM, no bridge and no root.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { defaultConfig, type Config } from '../config';
import { RpcCallError, RpcClient, startDaemon, type Daemon } from '../rpc';
import type { Command } from './commands';

const HELP = `usage: kvm-devices demo [--keep] [--qemu PATH]

Runs the main job end to end on real QEMU (software emulation), in a
private temp dir, through two daemons standing for a source and a target
node:
  plan an instance (2 SCSI disks on virtio-scsi-pci, 1 virtio NIC) -> start
  it -> hot-add a SCSI disk and a NIC -> hot-remove a disk -> verify the
  runtime file against QEMU -> migrate to the target node -> verify there.
Prints each step; exit 0 when every step succeeded (the downgrade check must
refuse: Ganeti 2.10 cannot express SCSI disks), 1 when one failed, 130/143
after SIGINT/SIGTERM (the QEMUs are stopped and the temp dir removed first).

  --keep        keep the temp dir (runtime files, logs) for a look
  --qemu PATH   the QEMU binary (default qemu-system-x86_64)
`;

const UUIDS = {
  disk0: '9e7c85f6-b6e5-4243-b27d-680b78c6d203',
  disk1: '4f1d2a10-7c3e-4e8a-9b1f-2d6c0a7e5b31',
  disk2: 'c3a9e2d4-1b7f-4c6a-8e0d-5f2b9a1c7e64',
  nic0: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
  nic1: '7a2b4c6d-8e0f-4a1b-9c3d-5e7f9a1b3c5d',
};

interface Hv {
  driver: string;
  id: string;
  bus: string;
  addr?: string;
  'scsi-id'?: number;
}

function where(h: Hv): string {
  return h.addr !== undefined ? `${h.bus} slot ${h.addr}` : `${h.bus} target ${h['scsi-id']}`;
}

export const demoCommand: Command = {
  summary: 'the main job end to end on real QEMU, on an embedded instance',
  async run(args) {
    let values;
    try {
      values = parseArgs({ args, options: { keep: { type: 'boolean' }, qemu: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }).values;
    } catch (e) {
      process.stderr.write(`kvm-devices demo: ${(e as Error).message}\n\n${HELP}`);
      return 2;
    }
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    const qemu = values.qemu ?? 'qemu-system-x86_64';
    const probe = spawnSync(qemu, ['--version'], { encoding: 'utf8' });
    if (probe.status !== 0) {
      process.stderr.write(`kvm-devices demo: cannot run "${qemu}": install QEMU (on Debian: ./install.sh --with-qemu, or apt-get install qemu-system-x86)\n`);
      return 1;
    }
    const out = (s: string): boolean => process.stdout.write(`${s}\n`);
    out(`${probe.stdout.split('\n')[0]}, software emulation`);

    const dir = mkdtempSync(join(tmpdir(), 'kvm-devices-demo-'));
    const daemons: Daemon[] = [];
    const clients: RpcClient[] = [];
    // Stops the daemons (and with them the QEMUs they launched) and removes the temp dir; once.
    let cleaning: Promise<void> | undefined;
    const cleanup = (): Promise<void> => {
      cleaning ??= (async () => {
        for (const c of clients) await c.close().catch(() => undefined);
        for (const d of daemons) await d.close(1000).catch(() => undefined);
        if (!values.keep) rmSync(dir, { recursive: true, force: true });
      })();
      return cleaning;
    };
    // Ctrl-C or a kill in the middle must not leave QEMUs or the temp dir behind.
    let interrupted: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (interrupted !== undefined) return;
      interrupted = signal;
      process.stderr.write(`kvm-devices demo: ${signal} received, stopping the QEMUs and removing ${dir}\n`);
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let step = 0;
    const t0 = Date.now();
    const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      const t = Date.now();
      const r = await fn();
      out(`${String(++step).padStart(2)}. ${what} (${Date.now() - t} ms)`);
      return r;
    };
    try {
      // A unix: migration socket must lie under the run dir of both daemons (node B binds it, node A
      // connects to it), so node B's directory is inside node A's run dir.
      const home = { 'node-a': join(dir, 'node-a'), 'node-b': join(dir, 'node-a', 'run', 'node-b') };
      const node = async (n: keyof typeof home): Promise<RpcClient> => {
        const base = defaultConfig();
        const cfg: Config = { ...base, socket: join(home[n], 'rpc.sock'), runtimeDir: join(home[n], 'conf'), runDir: join(home[n], 'run'), launch: true, accel: 'tcg', logLevel: 'warn',
          // The demo's disks are scratch files of its own, and its QEMU is the one named on the command line.
          storageRoots: [...base.storageRoots, dir], qemuBinaries: [qemu] };
        const logger = pino({ level: 'warn' }, pino.destination({ dest: join(dir, `${n}.log`), sync: true }));
        daemons.push(await startDaemon(cfg, { logger }));
        const c = await RpcClient.connect(cfg.socket);
        clients.push(c);
        return c;
      };
      const src = await run('daemons up: node A (source) and node B (target)', async () => {
        const a = await node('node-a');
        await node('node-b');
        return a;
      });
      const dst = clients[1];
      const img = (i: number): string => {
        const p = join(dir, `disk${i}.raw`);
        writeFileSync(p, '');
        truncateSync(p, 64 << 20);
        return p;
      };
      const instance = {
        name: 'demo1.example.com',
        uuid: '4b6e0a2c-1f0e-4c1b-9a51-0d2f7c0e8b11',
        hvparams: { disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci', kvm_path: qemu },
        beparams: { maxmem: 128, vcpus: 1 },
        disks: [
          { uuid: UUIDS.disk0, mode: 'rw', size: 64, path: img(0), uri: null },
          { uuid: UUIDS.disk1, mode: 'rw', size: 64, path: img(1), uri: null },
        ],
        nics: [{ uuid: UUIDS.nic0, mac: 'aa:00:00:bf:2f:16', nicparams: { mode: 'bridged', link: 'br0' }, backend: { type: 'user' } }],
      };
      const name = instance.name;
      const plan = await run(`instance.plan ${name}`, () => src.call<{ devices: Array<{ id: string; hvinfo: Hv }> }>('instance.plan', { instance }));
      for (const d of plan.devices) out(`      ${d.id.padEnd(24)} ${d.hvinfo.driver.padEnd(16)} ${where(d.hvinfo)}`);
      const started = await run('instance.start: runtime file written, QEMU launched', () => src.call<{ pid: number }>('instance.start', { instance }));
      out(`      QEMU pid ${started.pid}`);
      const add = await run('disk.add: a third SCSI disk, hot', () =>
        src.call<{ hvinfo: Hv }>('disk.add', { name, disk: { uuid: UUIDS.disk2, mode: 'rw', size: 64, path: img(2), uri: null } }),
      );
      out(`      ${add.hvinfo.id} -> ${where(add.hvinfo)}`);
      const nic = await run('nic.add: a second virtio NIC, hot', () =>
        src.call<{ hvinfo: Hv }>('nic.add', { name, nic: { uuid: UUIDS.nic1, mac: 'aa:00:00:bf:2f:17', backend: { type: 'user' } } }),
      );
      out(`      ${nic.hvinfo.id} -> ${where(nic.hvinfo)}`);
      await run('disk.remove: the second disk (SCSI unplug completes without a guest)', () => src.call('disk.remove', { name, uuid: UUIDS.disk1 }));
      const v1 = await run('instance.verify on node A', () => src.call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name }));
      out(`      ${v1.clean ? 'clean: the runtime file matches QEMU' : `DRIFT: ${JSON.stringify(v1.differences)}`}`);
      // Ganeti 2.10 cannot express SCSI disks: the conversion must be refused, naming them.
      const refusal = await src.call('runtime.convert', { name, to: '2.10' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!(refusal instanceof RpcCallError) || (refusal.data as { code?: string } | undefined)?.code !== 'GKD_RUNTIME_LOSSY') {
        const got = refusal === undefined ? 'it converted' : `it failed otherwise: ${(refusal as Error).message}`;
        throw new Error(`Downgrade check failed: runtime.convert to 2.10 must refuse the SCSI instance as GKD_RUNTIME_LOSSY, ${got}`);
      }
      out(`      downgrade check (runtime.convert to 2.10) refused: ${refusal.message}`);
      const { runtime } = await src.call<{ runtime: unknown }>('runtime.get', { name });
      const incoming = `unix:${join(home['node-b'], 'run', 'migration.sock')}`;
      const backends = { [UUIDS.nic0]: { type: 'user' }, [UUIDS.nic1]: { type: 'user' } };
      await run('migration.accept on node B: layout checked, QEMU waiting for the state', () => dst.call('migration.accept', { name, runtime, incoming, nicBackends: backends }));
      const mig = await run('migration.start on node A', () => src.call<{ status: string; elapsedMs?: number }>('migration.start', { name, uri: incoming }));
      out(`      ${mig.status}`);
      const v2 = await run('instance.verify on node B', () => dst.call<{ clean: boolean; differences: unknown[] }>('instance.verify', { name }));
      out(`      ${v2.clean ? 'clean: same layout on the target, hot-plugged devices included' : `DRIFT: ${JSON.stringify(v2.differences)}`}`);
      const ok = v1.clean && v2.clean && mig.status === 'completed';
      out(`${ok ? 'demo passed' : 'demo FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s${values.keep ? `; files kept in ${dir}` : ''}`);
      return ok ? 0 : 1;
    } catch (e) {
      if (interrupted !== undefined) return interrupted === 'SIGINT' ? 130 : 143;
      process.stderr.write(`kvm-devices demo: step ${step + 1} failed: ${(e as Error).message}\n`);
      return 1;
    } finally {
      await cleanup();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
