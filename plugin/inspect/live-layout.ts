/**
 * What the live QEMU really has, in hvinfo terms, read over QMP.
 *
 * Every device with an id is a child of `/machine/peripheral`; its QOM
 * properties give the driver (`type`), the bus it sits on (`parent_bus`, a
 * path ending in the bus name: `/machine/i440fx/pci.0`,
 * `/machine/peripheral/rp1/rp1`, `/machine/peripheral/scsi/virtio-backend/scsi.0`)
 * and its address (`addr` = PCI devfn, `scsi-id`/`channel`/`lun`, `unit`).
 * This works where query-pci does not: on a paused q35 VM that never ran,
 * query-pci does not list devices behind root ports (their secondary bus
 * number is still 0), and SCSI disks are not on PCI at all.
 */
import { isGkdError } from '../errors';
import type { QmpClient } from '../qmp';

/** One device as QEMU has it, with hvinfo-shaped address fields. */
export interface LiveDevice {
  id: string;
  driver: string;
  bus?: string;
  /** PCI slot as a hex string; `0x1.0x3` when the function isn't 0. */
  addr?: string;
  channel?: number;
  'scsi-id'?: number;
  lun?: number;
  unit?: number;
}

interface QomProperty {
  name: string;
  type: string;
}

async function getProp(qmp: QmpClient, path: string, property: string): Promise<unknown> {
  return qmp.execute('qom-get', { path, property });
}

/** Renders a PCI devfn the way hvinfo writes `addr`. */
export function devfnToAddr(devfn: number): string {
  const slot = devfn >> 3;
  const fn = devfn & 7;
  return fn === 0 ? `0x${slot.toString(16)}` : `0x${slot.toString(16)}.0x${fn.toString(16)}`;
}

/** Reads one peripheral; undefined when it vanished meanwhile. */
export async function readLiveDevice(qmp: QmpClient, id: string): Promise<LiveDevice | undefined> {
  return readDeviceAt(qmp, `/machine/peripheral/${id}`, id);
}

async function readDeviceAt(qmp: QmpClient, path: string, id: string): Promise<LiveDevice | undefined> {
  let props: QomProperty[];
  try {
    props = await qmp.execute<QomProperty[]>('qom-list', { path });
  } catch (e) {
    // Only "no such object" means absent; a lost connection or a timeout must not read as "not there".
    if (isGkdError(e) && e.code === 'GKD_QMP_COMMAND') return undefined;
    throw e;
  }
  const names = new Set(props.map((p) => p.name));
  // All properties in flight at once: QEMU answers in order, and the round trips overlap.
  const wanted = ['type', ...(['parent_bus', 'addr', 'channel', 'scsi-id', 'lun', 'unit'] as const).filter((k) => names.has(k))];
  const values = await Promise.all(wanted.map((k) => getProp(qmp, path, k)));
  const v = new Map(wanted.map((k, i) => [k, values[i]] as const));
  const dev: LiveDevice = { id, driver: String(v.get('type')) };
  const bus = v.get('parent_bus');
  if (typeof bus === 'string' && bus !== '') dev.bus = bus.slice(bus.lastIndexOf('/') + 1);
  // PCI devices have an integer devfn `addr`; other devices have no such property.
  const addr = v.get('addr');
  if (typeof addr === 'number' && addr >= 0) dev.addr = devfnToAddr(addr);
  for (const k of ['channel', 'scsi-id', 'lun', 'unit'] as const) {
    const n = v.get(k);
    if (typeof n === 'number') dev[k] = n;
  }
  return dev;
}

/**
 * Every peripheral (device with an id) QEMU has, sorted by id. With
 * `anonymous`, also the devices created without an id (kvm_extra's
 * `-device scsi-hd,…` with no `id=`), which live under
 * `/machine/peripheral-anon` and still take addresses; their `id` is then
 * `peripheral-anon/device[N]`.
 */
export async function readLiveLayout(qmp: QmpClient, options: { anonymous?: boolean } = {}): Promise<LiveDevice[]> {
  const devices = await Promise.all((await listPeripherals(qmp, options)).map((p) => readDeviceAt(qmp, p.path, p.id)));
  return devices.filter((d): d is LiveDevice => d !== undefined).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** One device in QOM: its path, its id (`peripheral-anon/device[N]` without one) and its QOM type. */
export interface Peripheral {
  path: string;
  id: string;
  type: string;
}

/** The devices QEMU has, with (and, with `anonymous`, without) an id, from one qom-list per container. */
export async function listPeripherals(qmp: QmpClient, options: { anonymous?: boolean } = {}): Promise<Peripheral[]> {
  const out: Peripheral[] = [];
  for (const container of options.anonymous ? ['peripheral', 'peripheral-anon'] : ['peripheral']) {
    let children: QomProperty[];
    try {
      children = await qmp.execute<QomProperty[]>('qom-list', { path: `/machine/${container}` });
    } catch (e) {
      // A QEMU that never made an anonymous device may lack the container.
      if (container === 'peripheral-anon' && isGkdError(e) && e.code === 'GKD_QMP_COMMAND') continue;
      throw e;
    }
    for (const c of children) {
      const m = /^child<(.+)>$/.exec(c.type);
      if (m === null) continue;
      out.push({ path: `/machine/${container}/${c.name}`, id: container === 'peripheral' ? c.name : `peripheral-anon/${c.name}`, type: m[1] });
    }
  }
  return out;
}

/**
 * The hvinfo fields on which `live` differs from `hvinfo` (empty when QEMU
 * has the device exactly where hvinfo says). Only fields hvinfo carries are
 * compared; `addr` is compared as a slot so `0xc` equals `0x0c`.
 */
export function hvinfoDifferences(hvinfo: Record<string, unknown>, live: LiveDevice): string[] {
  const diffs: string[] = [];
  for (const [k, want] of Object.entries(hvinfo)) {
    if (k === 'id') continue;
    const got = (live as unknown as Record<string, unknown>)[k];
    const same = k === 'addr' ? normAddr(want) === normAddr(got) : want === got;
    if (!same) diffs.push(`${k}: runtime ${JSON.stringify(want)}, QEMU ${JSON.stringify(got)}`);
  }
  return diffs;
}

function normAddr(a: unknown): string {
  if (typeof a !== 'string') return String(a);
  return a
    .split('.')
    .map((p) => parseInt(p, 16))
    .join('.')
    .replace(/\.0$/, '');
}
