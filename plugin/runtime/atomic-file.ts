/**
 * Careful file reading and atomic replacement for runtime files.
 *
 * Reading refuses symlinks (opened with O_NOFOLLOW, so there is no window
 * between the check and the open), anything but a regular file, and files
 * over a size cap, before reading a byte. Writing goes to a temp file in the
 * same directory, which is fsynced, given the old file's owner and mode, and
 * renamed over the target; then the directory is fsynced so the rename
 * itself survives a crash. A reader therefore sees the old file or the new
 * one, never a mix, and a crash leaves at most a stale hidden temp file.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, fsync, lstatSync, openSync, readSync, renameSync, statfsSync, writeFileSync, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { GkdError } from '../errors';
import { processExists } from '../process-exists';

/** Identity of a file version: a writer can check nobody replaced the file since it was read. */
export interface FileStamp {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

/** Options of {@link readTextFile}. */
export interface ReadTextOptions {
  /** Refuse files larger than this many bytes. */
  maxBytes: number;
  /** Follow a symlink at `path` (for a file named on the command line) instead of refusing it. @default false */
  followSymlinks?: boolean;
}

/** Options of {@link replaceFileAtomically}. */
export interface ReplaceOptions {
  /** Mode of a new file (an existing file keeps its own mode and owner). */
  mode: number;
  /** Refuse unless the current file is exactly this version; `null`: refuse if a file exists. */
  expect?: FileStamp | null;
  /**
   * false: no fsync of the content ({@link stageFile} only). For a file that
   * only guards a process's own state (a journal entry about a QEMU): a
   * power cut that could lose the content ends that QEMU too, and the next
   * process reads the renamed file from the page cache. A reader must then
   * take an empty file for what a power cut left. @default true
   */
  sync?: boolean;
}

function stampOf(st: Stats): FileStamp {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
}

/** True when two stamps name the same version of a file (undefined: no file). */
export function sameStamp(a: FileStamp | undefined, b: FileStamp | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** The stamp of the file at `path` now (not following a symlink), or undefined when nothing is there. */
export async function currentStamp(path: string): Promise<FileStamp | undefined> {
  const st = await lstat(path).catch(() => undefined);
  return st === undefined ? undefined : stampOf(st);
}

function ioError(path: string, what: string, e?: unknown): GkdError {
  return new GkdError('GKD_RUNTIME_IO', `Cannot ${what} "${path}"${e === undefined ? '' : `: ${(e as Error).message}`}`, {
    field: 'path',
    data: { path },
    cause: e,
  });
}

function formatBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : `${n} bytes`;
}

async function symlinkError(path: string, verb: string): Promise<GkdError> {
  const target = await readlink(path).catch(() => '?');
  return new GkdError('GKD_RUNTIME_IO', `Cannot ${verb} "${path}": it is a symlink to "${target}", runtime files must be regular files`, {
    field: 'path',
    data: { path, target },
  });
}

/**
 * Reads a whole text file with the checks above.
 *
 * @throws GkdError `GKD_RUNTIME_NOT_FOUND` when absent; `GKD_RUNTIME_IO` for a
 *   symlink, a non-regular file, a file over `maxBytes`, invalid UTF-8 or an I/O error.
 */
export async function readTextFile(path: string, options: ReadTextOptions): Promise<{ text: string; stamp: FileStamp }> {
  return readSmallFileSync(path, options) ?? readTextFileAsync(path, options);
}

/** Files up to this size are read with synchronous calls (see {@link readSmallFileSync}). */
const SMALL_FILE = 64 * 1024;

/**
 * A regular file of at most {@link SMALL_FILE} bytes read with synchronous
 * calls (runtime files and journals are a few KiB in a local directory:
 * each call takes microseconds, while an asynchronous one waits for a
 * thread-pool round trip, most of the read's cost on a busy host);
 * undefined for anything else, which {@link readTextFileAsync} reads and
 * reports on with the same checks.
 */
function readSmallFileSync(path: string, options: ReadTextOptions): { text: string; stamp: FileStamp } | undefined {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followSymlinks === true ? 0 : constants.O_NOFOLLOW);
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > Math.min(SMALL_FILE, options.maxBytes)) return undefined;
    const buf = Buffer.alloc(st.size + 1);
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
      // Grew after fstat: the careful path decides.
      if (got === buf.length) return undefined;
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, got));
    } catch {
      return undefined;
    }
    return { text, stamp: stampOf(st) };
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

