/**
 * Real QEMU for tests: start VMs through the product's launcher, each in a
 * fresh temp dir, and make sure every one of them is gone afterwards, also
 * when a test fails or times out.
 *
 * Paused VMs (`-S`) are cheap on this kind of box: about 36 MiB RSS, no CPU,
 * QMP answering 0.03–0.1 s after exec. Use them for command-line and QMP-only
 * checks; boot a guest (test/helpers/guest.ts) only when the guest must act.
 *
 * @example
 * import { startPausedQemu, useQemuCleanup } from '../../helpers/qemu';
 *
 * describe('query-pci', () => {
 *   useQemuCleanup(); // VMs started in a test or beforeEach die in afterEach,
 *                     // VMs started in before() die in after()
 *
 *   it('lists the host bridge', async () => {
 *     const vm = await startPausedQemu({ extraArgs: ['-device', 'virtio-scsi-pci,id=scsi,addr=0x5'] });
 *     const pci = await vm.qmp.execute<PciBus[]>('query-pci');
 *     // vm.dir is the VM's own temp dir (put images there); vm.stop() is optional
 *   });
 *
 *   it('accepts the planner output', async () => {
 *     const vm = await startQemu((dir) => [QEMU_BINARY, ...buildArgs(plan, { runDir: dir })]);
 *   });
 * });
 *
 * Rules the helpers enforce:
 * - KVM is never used (nested KVM is broken on the CI machines): `-accel tcg`
 *   is added when argv names no accelerator; argv asking for KVM is refused.
 * - A `-qmp unix:<dir>/qmp.sock,server=on,wait=off` is appended unless argv
 *   already mentions `options.qmpSocket` (pass that when the argv has its own).
 * - Anything still alive when the process exits gets SIGKILL (mocha runs with
 *   `exit: true`), so no QEMU outlives the test run.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchQemu, type QemuProcess } from '../../plugin/process';

/** QEMU binary for tests; the `QEMU_BINARY` environment variable overrides it. */
export const QEMU_BINARY = process.env.QEMU_BINARY ?? 'qemu-system-x86_64';

/** Options shared by {@link startQemu} and {@link startPausedQemu}. */
export interface StartQemuOptions {
  /** QMP socket path if `argv` already has a `-qmp` for it. @default `<dir>/qmp.sock` */
  qmpSocket?: string;
  /** Budget until QMP is connected, ms. @default 10000 */
  timeoutMs?: number;
  /** Default QMP command timeout, ms. @default 10000 */
  commandTimeoutMs?: number;
}

/** Options of {@link startPausedQemu}. */
export interface StartPausedQemuOptions extends Omit<StartQemuOptions, 'qmpSocket'> {
  /** Appended after the base command line (`-device …`, `-blockdev …`). */
  extraArgs?: string[];
  /** `-machine` value, e.g. `q35` or `pc-i440fx-7.1`. @default 'pc' */
  machine?: string;
  /** Guest RAM in MiB; costs nothing while paused. @default 128 */
  memoryMiB?: number;
}

/** A VM started by these helpers. */
export interface TestQemu extends QemuProcess {
  /** The VM's own temp dir, removed when the VM is stopped. */
  readonly dir: string;
  /** Path of the QMP socket the client is connected to. */
  readonly qmpSocket: string;
  /** Kill the process with a signal (default SIGKILL) without waiting, e.g. to test a dying QEMU. */
  kill(signal?: NodeJS.Signals): void;
}

interface Entry {
  vm: TestQemu;
  seq: number;
}

const live = new Set<Entry>();
let seq = 0;

/**
 * Start `argv` (binary first) with a fresh temp dir. `argv` may be a function
 * of that dir, to place sockets, images or logs inside it.
 * @throws GkdError `GKD_LAUNCH_FAILED` with QEMU's stderr if QEMU refuses the command line
 */
