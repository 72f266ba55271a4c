/**
 * Booted-guest support for tests: locates the kernel + initramfs built by
 * test/guest/prepare.sh, gives the QEMU arguments (or the equivalent Ganeti
 * hvparams) to boot it, and talks to the guest's /init (test/guest/init.sh)
 * over its serial command channel.
 *
 * Serial layout: ttyS0 is a log file on the host and carries the console and
 * all command output; ttyS1 is a unix socket (QEMU is the server) on which the
 * host sends commands. See init.sh for the line protocol.
 */
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { StringDecoder } from 'node:string_decoder';

export type GuestFlavour = 'cloud' | 'std';

export interface GuestKit {
  flavour: GuestFlavour;
  /** `uname -r` inside the guest, e.g. 6.1.0-56-cloud-amd64. */
  kernelVersion: string;
  /** Debian package the kernel came from, and its version. */
  package: string;
  debVersion: string;
  /** Absolute paths. */
  kernel: string;
  initrd: string;
  /** Modules /init loads at boot (built-in drivers are not listed). */
  modules: string[];
  /** The kit directory (.lab/guest unless GUEST_KIT_DIR is set). */
  dir: string;
}

/**
 * Kernel command line the guest needs. console=ttyS0: boot messages and the
 * ready marker go to the log. panic=-1 plus QEMU's -no-reboot: a guest that
 * panics makes QEMU exit instead of hanging until the timeout.
 * scsi_mod.scan=sync: SCSI disks present at boot are attached before modprobe
 * returns, so "ready" means "boot-time devices visible".
 */
export const GUEST_KERNEL_ARGS = 'console=ttyS0 panic=-1 scsi_mod.scan=sync';

const MARK = '==GK==';

