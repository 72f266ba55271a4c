/**
 * `kvm_extra`: extra QEMU arguments the operator appends. Ganeti 3.1+
 * splits it like a POSIX shell (shlex); we do the same, and read the PCI
 * slots its `-device` options claim explicitly so no planned device is put
 * on top of them.
 */
import { GkdError } from '../errors';
import type { MachineLayout } from './machine';
import { PCI_SLOTS } from './machine';
import { isPciModel } from './pci-models';
import { parseAddr, slotToAddr } from './pci-slots';

/** Splits like a POSIX shell without expansions: quotes and backslashes. */
export function shellSplit(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < s.length && '"\\$`'.includes(s[i + 1])) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote !== null) {
    throw new GkdError('GKD_SPEC_INVALID', 'Cannot split hvparams.kvm_extra: unterminated quote', { field: 'hvparams.kvm_extra' });
  }
  if (inWord) out.push(cur);
  return out;
}

/** Splits a QEMU option string on single commas (`,,` is a literal comma). */
export function splitOptions(s: string): string[] {
  return s.replace(/,,/g, '\u0000').split(',').map((p) => p.replace(/\u0000/g, ','));
}

/**
 * The options of one `-device` value, in either QEMU syntax (`driver,k=v,…`
 * or JSON `{"driver":…}`), the driver under `driver`. JSON numbers stay
 * numbers: QEMU reads an integer `addr` there as a devfn, not as hex text.
 */
export function deviceOptions(value: string): Map<string, string | number> {
  const kv = new Map<string, string | number>();
  if (value.trimStart().startsWith('{')) {
    try {
      const o = JSON.parse(value) as Record<string, unknown>;
      for (const [k, v] of Object.entries(o)) if (typeof v === 'string' || typeof v === 'number') kv.set(k, v);
    } catch {
      // Not JSON after all: QEMU will say so when it starts.
    }
    return kv;
  }
  splitOptions(value).forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq > 0) kv.set(p.slice(0, eq), p.slice(eq + 1));
    else if (i === 0) kv.set('driver', p);
  });
  return kv;
}

/** `--opt` → `-opt`: QEMU accepts both spellings of every option. */
export function optionName(arg: string): string {
  return arg.startsWith('--') ? arg.slice(1) : arg;
}

/** One `-set GROUP.ID.PROP=VALUE` of kvm_extra. */
export interface SetOption {
  group: string;
  id: string;
  prop: string;
  value: string;
  /** Index of the `-set` in `args`. */
  index: number;
}

/** The `-set` options of `args` (QEMU's syntax: group and id contain no "." or "="). */
export function setOptions(args: readonly string[]): SetOption[] {
  const out: SetOption[] = [];
  for (let i = 0; i < args.length - 1; i++) {
    if (optionName(args[i]) !== '-set') continue;
    const m = /^([^.=]+)\.([^.=]+)\.([^=]+)=(.*)$/s.exec(args[i + 1]);
    if (m !== null) out.push({ group: m[1], id: m[2], prop: m[3], value: m[4], index: i });
    i++;
  }
  return out;
}

/** One `-device` of kvm_extra: as written, whether in JSON, and its options with `-set` applied. */
interface ExtraDevice {
  option: string;
  json: boolean;
  kv: Map<string, string | number>;
}