async function readTextFileAsync(path: string, options: ReadTextOptions): Promise<{ text: string; stamp: FileStamp }> {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followSymlinks === true ? 0 : constants.O_NOFOLLOW);
  let fh;
  try {
    fh = await open(path, flags);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new GkdError('GKD_RUNTIME_NOT_FOUND', `Cannot read "${path}": no such file`, { field: 'path', data: { path }, cause: e });
    }
    if (code === 'ELOOP') throw await symlinkError(path, 'read');
    throw ioError(path, 'read', e);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new GkdError('GKD_RUNTIME_IO', `Cannot read "${path}": it is not a regular file`, { field: 'path', data: { path } });
    const tooBig = (size: number): GkdError =>
      new GkdError('GKD_RUNTIME_IO', `Cannot read "${path}": it is ${size} bytes, over the ${formatBytes(options.maxBytes)} limit`, {
        field: 'path',
        data: { path, size, maxBytes: options.maxBytes },
      });
    if (st.size > options.maxBytes) throw tooBig(st.size);
    // Read at most one byte past the cap: the file may grow after fstat.
    const buf = Buffer.alloc(Math.min(st.size, options.maxBytes) + 1);
    let got = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === buf.length) break;
    }
    if (got > options.maxBytes) throw tooBig(got);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, got));
    } catch (e) {
      throw ioError(path, 'decode', e);
    }
    return { text, stamp: stampOf(st) };
  } catch (e) {
    if (e instanceof GkdError) throw e;
    throw ioError(path, 'read', e);
  } finally {
    await fh.close();
  }
}

/**
 * fsync of directory `dir` with one thread-pool round trip (the sync
 * itself, which may wait for the disk); opening and closing the directory
 * take microseconds and are done on the spot. Nothing on tmpfs (see {@link inMemory}).
 */
async function syncDir(dir: string): Promise<void> {
  if (inMemory(dir)) return;
  await fsyncAndClose(openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY));
}

/** statfs f_type of the memory filesystems, where fsync has nothing to write. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/**
 * True when `dir` is on tmpfs or ramfs (a Debian node's /run, where Ganeti
 * keeps its runtime files). There is no device behind them: data is as
 * durable as it will ever be once written, fsync has nothing to do, and it is
 * skipped (a thread-pool round trip, two thread wake-ups, on every hot-add
 * otherwise). Asked each time, not cached: one statfs costs less than the
 * round trip, and a mount made meanwhile can never have its fsync skipped.
 */
function inMemory(dir: string): boolean {
  try {
    const { type } = statfsSync(dir);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
  } catch {
    return false;
  }
}

/** fsync of `fd` in the thread pool, as it may wait for the device, then its close. */
function fsyncAndClose(fd: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    fsync(fd, (err) => {
      closeQuietly(fd);
      if (err === null) resolve();
      else reject(err);
    });
  });
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // what was written or synced is what counts
  }
}

/**
 * The current file at `path`, or undefined; refuses symlinks and non-files.
 * One synchronous lstat: a single metadata call, cheaper than a thread-pool round trip.
 */
async function currentFile(path: string): Promise<Stats | undefined> {
  let st: Stats | undefined;
  try {
    // No file is an answer, not an error (a new journal entry, a new runtime file): no exception built for it.
    st = lstatSync(path, { throwIfNoEntry: false });
  } catch (e) {
    throw ioError(path, 'inspect', e);
  }
  return st === undefined ? undefined : checkedFile(path, st);
}

async function checkedFile(path: string, st: Stats): Promise<Stats> {
  if (st.isSymbolicLink()) throw await symlinkError(path, 'replace');
  if (!st.isFile()) throw new GkdError('GKD_RUNTIME_IO', `Cannot replace "${path}": it is not a regular file`, { field: 'path', data: { path } });
  return st;
}

