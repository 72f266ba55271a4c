/**
 * Start QEMU and hand back a connected QMP client, or QEMU's own reason for
 * refusing to start.
 *
 * Edge module: it spawns a process and touches the file system. QEMU 7.2
 * checks its whole command line before it serves QMP; a bad option makes it
 * print `qemu-system-x86_64: <option>: <reason>` on stderr and exit 1 within
 * about 50 ms, while a good one has QMP answering 0.03–0.1 s after exec.
 * So the launcher polls the socket with a short backoff while QEMU starts,
 * and stops the moment the process exits.
 */

import { spawn } from 'node:child_process';
import { GkdError } from '../errors';
import { QmpClient, type QmpConnectOptions } from '../qmp';

/** Options for {@link launchQemu}. */
export interface LaunchQemuOptions {
  /**
   * Path of the QMP Unix socket. If no argument of `argv` mentions this
   * path, `-qmp unix:<path>,server=on,wait=off` is appended.
   */
  qmpSocket: string;
  /** Budget from spawn until QMP is connected, ms. @default 10000 */
  timeoutMs?: number;
  /** Extra environment variables, merged over this process's environment. */
  env?: Record<string, string | undefined>;
  /** Options for the QMP client (command timeout, message limit). */
  qmp?: Omit<QmpConnectOptions, 'connectTimeoutMs'>;
  /** How long {@link QemuProcess.stop} waits for QEMU to exit after `quit`, ms. @default 3000 */
  stopTimeoutMs?: number;
}

/** How a QEMU process ended. */
export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running QEMU with its QMP connection. */
export interface QemuProcess {
  readonly pid: number;
  /** Connected client (greeting read, capabilities negotiated). */
  readonly qmp: QmpClient;
  /** The full argv QEMU was started with, binary first. */
  readonly argv: readonly string[];
  /** QEMU's stderr so far (the last 64 KiB). */
  stderr(): string;
  /** QEMU's stdout so far (the last 64 KiB); empty unless e.g. `-serial stdio`. */
  stdout(): string;
  /** Settles when the process has exited and its output pipes are closed. */
  readonly exited: Promise<QemuExit>;
  /** `quit` over QMP, then SIGKILL by PID if QEMU is still there after `stopTimeoutMs`. Idempotent. */
  stop(): Promise<void>;
}

/** Defaults of {@link launchQemu}. */
export const LAUNCH_DEFAULTS = {
  timeoutMs: 10_000,
  stopTimeoutMs: 3_000,
  /** First and largest pause between connect attempts while QEMU starts, ms. */
  backoffMs: [5, 100],
  outputLimit: 64 * 1024,
} as const;

/**
 * Spawn QEMU (`argv[0]` is the binary) and wait until its QMP socket answers.
 * @throws GkdError `GKD_LAUNCH_FAILED` if the binary cannot be run, QEMU exits
 *   first (its stderr in the message and in `data.stderr`), QMP breaks the
 *   protocol, or QMP does not answer within `timeoutMs` (QEMU is then killed)
 */