function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'test', 'guest'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository root above ${start}`);
    dir = up;
  }
}

/** Where prepare.sh writes the kit; GUEST_KIT_DIR overrides, as for prepare.sh. */
export function guestKitDir(): string {
  const env = process.env.GUEST_KIT_DIR;
  if (env) return path.resolve(env);
  return path.join(findRepoRoot(__dirname), '.lab', 'guest');
}

/**
 * Reads the kit description. Throws (so that a test needing a guest fails
 * rather than silently skipping) when the kit or the flavour is missing.
 */
export function guestKit(flavour: GuestFlavour = 'cloud'): GuestKit {
  const dir = guestKitDir();
  const manifest = path.join(dir, 'guest.json');
  const how =
    `Build it (as root, about 15 s; needs qemu-system-x86, qemu-utils, busybox-static) with: ` +
    (flavour === 'std' ? 'GUEST_KERNELS="cloud std" ' : '') +
    'test/guest/prepare.sh';
  let raw: string;
  try {
    raw = fs.readFileSync(manifest, 'utf8');
  } catch {
    throw new Error(`guest kit missing: ${manifest} not found. ${how}`);
  }
  const parsed = JSON.parse(raw) as { format?: number; flavours?: Record<string, Record<string, unknown>> };
  if (parsed.format !== 1) throw new Error(`${manifest}: unsupported format ${String(parsed.format)}. ${how}`);
  const f = parsed.flavours?.[flavour];
  if (!f) throw new Error(`guest kit has no "${flavour}" kernel (${manifest}). ${how}`);
  const kit: GuestKit = {
    flavour,
    kernelVersion: String(f.kernelVersion),
    package: String(f.package),
    debVersion: String(f.debVersion),
    kernel: path.join(dir, String(f.kernel)),
    initrd: path.join(dir, String(f.initrd)),
    modules: Array.isArray(f.modules) ? f.modules.map(String) : [],
    dir,
  };
  for (const p of [kit.kernel, kit.initrd]) {
    if (!fs.existsSync(p)) throw new Error(`guest kit incomplete: ${p} missing. ${how}`);
  }
  return kit;
}

export interface GuestSerialPaths {
  /** Host file receiving ttyS0 (created/truncated by QEMU). */
  serialLog: string;
  /** Host unix socket for ttyS1; QEMU listens, the console connects. */
  cmdSocket: string;
}

/** A serial port backend, in guest port order, for builders that emit their own chardev syntax. */
export type SerialChardev = { kind: 'file'; path: string } | { kind: 'unix-server'; path: string };

/** The two serial ports the guest expects: ttyS0 first, ttyS1 second. */
export function guestSerialChardevs(p: GuestSerialPaths): SerialChardev[] {
  return [
    { kind: 'file', path: p.serialLog },
    { kind: 'unix-server', path: p.cmdSocket },
  ];
}

/** The `-serial` value for one chardev. */
export function serialArg(c: SerialChardev): string {
  if (c.kind === 'file') {
    // QEMU takes everything after "file:" verbatim as the path.
    return `file:${c.path}`;
  }
  // "unix:" is parsed as an option list: a comma in the path is doubled.
  return `unix:${c.path.replace(/,/g, ',,')},server=on,wait=off`;
}

export function guestSerialArgs(p: GuestSerialPaths): string[] {
  return guestSerialChardevs(p).flatMap((c) => ['-serial', serialArg(c)]);
}

/** The kernel command line, with extra arguments appended. */
export function guestAppend(extra?: string): string {
  return extra && extra.trim() ? `${GUEST_KERNEL_ARGS} ${extra.trim()}` : GUEST_KERNEL_ARGS;
}

/**
 * The same boot as Ganeti KVM hvparams, for tests that boot through the
 * product's command line builder. The serial ports still have to be added
 * (guestSerialChardevs) and -no-reboot is advisable.
 */
export function guestHvparams(
  kit: GuestKit,
  extraKernelArgs?: string,
): { kernel_path: string; initrd_path: string; kernel_args: string } {
  return { kernel_path: kit.kernel, initrd_path: kit.initrd, kernel_args: guestAppend(extraKernelArgs) };
}

/**
 * QEMU arguments that boot the guest kit: kernel, initrd, command line,
 * -no-reboot and both serial ports. Machine, accel and devices are the
 * caller's.
 */
export function guestArgs(kit: GuestKit, opts: GuestSerialPaths & { append?: string }): string[] {
  return [
    '-kernel', kit.kernel,
    '-initrd', kit.initrd,
    '-append', guestAppend(opts.append),
    '-no-reboot',
    ...guestSerialArgs(opts),
  ];
}

export interface CommandResult {
  /** Exit status of the command in the guest. */
  rc: number;
  /** stdout and stderr, interleaved, "\n" line ends; ends with "\n" unless empty. */
  out: string;
}

export interface GuestReady {
  kernel: string;
  /** Guest uptime in seconds when /init was ready. */
  uptime: number;
  /** Host wall time from GuestConsole creation to the ready marker, in ms. */
  elapsedMs: number;
}

export interface PciDevice {
  /** e.g. 0000:00:04.0 */
  address: string;
  /** e.g. 0x1af4 */
  vendor: string;
  device: string;
  /** e.g. 0x010000 */
  class: string;
  /** Bound driver name, '' when none. */
  driver: string;
}

export interface NetDevice {
  name: string;
  mac: string;
}

export interface ScsiDisk {
  /** host:channel:target:lun */
  hctl: string;
  /** sdX, '' while the block device is not there yet. */
  block: string;
}

export interface GuestState {
  block: string[];
  pci: PciDevice[];
  net: NetDevice[];
  scsi: ScsiDisk[];
}

// One shell fragment per kind of state; each prints "<kind> <fields…>" lines.
const STATE_SCRIPTS = {
  block: `for d in /sys/block/*; do n=\${d##*/}; case $n in loop*|ram*|'*') ;; *) echo "block $n";; esac; done`,
  pci:
    `for d in /sys/bus/pci/devices/*; do [ -e "$d" ] || continue; drv=; ` +
    `[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")"); ` +
    `echo "pci \${d##*/} $(cat "$d/vendor") $(cat "$d/device") $(cat "$d/class") $drv"; done`,
  net: `for d in /sys/class/net/*; do n=\${d##*/}; [ "$n" = lo ] || [ ! -e "$d" ] || echo "net $n $(cat "$d/address")"; done`,
  scsi: `for d in /sys/class/scsi_disk/*; do [ -e "$d" ] || continue; echo "scsi \${d##*/} $(ls "$d/device/block" 2>/dev/null)"; done`,
};