function checkExpected(path: string, st: Stats | undefined, expect: FileStamp | null | undefined): void {
  if (expect === undefined) return;
  if (expect === null && st !== undefined) {
    throw new GkdError('GKD_RUNTIME_IO', `Cannot create "${path}": a file appeared there meanwhile`, { field: 'path', data: { path } });
  }
  if (expect !== null && st === undefined) {
    throw new GkdError('GKD_RUNTIME_NOT_FOUND', `Cannot replace "${path}": it disappeared after it was read`, { field: 'path', data: { path } });
  }
  if (expect !== null && st !== undefined && !sameStamp(expect, stampOf(st))) {
    throw new GkdError('GKD_RUNTIME_IO', `Cannot replace "${path}": another process changed it after it was read`, { field: 'path', data: { path } });
  }
}

/**
 * A replacement written to its temp file but not yet in place: {@link commit}
 * renames it over the target, {@link discard} removes it. A hot-add stages
 * the runtime file while QEMU works, so only the rename and the directory
 * sync are left once QEMU has confirmed.
 */
export interface StagedFile {
  /** The target the staged content replaces. */
  readonly path: string;
  /**
   * Checks the target is still the version staged against, waits for the
   * content's fsync, renames it into place and (unless `syncDir` is false,
   * when the caller syncs the directory itself, once for several changes)
   * fsyncs the directory.
   *
   * @throws GkdError as {@link replaceFileAtomically}; after the rename with `data.committed`
   */
  commit(options?: { syncDir?: boolean }): Promise<FileStamp>;
  /** Removes the temp file (nothing at `path` changes). */
  discard(): Promise<void>;
}

/**
 * Writes `data` to a hidden temp file next to `path`, with the current file's
 * owner and mode, and starts its fsync; nothing at `path` changes until
 * {@link StagedFile.commit}. A failed commit removes the temp file.
 *
 * @throws GkdError `GKD_RUNTIME_IO` (symlink or non-file at `path`, changed
 *   since `expect`, I/O error), `GKD_RUNTIME_NOT_FOUND` (gone since `expect`).
 */
export async function stageFile(path: string, data: string, options: ReplaceOptions): Promise<StagedFile> {
  const dir = dirname(path);
  const before = await currentFile(path);
  checkExpected(path, before, options.expect);
  // Hidden and unique: never mistaken for a runtime file, never shared by two writers.
  // The pid tells removeStaleTempFiles whether the writer may still be at work.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${tempTag()}.tmp`);
  // Created, written and given its owner and mode synchronously: a small file in the page cache
  // takes microseconds, while each asynchronous call costs a thread-pool round trip (on a
  // virtual machine, waking a sleeping thread costs more than the call). Only the fsync, which may
  // wait for the disk, runs in the pool.
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    writeFileSync(fd, data, 'utf8');
    if (before !== undefined) {
      const own = fstatSync(fd);
      if (own.uid !== before.uid || own.gid !== before.gid) fchownSync(fd, before.uid, before.gid);
    }
    // After chown, which may clear set-id bits.
    fchmodSync(fd, before === undefined ? options.mode : before.mode & 0o7777);
  } catch (e) {
    if (fd !== undefined) closeQuietly(fd);
    await unlink(tmp).catch(() => undefined);
    throw e instanceof GkdError ? e : ioError(path, 'write', e);
  }
  const written = fd;
  // The sync runs while the caller does other work; commit waits for it before the rename, so the
  // name never points at content that a power cut could still lose.
  const synced = options.sync === false || inMemory(dir) ? Promise.resolve(closeQuietly(written)) : fsyncAndClose(written);
  synced.catch(() => undefined);
  let done = false;
  const discard = async (): Promise<void> => {
    done = true;
    await synced.catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
  };
  return {
    path,
    discard,
    async commit({ syncDir: sync = true } = {}): Promise<FileStamp> {
      if (done) throw new GkdError('GKD_RUNTIME_IO', `Cannot replace "${path}": its staged content was already committed or discarded`, { field: 'path', data: { path } });
      done = true;
      let renamed = false;
      try {
        await synced;
        // Shrink the window in which a concurrent writer's change could be lost. The check, the
        // rename and the stamp are single metadata calls done synchronously: each a thread-pool
        // round trip otherwise, on the path of every hot-add after QEMU confirmed it.
        checkExpected(path, await currentFile(path), options.expect);
        renameSync(tmp, path);
        renamed = true;
        if (sync) await syncDir(dir);
        return stampOf(lstatSync(path));
      } catch (e) {
        if (!renamed) await unlink(tmp).catch(() => undefined);
        if (e instanceof GkdError) throw e;
        const err = ioError(path, renamed ? 'sync the directory of' : 'write', e);
        // After the rename the new content IS the file: callers must not undo what it records.
        if (renamed) throw new GkdError(err.code, err.message, { ...(err.field === undefined ? {} : { field: err.field }), data: { ...err.data, committed: true }, cause: e });
        throw err;
      }
    },
  };
}

