/**
 * `kvm_extra`: extra QEMU arguments the operator appends. Ganeti 3.1+
 * splits it like a POSIX shell (shlex); we do the same, and read the PCI
 * slots its `-device` options claim explicitly so no planned device is put
 * on top of them.
 */
import { GkdError } from '../errors';
import { addrToSlot } from './pci-slots';

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

/**
 * The devices `args` create, as QEMU will create them: `-device` and
 * `--device`, each with the `-set device.ID.PROP=VALUE` options for its id
 * applied (QEMU applies them before creating any device).
 */
export function extraDevices(args: readonly string[]): Array<Map<string, string | number>> {
  const devices: Array<Map<string, string | number>> = [];
  for (let i = 0; i < args.length - 1; i++) {
    if (optionName(args[i]) !== '-device') continue;
    devices.push(deviceOptions(args[++i]));
  }
  for (const s of setOptions(args)) {
    if (s.group !== 'device') continue;
    for (const d of devices) if (String(d.get('id')) === s.id) d.set(s.prop, s.value);
  }
  return devices;
}

/**
 * Slots on `rootBus` that `args` (kvm_extra) take before any planned device
 * is created: `-device` options with an explicit `addr` (a device with no
 * `bus=` lands on the root bus; `--device` and `-set device.ID.addr=` count
 * too), and the display adapter `-vga` creates at machine init, which takes
 * the first free slot (`vgaSlot`: 2 on pc, 1 on q35) ahead of every `-device`.
 */
export function claimedSlots(args: readonly string[], rootBus: string, vgaSlot?: number): number[] {
  const slots: number[] = [];
  for (let i = 0; i < args.length - 1; i++) {
    if (optionName(args[i]) === '-vga' && args[i + 1] !== 'none' && vgaSlot !== undefined) slots.push(vgaSlot);
  }
  for (const kv of extraDevices(args)) {
    const bus = kv.get('bus') ?? rootBus;
    const slot = addrToSlot(kv.get('addr'));
    if (bus === rootBus && slot !== undefined) slots.push(slot);
  }
  return slots;
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

/** Options that give an object an id, and the key of that id. */
const ID_KEYS: ReadonlyArray<[string, string]> = [
  ['-device', 'id'], ['-netdev', 'id'], ['-nic', 'id'], ['-blockdev', 'node-name'], ['-drive', 'id'], ['-drive', 'node-name'],
  ['-object', 'id'], ['-chardev', 'id'], ['-mon', 'id'],
];

function extraError(code: 'GKD_UNSUPPORTED_VALUE' | 'GKD_ID_INVALID', message: string, device?: string): GkdError {
  return new GkdError(code, `Cannot use hvparams.kvm_extra: ${message}`, { field: 'hvparams.kvm_extra', ...(device === undefined ? {} : { device }) });
}

/**
 * Refuses what in kvm_extra the planner cannot honour: node-local options
 * the built command line would drop, a `-set device.ID.…` on a device
 * kvm_extra does not create (one of the planned devices: its address is the
 * planner's), and an id of any kind equal to one the plan uses (`plannedIds`:
 * device ids, netdev ids and block node names), which QEMU would refuse as a
 * duplicate at start or at the next hot-add.
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
  const extraIds = new Set(extraDevices(args).map((d) => String(d.get('id'))));
  for (const s of setOptions(args)) {
    if (s.group === 'device' && !extraIds.has(s.id)) {
      throw extraError('GKD_UNSUPPORTED_VALUE', `"-set ${s.group}.${s.id}.${s.prop}=…" changes device "${s.id}", which kvm_extra does not create; the planner places its own devices and cannot honour changes to them`, s.id);
    }
  }
  for (let i = 0; i < args.length - 1; i++) {
    const opt = optionName(args[i]);
    const keys = ID_KEYS.filter(([o]) => o === opt).map(([, k]) => k);
    if (keys.length === 0) continue;
    const kv = deviceOptions(args[i + 1]);
    for (const k of keys) {
      const id = kv.get(k);
      if (id !== undefined && plannedIds.has(String(id))) {
        throw extraError('GKD_ID_INVALID', `its ${opt} ${k} "${String(id)}" is an id the plan gives one of its own devices; rename it`, String(id));
      }
    }
    i++;
  }
}