function parseState(out: string): GuestState {
  const s: GuestState = { block: [], pci: [], net: [], scsi: [] };
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    switch (f[0]) {
      case 'block':
        s.block.push(f[1]);
        break;
      case 'pci':
        s.pci.push({ address: f[1], vendor: f[2], device: f[3], class: f[4], driver: f[5] ?? '' });
        break;
      case 'net':
        s.net.push({ name: f[1], mac: f[2] });
        break;
      case 'scsi':
        s.scsi.push({ hctl: f[1], block: f[2] ?? '' });
        break;
    }
  }
  return s;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Host side of the guest's serial console. Create it right after spawning
 * QEMU (pass the process so that an early QEMU exit fails the wait at once
 * with its stderr), then waitReady(), then run commands. Commands run one at
 * a time, in call order.
 */
export class GuestConsole {
  readonly serialLog: string;
  readonly cmdSocket: string;
  private readonly proc?: ChildProcess;
  private readonly created = Date.now();
  private text_ = '';
  private bytesRead = 0;
  private decoder = new StringDecoder('utf8');
  private watcher?: fs.FSWatcher;
  private wakers = new Set<() => void>();
  private stderr = '';
  private exited?: string;
  private sock?: net.Socket;
  private sockError?: Error;
  private seq = 0;
  private ready?: GuestReady;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  /**
   * `ready` continues a guest that is already up (its ready marker went to
   * an earlier log, e.g. on the QEMU it was migrated from).
   */
  constructor(opts: GuestSerialPaths & { proc?: ChildProcess; ready?: GuestReady }) {
    this.serialLog = opts.serialLog;
    this.cmdSocket = opts.cmdSocket;
    this.proc = opts.proc;
    this.ready = opts.ready;
    if (this.proc) {
      this.proc.stderr?.on('data', (d: Buffer) => {
        this.stderr += d.toString();
      });
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        this.exited = signal ? `signal ${signal}` : `code ${code}`;
        this.wake();
      };
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) onExit(this.proc.exitCode, this.proc.signalCode);
      else this.proc.once('exit', onExit);
    }
  }

  /** Everything the guest printed on ttyS0 so far ("\r\n" kept). */
  text(): string {
    this.refresh();
    return this.text_;
  }

  /** What waitReady() saw, once it has. */
  readiness(): GuestReady | undefined {
    return this.ready;
  }

  /** Waits for /init's ready marker; resolves at once when already seen. */
  async waitReady(timeoutMs = 30_000): Promise<GuestReady> {
    if (this.ready) return this.ready;
    const re = new RegExp(`(?:^|\\n)${MARK} READY kernel=(\\S+) uptime=([\\d.]+) channel=(\\S+)\\r?\\n`);
    const m = await this.waitUntil(() => re.exec(this.text_) ?? undefined, timeoutMs, 'the guest to become ready');
    if (m[3] !== 'ttyS1') {
      throw new Error(`guest has no command channel (ttyS1 missing: was the second -serial given?)`);
    }
    this.ready = { kernel: m[1], uptime: Number(m[2]), elapsedMs: Date.now() - this.created };
    return this.ready;
  }

  /**
   * Runs a sh script in the guest (a fresh busybox sh, stdin /dev/null) and
   * returns its exit status and output. Waits for readiness first, with the
   * same timeout budget.
   */
  run(cmd: string, timeoutMs = 10_000): Promise<CommandResult> {
    const p = this.queue.then(() => this.runNow(cmd, timeoutMs));
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Like run(), but throws unless the command exits 0; returns its output. */
  async check(cmd: string, timeoutMs = 10_000): Promise<string> {
    const r = await this.run(cmd, timeoutMs);
    if (r.rc !== 0) throw new Error(`guest command failed (rc=${r.rc}): ${cmd}\n${r.out}`);
    return r.out;
  }

  async blockDevices(): Promise<string[]> {
    return (await this.stateOf(['block'])).block;
  }

  async pciDevices(): Promise<PciDevice[]> {
    return (await this.stateOf(['pci'])).pci;
  }

  async netDevices(): Promise<NetDevice[]> {
    return (await this.stateOf(['net'])).net;
  }

  async scsiDisks(): Promise<ScsiDisk[]> {
    return (await this.stateOf(['scsi'])).scsi;
  }

  /** Block, PCI, network and SCSI devices in one round trip. */
  state(): Promise<GuestState> {
    return this.stateOf(['block', 'pci', 'net', 'scsi']);
  }

  /**
   * Asks every SCSI host to scan all channels/targets/LUNs: needed for HBAs
   * that do not report hot-added disks (lsi53c895a, megasas). virtio-scsi
   * reports them by itself.
   */
  async scsiRescan(timeoutMs = 20_000): Promise<void> {
    await this.check(`for s in /sys/class/scsi_host/host*/scan; do [ -e "$s" ] && echo '- - -' > "$s"; done; true`, timeoutMs);
  }

  /** Kernel log (muted on the console after boot, see init.sh). */
  async dmesg(): Promise<string> {
    return this.check('dmesg');
  }

  /**
   * Polls the guest's device state until pred accepts it, e.g. after a
   * hotplug: `await con.waitFor((s) => s.block.includes('vdb'), 10_000)`.
   * Returns the accepted state; on timeout the error shows the last one.
   */
  async waitFor(pred: (s: GuestState) => boolean, timeoutMs = 10_000, what = 'the guest state to match'): Promise<GuestState> {
    const deadline = Date.now() + timeoutMs;
    let last: GuestState | undefined;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      last = await this.state();
      if (pred(last)) return last;
      // Each round trip already takes tens of ms under TCG: a short pause is
      // enough to not keep the guest busy.
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, deadline - Date.now()))));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last guest state: ${JSON.stringify(last)}`);
  }

  /** Disconnects from the command socket and stops watching the log. */
  close(): void {
    this.closed = true;
    this.sock?.destroy();
    this.sock = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    this.wake();
  }

  private async stateOf(kinds: (keyof typeof STATE_SCRIPTS)[]): Promise<GuestState> {
    const r = await this.run(kinds.map((k) => STATE_SCRIPTS[k]).join('\n'));
    if (r.rc !== 0) throw new Error(`guest state query failed (rc=${r.rc}):\n${r.out}`);
    return parseState(r.out);
  }

  private async runNow(cmd: string, timeoutMs: number): Promise<CommandResult> {
    const deadline = Date.now() + timeoutMs;
    await this.waitReady(timeoutMs);
    const sock = await this.connect(Math.max(1, deadline - Date.now()));
    const seq = ++this.seq;
    this.refresh();
    const from = this.text_.length;
    sock.write(`${seq} ${Buffer.from(cmd, 'utf8').toString('base64')}\n`);
    const begin = `${MARK} BEGIN ${seq}`;
    const endRe = new RegExp(`(?:^|\\n)${escapeRe(MARK)} END ${seq} rc=(\\d+)\\r?\\n`, 'g');
    const end = await this.waitUntil(
      () => {
        endRe.lastIndex = from;
        return endRe.exec(this.text_) ?? undefined;
      },
      Math.max(1, deadline - Date.now()),
      `the guest to finish: ${cmd.length > 80 ? cmd.slice(0, 77) + '...' : cmd}`,
    );
    const b = this.text_.lastIndexOf(begin, end.index);
    let out = '';
    if (b >= from) {
      const start = this.text_.indexOf('\n', b) + 1;
      out = this.text_.slice(start, end.index + (end[0].startsWith('\n') ? 1 : 0));
    }
    return { rc: Number(end[1]), out: out.replace(/\r\n/g, '\n') };
  }

  private async connect(timeoutMs: number): Promise<net.Socket> {
    if (this.sock && !this.sock.destroyed) return this.sock;
    if (this.closed) throw new Error('GuestConsole is closed');
    this.sockError = undefined;
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(this.cmdSocket);
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`timed out connecting to the guest command socket ${this.cmdSocket}`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(new Error(`cannot connect to the guest command socket ${this.cmdSocket}: ${e.message}`));
      });
    });
    // The guest never writes on ttyS1 (echo is off); drain anyway so that a
    // stray byte cannot stall QEMU's side of the socket.
    sock.resume();
    sock.on('error', (e) => {
      this.sockError = e;
      this.wake();
    });
    sock.on('close', () => {
      if (this.sock === sock) this.sock = undefined;
    });
    this.sock = sock;
    return sock;
  }

  /** Appends whatever QEMU wrote to the log since the last call. */
  private refresh(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.serialLog, 'r');
    } catch {
      return; // QEMU has not created it yet
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < this.bytesRead) {
        // Truncated: QEMU reopened it. Start over.
        this.bytesRead = 0;
        this.text_ = '';
        this.decoder = new StringDecoder('utf8');
      }
      if (size > this.bytesRead) {
        const buf = Buffer.alloc(size - this.bytesRead);
        const n = fs.readSync(fd, buf, 0, buf.length, this.bytesRead);
        this.bytesRead += n;
        this.text_ += this.decoder.write(buf.subarray(0, n));
      }
    } finally {
      fs.closeSync(fd);
    }
    if (!this.watcher && !this.closed) {
      try {
        this.watcher = fs.watch(this.serialLog, () => this.wake());
        this.watcher.on('error', () => {
          this.watcher?.close();
          this.watcher = undefined;
        });
      } catch {
        // Polling below still works.
      }
    }
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /**
   * Re-evaluates check whenever the log changes (inotify) and at least every
   * 50 ms (in case an event is missed), until it returns a value.
   */
  private async waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.refresh();
      const v = check();
      if (v !== undefined) return v;
      if (this.closed) throw new Error(`GuestConsole closed while waiting for ${what}`);
      if (this.exited) throw new Error(`QEMU exited (${this.exited}) while waiting for ${what}${this.diagnostics()}`);
      if (this.sockError) throw new Error(`guest command socket failed (${this.sockError.message}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${this.diagnostics()}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          this.wakers.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.min(50, left));
        this.wakers.add(done);
      });
    }
  }

  private diagnostics(): string {
    const tail = this.text_.slice(-3000).replace(/\r\n/g, '\n');
    const err = this.stderr.trim();
    return `\n--- QEMU stderr ---\n${err || '(empty or not captured)'}\n--- serial log tail (${this.serialLog}) ---\n${tail}`;
  }
}