/**
 * Replaces (or creates) `path` with `data` atomically, keeping an existing
 * file's owner and mode. Nothing at `path` changes unless the final rename
 * happens; the temp file is removed on any failure.
 *
 * @throws GkdError `GKD_RUNTIME_IO` (symlink or non-file at `path`, changed
 *   since `expect`, I/O error), `GKD_RUNTIME_NOT_FOUND` (gone since `expect`).
 */
export async function replaceFileAtomically(path: string, data: string, options: ReplaceOptions): Promise<FileStamp> {
  return (await stageFile(path, data, options)).commit();
}

/** Fsyncs the directory `dir`: the renames and removals done in it survive a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  try {
    await syncDir(dir);
  } catch (e) {
    throw ioError(dir, 'sync the directory', e);
  }
}

/**
 * Removes `path` (a symlink itself, never its target) and fsyncs the directory
 * (unless `syncDir` is false).
 * Resolves to false when nothing was there.
 */
export async function removeFile(path: string, options: { syncDir?: boolean } = {}): Promise<boolean> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioError(path, 'remove', e);
  }
  // The caller that passes syncDir false syncs the directory itself, once for several changes.
  if (options.syncDir !== false) await syncDir(dirname(path));
  return true;
}

/**
 * The hex part of a temp file's name: random once per process, then a counter. Unique within the
 * process and, with the pid beside it, across processes; the random part keeps a reused pid from
 * meeting a temp file its dead owner left. (Random bytes per file cost a call into the crypto
 * library on every write.)
 */
function tempTag(): string {
  tempTagPrefix ??= randomBytes(4).toString('hex');
  return tempTagPrefix + (tempCounter++).toString(16);
}
let tempTagPrefix: string | undefined;
let tempCounter = 0;

/** `.<file>.<pid>.<hex>.tmp`, as {@link replaceFileAtomically} names its temp files. */
const TEMP_RE = /^\.(.+)\.(\d+)\.[0-9a-f]+\.tmp$/;

/**
 * Removes the temp files a killed writer left in `dir` (a SIGKILL between
 * the temp file's creation and its rename): only regular files named like
 * {@link replaceFileAtomically}'s whose `suffix`-ending target name matches
 * and whose writer pid no longer exists. A live writer's file (this
 * process's included) is never touched; a pid reused by another process
 * keeps its file until a later run. Resolves to the names removed.
 */
export async function removeStaleTempFiles(dir: string, suffix: string): Promise<string[]> {
  const removed: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw ioError(dir, 'list', e);
  }
  for (const e of entries) {
    const m = TEMP_RE.exec(e.name);
    if (m === null || !e.isFile() || !m[1].endsWith(suffix) || processExists(Number(m[2]))) continue;
    try {
      await unlink(join(dir, e.name));
      removed.push(e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(join(dir, e.name), 'remove', err);
    }
  }
  if (removed.length > 0) await syncDir(dir);
  return removed.sort();
}
