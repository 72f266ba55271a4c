/**
 * Drift: where the runtime file and the live QEMU disagree. Pure.
 *
 * Any difference in the device set or addresses kills a migration: the
 * target builds its command line from the runtime file, and QEMU 7.2's
 * incoming side exits with "Unknown savevm section or instance
 * '0000:00:0d.0/virtio-blk' 0" when a device the source sends is missing or
 * sits elsewhere. (A device only the target has goes unnoticed by QEMU, so
 * it is drift too: nothing else would catch it.) Disk files and MACs do not
 * break the stream but make the target a different machine, so they count.
 */
import { hvinfoDifferences, type LiveDevice } from '../inspect';
import type { ExpectedDevice } from './expected-layout';
import { fdsetOf } from './fd-paths';
import type { LiveBlock, LiveState } from './live-state';
import { UNPLACED_REASON, type UnplacedDevice } from './unplaced';

/**
 * How a device differs. `property`: same place, other disk file, no medium,
 * or other MAC. `unplaced`: the runtime records the device without a QEMU
 * id (a release before 2.10 started it), so nothing can place it.
 */
export type DriftKind = 'missing-in-qemu' | 'missing-in-runtime' | 'address' | 'driver' | 'property' | 'unplaced';

/**
 * QEMU 7.2's device aliases on x86 (`-device help`: `name "virtio-balloon-pci",
 * … alias "virtio-balloon"`), alias → the type QOM reports. Used when the
 * caller has no list read from the binary.
 */
export const QEMU_DEVICE_ALIASES: Readonly<Record<string, string>> = {
  ahci: 'ich9-ahci', lsi: 'lsi53c895a', 'virtio-9p': 'virtio-9p-pci', 'virtio-blk': 'virtio-blk-pci', 'virtio-scsi': 'virtio-scsi-pci',
  'e1000-82540em': 'e1000', 'virtio-net': 'virtio-net-pci', 'virtio-input-host': 'virtio-input-host-pci', 'virtio-keyboard': 'virtio-keyboard-pci',
  'virtio-mouse': 'virtio-mouse-pci', 'virtio-serial': 'virtio-serial-pci', 'virtio-tablet': 'virtio-tablet-pci', 'virtio-gpu-gl': 'virtio-gpu-gl-pci',
  'virtio-gpu': 'virtio-gpu-pci', ac97: 'AC97', es1370: 'ES1370', 'virtio-balloon': 'virtio-balloon-pci', 'virtio-iommu': 'virtio-iommu-pci',
  'virtio-rng': 'virtio-rng-pci',
};

/** Options of {@link findDrift}. */
export interface DriftOptions {
  /** Device alias → QOM type (from the binary's `-device help`). @default QEMU_DEVICE_ALIASES */
  aliases?: Readonly<Record<string, string>>;
  /** Devices the runtime records without an id (see `unplacedDevices`). @default none */
  unplaced?: readonly UnplacedDevice[];
  /** The real path of a path on this node (symlinks resolved), undefined when it does not resolve. @default the path itself */
  realpath?: (path: string) => string | undefined;
  /** Receives what could not be checked (a disk whose file QEMU's descriptors don't tell). */
  notes?: string[];
}

/** Whether QEMU's file for a disk is the runtime's path. */
type FileVerdict = { same: true; byOpenFiles?: boolean } | { same: false; qemu: Record<string, unknown>; why: string } | { unverifiable: string };

/**
 * The runtime's `path` against what QEMU reports for the disk. Paths are
 * compared as real paths (a Ganeti link and the file it points to are the
 * same disk). `/dev/fdset/N` is resolved to the file its descriptors are
 * open on; when QEMU no longer lists them, the disk is the runtime's file
 * if QEMU has that file open and no other disk accounts for it.
 */
function fileVerdict(path: string, b: LiveBlock, live: LiveState, c: Pick<CompareContext, 'realpath' | 'unclaimed'>): FileVerdict {
  const { realpath } = c;
  const file = b.file as string;
  const set = fdsetOf(file);
  if (set === undefined) {
    if (file === path) return { same: true };
    const a = realpath(path);
    if (a !== undefined && file.startsWith('/') && a === realpath(file)) return { same: true };
    return { same: false, qemu: { file, nodeName: b.nodeName }, why: `QEMU has ${JSON.stringify(file)} open` };
  }
  const want = realpath(path);
  if (want === undefined) return { unverifiable: `QEMU reads it through ${file} and the runtime path ${JSON.stringify(path)} does not resolve on this node` };
  if (b.opened !== undefined) {
    if (b.opened === want) return { same: true };
    return { same: false, qemu: { file, opened: b.opened, nodeName: b.nodeName }, why: `QEMU reads ${file}, which is ${JSON.stringify(b.opened)}, not ${JSON.stringify(want)}` };
  }
  const open = c.unclaimed();
  if (open === undefined) return { unverifiable: `QEMU reads it through ${file}, which cannot be resolved here: ${live.fdsets?.problem ?? 'QEMU\'s descriptors were not read'}` };
  if (open.has(want)) return { same: true, byOpenFiles: true };
  return { same: false, qemu: { file, nodeName: b.nodeName }, why: `QEMU reads ${file} and has no descriptor open on ${JSON.stringify(want)}` };
}