export async function launchQemu(argv: readonly string[], options: LaunchQemuOptions): Promise<QemuProcess> {
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) {
    throw new TypeError('argv must be a non-empty array of strings, binary first');
  }
  if (typeof options?.qmpSocket !== 'string' || options.qmpSocket === '') throw new TypeError('options.qmpSocket must be a path');
  const timeoutMs = options.timeoutMs ?? LAUNCH_DEFAULTS.timeoutMs;
  const stopTimeoutMs = options.stopTimeoutMs ?? LAUNCH_DEFAULTS.stopTimeoutMs;
  const fullArgv = withQmpSocket(argv, options.qmpSocket);
  const [binary, ...args] = fullArgv as [string, ...string[]];

  const child = spawn(binary, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const stderr = captureTail(child.stderr);
  const stdout = captureTail(child.stdout);
  let exit: QemuExit | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<QemuExit>((resolve) => {
    const done = (e: QemuExit): void => {
      exit ??= e;
      resolve(exit);
    };
    child.once('close', (code, signal) => done({ code, signal }));
    // A binary that cannot be executed gives 'error' and no pid; 'close' may not follow.
    child.once('error', (err) => {
      spawnError = err;
      if (child.pid === undefined) done({ code: null, signal: null });
    });
  });

  const failed = (why: string, cause?: unknown): GkdError => {
    const text = stderr().trim();
    const message = text === '' ? `Cannot start QEMU "${binary}": ${why}` : `Cannot start QEMU "${binary}": ${oneLine(text)}`;
    return new GkdError('GKD_LAUNCH_FAILED', message, {
      data: { stderr: stderr(), exitCode: exit?.code ?? null, signal: exit?.signal ?? null, argv: fullArgv, reason: why },
      cause: cause ?? spawnError,
    });
  };

  const deadline = Date.now() + timeoutMs;
  let pause: number = LAUNCH_DEFAULTS.backoffMs[0];
  let lastError: unknown;
  let qmp: QmpClient | undefined;
  while (qmp === undefined) {
    if (exit !== undefined) {
      await exited; // 'close' comes after the pipes drained: stderr is complete
      throw failed(spawnError !== undefined ? spawnError.message : `it exited with ${describeExit(exit)} before QMP answered`);
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      child.kill('SIGKILL');
      await exited;
      throw failed(`QMP on "${options.qmpSocket}" did not answer within ${timeoutMs} ms`, lastError);
    }
    try {
      qmp = await QmpClient.connect(options.qmpSocket, { ...options.qmp, connectTimeoutMs: remaining });
    } catch (err) {
      lastError = err;
      if ((err as GkdError).code === 'GKD_QMP_PROTOCOL') {
        child.kill('SIGKILL');
        await exited;
        throw failed((err as Error).message, err);
      }
      // Not there yet (ENOENT, ECONNREFUSED) or QEMU is dying (EOF): wait a little, or for the exit.
      await Promise.race([delay(Math.min(pause, Math.max(1, deadline - Date.now()))), exited]);
      pause = Math.min(pause * 2, LAUNCH_DEFAULTS.backoffMs[1]);
    }
  }

  const client = qmp;
  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    if (exit === undefined) {
      // QEMU answers `quit` and exits with rc 0 a few ms later (7.2: about 4 ms).
      await client.execute('quit', undefined, { timeoutMs: stopTimeoutMs }).catch(() => undefined);
      const gone = await Promise.race([exited.then(() => true), delay(stopTimeoutMs).then(() => false)]);
      if (!gone) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await client.close();
  };
  return {
    pid: child.pid as number,
    qmp: client,
    argv: fullArgv,
    stderr,
    stdout,
    exited,
    stop: () => (stopping ??= stop()),
  };
}

/** Append a `-qmp` option for `socketPath` unless the command line already mentions it. */
function withQmpSocket(argv: readonly string[], socketPath: string): string[] {
  // QEMU option values escape a comma by doubling it.
  const escaped = socketPath.replace(/,/g, ',,');
  if (argv.slice(1).some((a) => a.includes(socketPath) || a.includes(escaped))) return [...argv];
  return [...argv, '-qmp', `unix:${escaped},server=on,wait=off`];
}

/** Keep the last `outputLimit` characters of a stream; returns a reader. */
function captureTail(stream: NodeJS.ReadableStream | null): () => string {
  let text = '';
  if (stream !== null) {
    stream.setEncoding('utf8'); // decodes multi-byte characters split across chunks
    stream.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > LAUNCH_DEFAULTS.outputLimit) text = text.slice(-LAUNCH_DEFAULTS.outputLimit);
    });
  }
  return () => text;
}

function describeExit(e: QemuExit): string {
  return e.signal !== null ? `signal ${e.signal}` : `code ${String(e.code)}`;
}

/** Multi-line stderr as one message line. */
function oneLine(text: string): string {
  const joined = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '').join(' / ');
  return joined.length > 500 ? `${joined.slice(0, 500)}…` : joined;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