export async function startQemu(argv: readonly string[] | ((dir: string) => readonly string[]), options: StartQemuOptions = {}): Promise<TestQemu> {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-qemu-'));
  try {
    const args = forceTcg(typeof argv === 'function' ? argv(dir) : argv);
    const qmpSocket = options.qmpSocket ?? join(dir, 'qmp.sock');
    const proc = await launchQemu(args, {
      qmpSocket,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.commandTimeoutMs === undefined ? {} : { qmp: { timeoutMs: options.commandTimeoutMs } }),
    });
    const entry: Entry = { vm: undefined as unknown as TestQemu, seq: ++seq };
    let stopping: Promise<void> | undefined;
    const vm: TestQemu = {
      ...proc,
      dir,
      qmpSocket,
      kill: (signal = 'SIGKILL') => {
        try {
          process.kill(proc.pid, signal);
        } catch {
          // already gone
        }
      },
      stop: () =>
        (stopping ??= proc.stop().finally(() => {
          live.delete(entry);
          rmSync(dir, { recursive: true, force: true });
        })),
    };
    entry.vm = vm;
    live.add(entry);
    return vm;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Start a paused VM: `-machine <machine> -accel tcg -nodefaults -display none
 * -S -m <memoryMiB>` plus `extraArgs`. Free PCI slots on `pc` are 02–1f.
 */
export function startPausedQemu(options: StartPausedQemuOptions = {}): Promise<TestQemu> {
  const { extraArgs = [], machine = 'pc', memoryMiB = 128, ...rest } = options;
  const argv = [QEMU_BINARY, '-machine', machine, '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S', '-m', String(memoryMiB), ...extraArgs];
  return startQemu(argv, rest);
}

/** Stop every VM these helpers started that is still registered (quit, then SIGKILL). */
export async function stopAllQemu(): Promise<void> {
  await stopWhere(() => true);
}

/**
 * Register mocha hooks in the calling `describe`: VMs started during a test
 * (or this suite's later `beforeEach`) are stopped in `afterEach`; VMs started
 * in this suite's `before` are stopped in `after`. Call it first in the
 * `describe` body so its hooks run before yours.
 */
export function useQemuCleanup(): void {
  let suiteMark = 0;
  let testMark = 0;
  before(() => {
    suiteMark = seq;
  });
  beforeEach(() => {
    testMark = seq;
  });
  afterEach(async () => {
    const mark = testMark;
    await stopWhere((e) => e.seq > mark);
  });
  after(async () => {
    const mark = suiteMark;
    await stopWhere((e) => e.seq > mark);
  });
}

/** Number of helper-started VMs still registered; a test can assert it is 0. */
export function liveQemuCount(): number {
  return live.size;
}

async function stopWhere(pred: (e: Entry) => boolean): Promise<void> {
  const doomed = [...live].filter(pred);
  await Promise.all(doomed.map((e) => e.vm.stop().catch(() => e.vm.kill())));
}

/** Add `-accel tcg` when no accelerator is named; refuse KVM. */
function forceTcg(argv: readonly string[]): string[] {
  const out = [...argv];
  const valuesOf = (opt: string): string[] => out.flatMap((a, i) => (i > 0 && out[i - 1] === opt ? [a] : []));
  const accels = [...valuesOf('-accel').map((v) => v.split(',')[0]), ...valuesOf('-machine').flatMap((v) => v.match(/(?:^|,)accel=([^,]+)/)?.slice(1) ?? [])];
  if (out.includes('-enable-kvm') || accels.some((a) => a?.includes('kvm'))) {
    throw new Error('Cannot start QEMU with KVM in tests: nested KVM is broken on this machine, use -accel tcg');
  }
  if (accels.length === 0) out.splice(1, 0, '-accel', 'tcg');
  return out;
}

// mocha runs with `exit: true`: kill synchronously whatever is left, so no QEMU outlives the run.
process.on('exit', () => {
  for (const e of live) {
    try {
      process.kill(e.vm.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(e.vm.dir, { recursive: true, force: true });
  }
});