/** One difference between the runtime file and QEMU. */
export interface Difference {
  /** QEMU id, or for a device without one its QOM path or `<driver> (no id)`. */
  device: string;
  kind: DriftKind;
  /** What the runtime records (hvinfo-shaped, plus `path`/`mac` for `property`). */
  runtime?: Record<string, unknown>;
  /** What QEMU has. */
  qemu?: Record<string, unknown>;
  /** One line for people. */
  detail: string;
  /** Where the runtime records the device (absent for QEMU-only devices). */
  recordedIn?: ExpectedDevice['recordedIn'];
}

function liveFields(d: LiveDevice): Record<string, unknown> {
  const { id: _id, ...rest } = d;
  return rest;
}

function where(e: ExpectedDevice): string {
  if (e.recordedIn === 'kvm_cmd') return e.index < 0 ? 'kvm_cmd (implied by disk_type)' : `kvm_cmd[${e.index}]`;
  return `${e.recordedIn}s[${e.index}]`;
}

interface CompareContext {
  typeOf: (driver: unknown) => unknown;
  realpath: (path: string) => string | undefined;
  notes: string[];
  /** Disks read through an fd set QEMU no longer lists, matched only by QEMU's open files. */
  byOpenFiles: string[];
  /** QEMU's open files that no disk with a known file accounts for; undefined when they could not be read. */
  unclaimed: () => Set<string> | undefined;
}

/** QEMU's open files minus the ones disks with a plain path or a listed fd set read. */
function unclaimedFiles(live: LiveState, realpath: (p: string) => string | undefined): Set<string> | undefined {
  const open = live.fdsets?.open;
  if (open === undefined) return undefined;
  const out = new Set(open);
  for (const b of live.blocks.values()) {
    const known = fdsetOf(b.file) !== undefined ? b.opened : b.file?.startsWith('/') === true ? realpath(b.file) : undefined;
    if (known !== undefined) out.delete(known);
  }
  return out;
}

function compareRecorded(e: ExpectedDevice & { id: string }, l: LiveDevice, live: LiveState, c: CompareContext): Difference[] {
  const { typeOf } = c;
  const out: Difference[] = [];
  // QEMU reports the type an alias stands for: `virtio-balloon` is a `virtio-balloon-pci`.
  const diffs = hvinfoDifferences({ ...e.fields, ...(e.fields.driver === undefined ? {} : { driver: typeOf(e.fields.driver) }) }, l);
  if (diffs.length > 0) {
    const kind = typeOf(e.fields.driver) !== l.driver ? 'driver' : 'address';
    out.push({ device: e.id, kind, runtime: e.fields, qemu: liveFields(l), recordedIn: e.recordedIn, detail: `${where(e)} "${e.id}": ${diffs.join(', ')}` });
  }
  if (e.recordedIn === 'disk') {
    const b = live.blocks.get(e.id);
    if (b === undefined) {
      out.push({ device: e.id, kind: 'property', runtime: { path: e.path }, qemu: {}, recordedIn: 'disk', detail: `${where(e)} "${e.id}": QEMU has the device but no block backend attached to it` });
    } else if ((e.uri ?? null) === null && b.file !== undefined && e.path !== undefined) {
      const v = fileVerdict(e.path, b, live, c);
      if ('unverifiable' in v) c.notes.push(`${where(e)} "${e.id}": disk file unverifiable: ${v.unverifiable}`);
      else if (v.same && v.byOpenFiles === true) c.byOpenFiles.push(e.id);
      else if (!v.same) {
        out.push({
          device: e.id, kind: 'property', runtime: { path: e.path }, qemu: v.qemu, recordedIn: 'disk',
          detail: `${where(e)} "${e.id}": runtime path ${JSON.stringify(e.path)}, ${v.why}`,
        });
      }
    }
  }
  if (e.recordedIn === 'nic' && e.mac !== undefined) {
    const mac = live.macs.get(e.id);
    if (mac !== undefined && mac.toLowerCase() !== e.mac.toLowerCase()) {
      out.push({ device: e.id, kind: 'property', runtime: { mac: e.mac }, qemu: { mac }, recordedIn: 'nic', detail: `${where(e)} "${e.id}": mac: runtime ${JSON.stringify(e.mac)}, QEMU ${JSON.stringify(mac)}` });
    }
  }
  return out;
}