/**
 * Ends a QEMU process: QMP "quit" when a QMP socket is given, SIGTERM
 * otherwise (QEMU exits cleanly on it), SIGKILL if it is still alive after
 * timeoutMs. Resolves with how it ended.
 */
export async function stopQemu(
  proc: ChildProcess,
  opts: { qmpSocket?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve({ code: proc.exitCode, signal: proc.signalCode });
    else proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let asked = false;
  if (opts.qmpSocket) asked = await qmpQuit(opts.qmpSocket, Math.min(timeoutMs, 2_000)).then(() => true, () => false);
  if (!asked && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      proc.kill('SIGKILL');
      resolve();
    }, timeoutMs);
  });
  const first = await Promise.race([exited, killed.then(() => exited)]);
  clearTimeout(timer);
  return first;
}

/** Minimal QMP exchange: greeting, qmp_capabilities, quit. */
function qmpQuit(sockPath: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sockPath);
    let buf = '';
    let step = 0;
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('QMP quit timed out'));
    }, timeoutMs);
    const finish = (e?: Error): void => {
      clearTimeout(t);
      s.destroy();
      if (e) reject(e);
      else resolve();
    };
    s.on('error', (e) => finish(e));
    // QEMU closing the socket after "quit" also counts as success.
    s.on('close', () => finish(step >= 2 ? undefined : new Error('QMP closed early')));
    s.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (step === 0 && msg.QMP) {
          step = 1;
          s.write('{"execute":"qmp_capabilities"}\n');
        } else if (step === 1 && 'return' in msg) {
          step = 2;
          s.write('{"execute":"quit"}\n');
        } else if (step === 2 && 'return' in msg) {
          finish();
        } else if ('error' in msg) {
          finish(new Error(`QMP error: ${JSON.stringify(msg.error)}`));
        }
      }
    });
  });
}