/** `-opt value` as written in kvm_extra, shortened for a message. */
function quoted(option: string, value: string): string {
  const s = `${option} ${value}`;
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 97)}...` : s);
}

function extraDeviceList(args: readonly string[]): ExtraDevice[] {
  const devices: ExtraDevice[] = [];
  for (let i = 0; i < args.length - 1; i++) {
    if (optionName(args[i]) !== '-device') continue;
    const value = args[++i];
    devices.push({ option: quoted(args[i - 1], value), json: value.trimStart().startsWith('{'), kv: deviceOptions(value) });
  }
  for (const s of setOptions(args)) {
    if (s.group !== 'device') continue;
    // QEMU 7.2 applies -set to devices in the flat syntax only (a JSON one: 'there is no device "j" defined').
    for (const d of devices) if (!d.json && String(d.kv.get('id')) === s.id) d.kv.set(s.prop, s.value);
  }
  return devices;
}

/**
 * The devices `args` create, as QEMU will create them: `-device` and
 * `--device`, each flat-syntax one with the `-set device.ID.PROP=VALUE`
 * options for its id applied (QEMU applies them before creating any device).
 */
export function extraDevices(args: readonly string[]): Array<Map<string, string | number>> {
  return extraDeviceList(args).map((d) => d.kv);
}

/** A PCI function kvm_extra creates, as the slot play below sees it. */
interface PciFunction {
  /** The option that creates it, as written (for messages). */
  option: string;
  bus: string;
  /** Its `addr`; undefined when QEMU picks the slot as it creates it; null when QEMU cannot read it (QEMU refuses it itself). */
  at?: { slot: number; fn: number } | null;
}

/** The address a device's `addr` option asks for (see PciFunction.at). */
function askedAddr(kv: ReadonlyMap<string, string | number>): PciFunction['at'] {
  return kv.has('addr') ? (parseAddr(kv.get('addr')) ?? null) : undefined;
}

/**
 * kvm_extra's PCI devices in the three groups QEMU 7.2 creates them in
 * (each group in argv order):
 * - `machine`, at machine init, before any `-device`: the adapter of the
 *   last `-vga` (unless `none`), then the NICs of `-nic`, then those of
 *   `-net nic` (except ne2k_isa, an ISA card; only `-net nic` takes `addr`);
 * - `devices`: the `-device`s in the flat syntax. kvm_cmd lists the
 *   planner's controller and ports ahead of kvm_extra, and the built argv
 *   its disks and NICs behind it, so these are created in between;
 * - `late`, after every flat `-device` (so after the planned disks and
 *   NICs): the disks of `-drive if=virtio`, then the `-device`s in JSON.
 */
function extraPciGroups(args: readonly string[], rootBus: string): { machine: PciFunction[]; devices: PciFunction[]; late: PciFunction[] } {
  let vga: PciFunction | undefined;
  const nics: PciFunction[] = [];
  const netNics: PciFunction[] = [];
  const drives: PciFunction[] = [];
  for (let i = 0; i < args.length - 1; i++) {
    const opt = optionName(args[i]);
    const value = args[i + 1];
    if (opt === '-vga') vga = value === 'none' ? undefined : { option: quoted(args[i], value), bus: rootBus };
    else if (opt === '-nic' || opt === '-net' || opt === '-drive') {
      const kv = deviceOptions(value);
      const type = String(kv.get('type') ?? kv.get('driver'));
      const isaNic = kv.get('model') === 'ne2k_isa';
      if (opt === '-nic' && type !== 'none' && !isaNic) nics.push({ option: quoted(args[i], value), bus: rootBus });
      if (opt === '-net' && type === 'nic' && !isaNic) netNics.push({ option: quoted(args[i], value), bus: rootBus, at: askedAddr(kv) });
      if (opt === '-drive' && kv.get('if') === 'virtio') drives.push({ option: quoted(args[i], value), bus: rootBus, at: askedAddr(kv) });
    } else continue;
    i++;
  }
  const devices: PciFunction[] = [];
  const json: PciFunction[] = [];
  for (const d of extraDeviceList(args)) {
    // A device with an addr is a PCI device whatever its model.
    if (!isPciModel(String(d.kv.get('driver'))) && !d.kv.has('addr')) continue;
    (d.json ? json : devices).push({ option: d.option, bus: String(d.kv.get('bus') ?? rootBus), at: askedAddr(d.kv) });
  }
  return { machine: [...(vga === undefined ? [] : [vga]), ...nics, ...netNics], devices, late: [...drives, ...json] };
}

/** The machine's root bus and the slots it fills itself. */
export type RootBus = Pick<MachineLayout, 'rootBus' | 'builtinSlots'>;

/** A PCI function the plan places on the root bus, for the slot play. */
export interface PlannedFunction {
  slot: number;
  fn: number;
  /** What it is, for messages ("the SCSI controller"). */
  what: string;
}

/** Root-bus slots of kvm_extra as the play found them. */
interface RootPlay {
  /** Taken at machine init. */
  machine: number[];
  /** Named by an `addr` (any group). */
  explicit: number[];
  /** Taken by flat `-device`s without `addr`, as QEMU picks them. */
  auto: number[];
}

function slotError(message: string, code: 'GKD_SPEC_INVALID' | 'GKD_CAPACITY' = 'GKD_SPEC_INVALID'): GkdError {
  return new GkdError(code, `Cannot use hvparams.kvm_extra: ${message}`, { field: 'hvparams.kvm_extra' });
}

/**
 * Plays the PCI devices of `args` onto the buses as QEMU 7.2 creates them:
 * the machine's own slots, kvm_extra's machine-init devices, the plan's
 * `before` functions (its controller or ports, first in kvm_cmd), the flat
 * `-device`s, the plan's `after` functions (its disks and NICs), then the
 * late group. A device with `addr` takes that function; one without takes
 * function 0 of the lowest slot whose function 0 is free, as QEMU does.
 * `strict`: throws where QEMU would refuse to start (two devices on one
 * function, no free slot); otherwise such devices are left out.
 */
function playRootBus(args: readonly string[], m: RootBus, before: readonly PlannedFunction[], after: readonly PlannedFunction[], strict: boolean): RootPlay {
  const groups = extraPciGroups(args, m.rootBus);
  const owners = new Map<string, string>();
  const key = (bus: string, slot: number, fn: number): string => `${bus}/${slot}.${fn}`;
  const label = (slot: number, fn: number): string => `${slotToAddr(slot)}${fn === 0 ? '' : `.${fn}`}`;
  for (const s of m.builtinSlots) owners.set(key(m.rootBus, s, 0), "the machine's own device");
  const play: RootPlay = { machine: [], explicit: [], auto: [] };
  const planned = (fs: readonly PlannedFunction[]): void => {
    for (const f of fs) owners.set(key(m.rootBus, f.slot, f.fn), f.what);
  };
  const place = (group: readonly PciFunction[], into: number[] | undefined): void => {
    for (const d of group) {
      if (d.at === null) continue;
      if (d.at !== undefined) {
        const k = key(d.bus, d.at.slot, d.at.fn);
        const owner = owners.get(k);
        if (owner !== undefined && strict) {
          throw slotError(`${d.option} asks for slot ${label(d.at.slot, d.at.fn)} on ${d.bus}, which ${owner} has by then; QEMU would refuse to start ("not available"). Give one of them another addr`);
        }
        if (d.bus === m.rootBus) play.explicit.push(d.at.slot);
        if (owner === undefined) owners.set(k, d.option);
        continue;
      }
      // Without addr QEMU picks only on the root bus here: a device on another bus takes no root slot.
      if (d.bus !== m.rootBus) continue;
      let slot = 0;
      while (slot < PCI_SLOTS && owners.has(key(m.rootBus, slot, 0))) slot++;
      if (slot === PCI_SLOTS) {
        if (strict) throw slotError(`${d.option} has no addr and no root-bus slot is left free for it when QEMU creates it`, 'GKD_CAPACITY');
        continue;
      }
      owners.set(key(m.rootBus, slot, 0), `${d.option} (no addr: QEMU gives it the lowest free slot)`);
      into?.push(slot);
    }
  };
  place(groups.machine, play.machine);
  planned(before);
  place(groups.devices, play.auto);
  planned(after);
  place(groups.late, undefined);
  return play;
}

/**
 * Root-bus slots kvm_extra takes whatever the plan does: those its
 * machine-init devices get (the `-vga` adapter, `-nic` and `-net nic` NICs,
 * each at the lowest free slot: 2 on pc, 1 on q35 for the first), and every
 * slot an `addr` names on the root bus (a device with no `bus=` lands there;
 * `--device` and `-set device.ID.addr=` count too).
 */
export function claimedSlots(args: readonly string[], m: RootBus): number[] {
  const play = playRootBus(args, m, [], [], false);
  return [...play.machine, ...play.explicit];
}

/**
 * Root-bus slots kvm_extra's flat `-device`s without `addr` take: QEMU
 * creates them after the plan's `before` functions and before its disks
 * and NICs, each at the lowest free slot, so those must keep clear of them.
 */
export function autoSlots(args: readonly string[], m: RootBus, before: readonly PlannedFunction[]): number[] {
  return playRootBus(args, m, before, [], false).auto;
}

/**
 * Refuses kvm_extra PCI devices QEMU would refuse at start beside the plan:
 * two on one function of a bus (both with `addr`, or one without `addr`
 * that QEMU placed there first), or one without `addr` and no slot left.
 * @throws GkdError naming `hvparams.kvm_extra`
 */
export function checkExtraSlots(args: readonly string[], m: RootBus, before: readonly PlannedFunction[], after: readonly PlannedFunction[]): void {
  playRootBus(args, m, before, after, true);
}

/**
 * Options the daemon drops from kvm_cmd when it builds a command line,
 * because they are node-local and it sets its own (pid file, QMP and
 * monitor sockets, accelerator). In kvm_extra they would silently vanish,
 * so planning refuses them instead.
 */
const NODE_LOCAL_OPTIONS = new Map<string, string>([
  ['-qmp', 'the daemon adds the QMP socket itself (config qmpPattern)'],
  ['-monitor', 'the daemon manages the instance through QMP (config qmpPattern)'],
  ['-pidfile', 'the daemon sets the pid file under its run dir'],
  ['-daemonize', 'QEMU is started in the foreground by Ganeti or the daemon'],
  ['-runas', 'the daemon drops it from the command line it builds'],
  ['-chroot', 'the daemon drops it from the command line it builds'],
  ['-D', 'the daemon drops it from the command line it builds'],
  ['-enable-kvm', 'the accelerator is node-local (daemon config accel)'],
]);

/**
 * Options other than `-device` that name something, the key of the name,
 * and the namespace QEMU 7.2 refuses a second equal name in ("Duplicate
 * ID"): `-nic` and `-net` share the netdevs', `-drive` ids and node names
 * share the block nodes'. Names in different namespaces (a device and a
 * netdev both called "x") live side by side.
 */
const NAME_KEYS: ReadonlyArray<[option: string, key: string, namespace: string]> = [
  ['-netdev', 'id', 'netdev'], ['-nic', 'id', 'netdev'], ['-net', 'id', 'netdev'],
  ['-blockdev', 'node-name', 'block node'], ['-drive', 'id', 'block node'], ['-drive', 'node-name', 'block node'],
  ['-object', 'id', 'object'], ['-chardev', 'id', 'chardev'], ['-mon', 'id', 'monitor'],
];

/** A name kvm_extra gives, where it gives it. */
interface ExtraName {
  option: string;
  key: string;
  name: string;
  namespace: string;
}

/** Every name kvm_extra gives: device ids as QEMU sees them (after `-set`), and the names of NAME_KEYS. */
function extraNames(args: readonly string[]): ExtraName[] {
  const names: ExtraName[] = [];
  for (const d of extraDeviceList(args)) {
    const id = d.kv.get('id');
    if (id !== undefined) names.push({ option: d.option, key: 'id', name: String(id), namespace: 'device' });
  }
  for (let i = 0; i < args.length - 1; i++) {
    const opt = optionName(args[i]);
    const keys = NAME_KEYS.filter(([o]) => o === opt);
    if (keys.length === 0) continue;
    const kv = deviceOptions(args[i + 1]);
    for (const [, key, namespace] of keys) {
      const name = kv.get(key);
      if (name !== undefined) names.push({ option: quoted(args[i], args[i + 1]), key, name: String(name), namespace });
    }
    i++;
  }
  return names;
}

function extraError(code: 'GKD_UNSUPPORTED_VALUE' | 'GKD_ID_INVALID', message: string, device?: string): GkdError {
  return new GkdError(code, `Cannot use hvparams.kvm_extra: ${message}`, { field: 'hvparams.kvm_extra', ...(device === undefined ? {} : { device }) });
}

/**
 * Refuses what in kvm_extra the planner cannot honour: node-local options
 * the built command line would drop, a `-set device.ID.…` on a device
 * kvm_extra does not create (one of the planned devices: its address is the
 * planner's) or creates in JSON (QEMU applies `-set` to the flat syntax
 * only), a name of any kind equal to one the plan uses (`plannedIds`:
 * device ids, netdev ids and block node names), which QEMU would refuse as
 * a duplicate at start or at the next hot-add, and two equal names within
 * one of QEMU's namespaces in kvm_extra itself.
 * @throws GkdError naming `hvparams.kvm_extra`
 */
export function checkExtraClaims(args: readonly string[], plannedIds: ReadonlySet<string>): void {
  for (let i = 0; i < args.length; i++) {
    const reason = NODE_LOCAL_OPTIONS.get(optionName(args[i]));
    if (reason !== undefined) throw extraError('GKD_UNSUPPORTED_VALUE', `"${args[i]}" would be dropped from the command line: ${reason}`);
    // A config file can create devices at any address under any id: nothing here can see them.
    if (optionName(args[i]) === '-readconfig') {
      throw extraError('GKD_UNSUPPORTED_VALUE', `"${args[i]}" creates devices the planner cannot see (their slots and ids); give them as -device options instead`);
    }
  }
  // QEMU finds the device of a -set by the id written in its -device.
  const written = new Map<string, boolean>();
  for (let i = 0; i < args.length - 1; i++) {
    if (optionName(args[i]) !== '-device') continue;
    const id = deviceOptions(args[++i]).get('id');
    if (id !== undefined) written.set(String(id), args[i].trimStart().startsWith('{'));
  }
  for (const s of setOptions(args)) {
    if (s.group !== 'device') continue;
    const json = written.get(s.id);
    if (json === undefined) {
      throw extraError('GKD_UNSUPPORTED_VALUE', `"-set ${s.group}.${s.id}.${s.prop}=…" changes device "${s.id}", which kvm_extra does not create; the planner places its own devices and cannot honour changes to them`, s.id);
    }
    if (json) {
      throw extraError('GKD_UNSUPPORTED_VALUE', `"-set ${s.group}.${s.id}.${s.prop}=…" changes device "${s.id}", which kvm_extra writes in JSON; QEMU applies -set to the flat -device syntax only and would refuse to start ("there is no device"); put ${s.prop} into the JSON`, s.id);
    }
  }
  const seen = new Map<string, ExtraName>();
  for (const n of extraNames(args)) {
    if (plannedIds.has(n.name)) {
      throw extraError('GKD_ID_INVALID', `its ${n.option} ${n.key} "${n.name}" is an id the plan gives one of its own devices; rename it`, n.name);
    }
    const first = seen.get(`${n.namespace}/${n.name}`);
    if (first !== undefined) {
      throw extraError('GKD_ID_INVALID', `${first.option} and ${n.option} both name a ${n.namespace} "${n.name}"; QEMU refuses the second at start ("Duplicate ID"); rename one`, n.name);
    }
    seen.set(`${n.namespace}/${n.name}`, n);
  }
}