/**
 * Every difference between `expected` (from the runtime) and `live` (from
 * QEMU), in a stable order. Drivers are compared as QEMU types (an alias in
 * the runtime equals the type it stands for). Each unplaced device is one
 * `unplaced` difference, and takes with it one device without an id of its
 * likely type, which is then not reported again.
 */
export function findDrift(expected: readonly ExpectedDevice[], live: LiveState, options: DriftOptions = {}): Difference[] {
  const aliases = options.aliases ?? QEMU_DEVICE_ALIASES;
  const typeOf = (driver: unknown): unknown => (typeof driver === 'string' && Object.hasOwn(aliases, driver) ? aliases[driver] : driver);
  const realpath = options.realpath ?? ((p: string) => p);
  let unclaimed: Set<string> | undefined | null = null;
  const c: CompareContext = {
    typeOf, realpath, notes: options.notes ?? [], byOpenFiles: [],
    unclaimed: () => (unclaimed === null ? (unclaimed = unclaimedFiles(live, realpath)) : unclaimed),
  };
  const out: Difference[] = [];
  const byId = new Map(live.devices.map((d) => [d.id, d] as const));
  const recordedIds = new Set<string>();
  const anonWanted = new Map<string, ExpectedDevice[]>();
  for (const e of expected) {
    if (e.id === undefined) {
      const driver = String(typeOf(e.fields.driver));
      anonWanted.set(driver, [...(anonWanted.get(driver) ?? []), e]);
      continue;
    }
    recordedIds.add(e.id);
    const l = byId.get(e.id);
    if (l === undefined) {
      out.push({ device: e.id, kind: 'missing-in-qemu', runtime: e.fields, recordedIn: e.recordedIn, detail: `${where(e)} "${e.id}" (${String(e.fields.driver)}) is not in QEMU` });
      continue;
    }
    out.push(...compareRecorded(e as ExpectedDevice & { id: string }, l, live, c));
  }
  if (c.byOpenFiles.length > 1) {
    // Each file is open in QEMU, but which fd set holds which of them QEMU no longer tells.
    c.notes.push(`disks ${c.byOpenFiles.map((d) => `"${d}"`).join(', ')} read emptied fd sets; QEMU has each runtime file open, but which disk reads which file is unverifiable`);
  }
  const anon = [...live.anon];
  for (const u of options.unplaced ?? []) {
    const driver = u.driver === undefined ? undefined : String(typeOf(u.driver));
    const i = driver === undefined ? -1 : anon.findIndex((a) => a.driver === driver);
    const a = i < 0 ? undefined : anon.splice(i, 1)[0];
    out.push({
      device: a?.path ?? `${u.driver ?? 'device'} (no id)`,
      kind: 'unplaced',
      runtime: u.driver === undefined ? {} : { driver: u.driver },
      ...(a === undefined ? {} : { qemu: { driver: a.driver } }),
      recordedIn: u.recordedIn,
      detail: `${u.label}${a === undefined ? '' : `, in QEMU "${a.path}"`}, has no device id: ${UNPLACED_REASON}`,
    });
  }
  for (const l of live.devices) {
    if (recordedIds.has(l.id)) continue;
    out.push({ device: l.id, kind: 'missing-in-runtime', qemu: liveFields(l), detail: `QEMU has "${l.id}" (${l.driver}) that the runtime does not record` });
  }
  // Devices without an id can only be matched by driver, one for one.
  for (const a of anon) {
    const wanted = anonWanted.get(a.driver);
    if (wanted !== undefined && wanted.length > 0) {
      wanted.shift();
      continue;
    }
    out.push({ device: a.path, kind: 'missing-in-runtime', qemu: { driver: a.driver }, detail: `QEMU has "${a.path}" (${a.driver}, no id) that kvm_cmd does not record` });
  }
  for (const [driver, left] of anonWanted) {
    for (const e of left) {
      out.push({ device: `${driver} (no id)`, kind: 'missing-in-qemu', runtime: e.fields, recordedIn: 'kvm_cmd', detail: `${where(e)} "${driver}" (no id) is not in QEMU` });
    }
  }
  return out;
}
