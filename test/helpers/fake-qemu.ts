/**
 * A scripted stand-in for one QEMU's QMP monitor, for hotplug fault
 * injection only: it answers the commands the engine sends (greeting,
 * qmp_capabilities, query-pci, qom-list/qom-get, query-block, blockdev-add,
 * device_add, device_del, blockdev-del, netdev_add, netdev_del) from a small
 * model of the VM's devices, block nodes and netdevs, and can be told to
 * fail one command, drop the connection, misplace a device or withhold
 * DEVICE_DELETED; like QEMU, it refuses a device_add at an address in use.
 * What real QEMU does is asserted against real QEMU in
 * test/qemu/hotplug and test/guest; this model only needs to be faithful
 * enough for the engine's sequence, with QEMU 7.2's error texts where the
 * engine reads them (qemu-lab.md section 4).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HvInfo, RuntimeV2_16 } from '../../plugin/types';

const GREETING = { QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: 'fake' }, capabilities: ['oob'] } };

export interface FakeDevice {
  id: string;
  driver: string;
  bus: string;
  /** PCI slot on `bus`. */
  slot?: number;
  channel?: number;
  'scsi-id'?: number;
  lun?: number;
  /** Block node the device uses. */
  drive?: string;
  netdev?: string;
}

/** What to do with the next occurrence of a command. */
export type Fault =
  /** Answer with this QMP error, change nothing. */
  | { error: string }
  /** Drop the connection on receipt, without applying the command; `quit`: and refuse new ones (QEMU died). */
  | { close: 'before'; quit?: boolean }
  /** Apply the command, then drop the connection instead of replying. */
  | { close: 'after'; quit?: boolean }
  /** device_add only: accept, but put the device one slot / target further. */
  | { misplace: true };

interface Request {
  execute: string;
  id?: unknown;
  arguments?: Record<string, unknown>;
}

/** How DEVICE_DELETED behaves for PCI devices (SCSI devices always go at once, as in QEMU). */
export type PciUnplug = 'guest' | 'no-guest';


function parseDeviceArg(arg: string): FakeDevice | undefined {
  const [driver, ...opts] = arg.split(',');
  const o = Object.fromEntries(opts.map((kv) => kv.split('=') as [string, string]));
  if (o.id === undefined || o.bus === undefined) return undefined;
  return { id: o.id, driver, bus: o.bus, ...(o.addr === undefined ? {} : { slot: parseInt(o.addr, 16) }) };
}

export class FakeQemu {
  readonly path: string;
  readonly devices = new Map<string, FakeDevice>();
  readonly nodes = new Set<string>();
  readonly netdevs = new Set<string>();
  /** Every command received, on any connection, in order. */
  readonly log: Request[] = [];
  /** Connections accepted so far. */
  connections = 0;
  /** Whether PCI unplugs complete (a guest that answers) or never do (no guest / paused). */
  pciUnplug: PciUnplug = 'guest';
  /** What query-status reports (QEMU's RunState). */
  runState = 'paused';
  /** query-block leaves out these nodes (a verify fault). */
  readonly hiddenNodes = new Set<string>();
  readonly #faults = new Map<string, Fault>();
  readonly #after = new Map<string, () => void>();
  readonly #unplugging = new Set<string>();
  readonly #sockets = new Set<Socket>();
  readonly #dir: string;
  readonly #server: Server;
  #accepting = true;

  private constructor(dir: string) {
    this.#dir = dir;
    this.path = join(dir, 'qmp.sock');
    this.#server = createServer((s) => this.#serve(s));
  }

  /** A fake VM holding what `runtime` records plus the controllers its kvm_cmd adds. */
  static async start(runtime: RuntimeV2_16): Promise<FakeQemu> {
    const q = new FakeQemu(mkdtempSync(join(tmpdir(), 'gkd-fakeqemu-')));
    const cmd = runtime[0].map(String);
    for (let i = 0; i < cmd.length - 1; i++) {
      const d = cmd[i] === '-device' ? parseDeviceArg(cmd[i + 1]) : undefined;
      if (d !== undefined) q.devices.set(d.id, d);
    }
    const fromHv = (h: HvInfo): FakeDevice => {
      const r = h as unknown as Record<string, unknown>;
      return {
        id: h.id,
        driver: h.driver,
        bus: h.bus,
        ...(typeof r.addr === 'string' ? { slot: parseInt(r.addr, 16) } : {}),
        ...(typeof r['scsi-id'] === 'number' ? { channel: 0, 'scsi-id': r['scsi-id'] as number, lun: 0 } : {}),
      };
    };
    for (const [d] of runtime[3]) {
      const dev = fromHv(d.hvinfo as HvInfo);
      q.devices.set(dev.id, { ...dev, drive: dev.id });
      q.nodes.add(dev.id);
    }
    for (const n of runtime[1]) {
      const dev = fromHv(n.hvinfo as HvInfo);
      q.devices.set(dev.id, { ...dev, netdev: dev.id });
      q.netdevs.add(dev.id);
    }
    await new Promise<void>((r) => q.#server.listen(q.path, r));
    return q;
  }

  /** Makes the next `command` misbehave. */
  fault(command: string, f: Fault): this {
    this.#faults.set(command, f);
    return this;
  }

  /** Refuse further connections (QEMU gone), and drop the live ones. */
  refuseConnections(): void {
    this.#accepting = false;
    this.#server.close();
    for (const s of this.#sockets) s.destroy();
  }

  /** Commands received, by name. */
  commands(): string[] {
    return this.log.filter((r) => r.execute !== 'qmp_capabilities').map((r) => r.execute);
  }

  /** The mutating commands received, as `name target`. */
  mutations(): string[] {
    const target = (r: Request): string => String(r.arguments?.id ?? r.arguments?.['node-name'] ?? '');
    return this.log.filter((r) => /^(blockdev-add|blockdev-del|device_add|device_del|netdev_add|netdev_del)$/.test(r.execute)).map((r) => `${r.execute} ${target(r)}`);
  }

  /** The device/node/netdev sets, for before/after comparison. */
  state(): { devices: string[]; nodes: string[]; netdevs: string[] } {
    return { devices: [...this.devices.keys()].sort(), nodes: [...this.nodes].sort(), netdevs: [...this.netdevs].sort() };
  }

  /** The guest finally lets go of a PCI device whose unplug was requested: the two DEVICE_DELETED events. */
  release(id: string): void {
    if (!this.#unplugging.delete(id)) throw new Error(`no unplug of ${id} was requested`);
    this.#unplug(id);
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
    rmSync(this.#dir, { recursive: true, force: true });
  }

  #serve(s: Socket): void {
    if (!this.#accepting) {
      s.destroy();
      return;
    }
    this.connections++;
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => undefined);
    s.setEncoding('utf8');
    let buf = '';
    s.write(`${JSON.stringify(GREETING)}\r\n`);
    s.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line !== '') this.#handle(s, JSON.parse(line) as Request);
      }
    });
  }

  #drop(s: Socket, quit: boolean | undefined): void {
    if (quit === true) this.refuseConnections();
    s.destroy();
  }

  #send(s: Socket, m: unknown): void {
    if (!s.destroyed) s.write(`${JSON.stringify(m)}\r\n`);
  }

  #event(name: string, data: Record<string, unknown>): void {
    for (const s of this.#sockets) this.#send(s, { event: name, data, timestamp: { seconds: 1, microseconds: 0 } });
  }

  /** Runs `fn` once, right after the next `command` was applied (something changing QEMU meanwhile). */
  afterCommand(command: string, fn: () => void): void {
    this.#after.set(command, fn);
  }

  #handle(s: Socket, req: Request): void {
    this.log.push(req);
    const fault = this.#faults.get(req.execute);
    if (fault !== undefined) this.#faults.delete(req.execute);
    if (fault !== undefined && 'close' in fault && fault.close === 'before') {
      this.#drop(s, fault.quit);
      return;
    }
    if (fault !== undefined && 'error' in fault) {
      this.#send(s, { error: { class: 'GenericError', desc: fault.error }, id: req.id });
      return;
    }
    let reply: { return: unknown } | { error: { class: string; desc: string } };
    let after: (() => void) | undefined;
    try {
      const r = this.#apply(req, fault !== undefined && 'misplace' in fault);
      reply = { return: r.value };
      after = r.after;
    } catch (e) {
      reply = { error: { class: 'GenericError', desc: (e as Error).message } };
    }
    const hook = this.#after.get(req.execute);
    this.#after.delete(req.execute);
    hook?.();
    if (fault !== undefined && 'close' in fault) {
      this.#drop(s, fault.quit);
      return;
    }
    this.#send(s, { ...reply, id: req.id });
    if (after !== undefined) setImmediate(after);
  }

  #apply(req: Request, misplace: boolean): { value: unknown; after?: () => void } {
    const a = req.arguments ?? {};
    switch (req.execute) {
      case 'qmp_capabilities':
        return { value: {} };
      case 'query-status':
        return { value: { status: this.runState, running: this.runState === 'running', singlestep: false } };
      case 'query-pci': {
        const root = [...this.devices.values()].filter((d) => d.bus === 'pci.0' && d.slot !== undefined);
        const devices = [{ slot: 0 }, { slot: 1 }, ...root.map((d) => ({ slot: d.slot as number, function: 0, qdev_id: d.id }))].map((d) => ({ bus: 0, function: 0, qdev_id: '', ...d }));
        return { value: [{ bus: 0, devices }] };
      }
      case 'qom-list': {
        const path = String(a.path);
        // Real QEMU 7.2 has the container even when it is empty.
        if (path === '/machine/peripheral-anon') return { value: [{ name: 'type', type: 'string' }] };
        if (path === '/machine/peripheral') return { value: [...this.devices.keys()].map((name) => ({ name, type: `child<${this.devices.get(name)!.driver}>` })) };
        const d = this.#byPath(path);
        const props = ['type', 'parent_bus', ...(d.slot !== undefined ? ['addr'] : []), ...(d['scsi-id'] !== undefined ? ['channel', 'scsi-id', 'lun'] : [])];
        return { value: props.map((name) => ({ name, type: name === 'parent_bus' ? 'link<bus>' : 'int32' })) };
      }
      case 'qom-get': {
        const d = this.#byPath(String(a.path));
        switch (a.property) {
          case 'type':
            return { value: d.driver };
          case 'parent_bus':
            return { value: d.bus === 'scsi.0' ? '/machine/peripheral/scsi/virtio-backend/scsi.0' : d.bus === 'pci.0' ? '/machine/i440fx/pci.0' : `/machine/peripheral/${d.bus}/${d.bus}` };
          case 'addr':
            return { value: (d.slot as number) << 3 };
          default:
            return { value: (d as unknown as Record<string, unknown>)[String(a.property)] };
        }
      }
      case 'query-block':
        return {
          value: [...this.devices.values()]
            .filter((d) => d.drive !== undefined && !this.hiddenNodes.has(d.drive))
            .map((d) => ({ device: '', qdev: d.bus === 'scsi.0' ? d.id : `/machine/peripheral/${d.id}/virtio-backend`, inserted: { 'node-name': d.drive } })),
        };
      case 'blockdev-add': {
        const node = String(a['node-name']);
        if (this.nodes.has(node)) throw new Error(`node-name=${node} is conflicting with a device id`);
        this.nodes.add(node);
        return { value: {} };
      }
      case 'blockdev-del': {
        const node = String(a['node-name']);
        if (!this.nodes.has(node)) throw new Error(`Failed to find node with node-name='${node}'`);
        if ([...this.devices.values()].some((d) => d.drive === node)) throw new Error(`Node ${node} is in use`);
        this.nodes.delete(node);
        return { value: {} };
      }
      case 'netdev_add': {
        const id = String(a.id);
        if (this.netdevs.has(id)) throw new Error(`Duplicate ID '${id}' for netdev`);
        this.netdevs.add(id);
        return { value: {} };
      }
      case 'netdev_del': {
        const id = String(a.id);
        if (!this.netdevs.delete(id)) throw new Error(`Device '${id}' not found`);
        return { value: {} };
      }
      case 'device_add': {
        const id = String(a.id);
        if (this.devices.has(id)) throw new Error(`Duplicate device ID '${id}'`);
        const d: FakeDevice = { id, driver: String(a.driver), bus: String(a.bus) };
        if (typeof a.addr === 'string') d.slot = parseInt(a.addr, 16) + (misplace ? 1 : 0);
        if (typeof a['scsi-id'] === 'number') Object.assign(d, { channel: a.channel, 'scsi-id': a['scsi-id'] + (misplace ? 1 : 0), lun: a.lun });
        // An address in use is refused with QEMU 7.2's texts (the engine's refusals.ts reads them).
        for (const o of this.devices.values()) {
          if (o.bus !== d.bus) continue;
          if (d.slot !== undefined && o.slot === d.slot) throw new Error(`PCI: slot ${d.slot} function 0 not available for ${d.driver}, in use by ${o.driver},id=${o.id}`);
          if (d['scsi-id'] !== undefined && o['scsi-id'] === d['scsi-id'] && (o.lun ?? 0) === (d.lun ?? 0)) throw new Error(`lun already used by '${o.id}'`);
        }
        if (typeof a.drive === 'string') {
          if (!this.nodes.has(a.drive)) throw new Error(`Property '${d.driver}.drive' can't find value '${a.drive}'`);
          d.drive = a.drive;
        }
        if (typeof a.netdev === 'string') d.netdev = a.netdev;
        this.devices.set(id, d);
        return { value: {} };
      }
      case 'device_del': {
        const id = String(a.id);
        const d = this.devices.get(id);
        if (d === undefined) throw new Error(`Device '${id}' not found`);
        if (d.bus === 'scsi.0') return { value: {}, after: () => this.#unplug(id) };
        if (this.#unplugging.has(id)) throw new Error(`Device ${id} is already in the process of unplug`);
        this.#unplugging.add(id);
        if (this.pciUnplug === 'no-guest') return { value: {} };
        return { value: {}, after: () => this.release(id) };
      }
      default:
        throw new Error(`The command ${req.execute} has not been found`);
    }
  }

  #byPath(path: string): FakeDevice {
    const d = this.devices.get(path.replace('/machine/peripheral/', ''));
    if (d === undefined) throw new Error(`Device '${path}' not found`);
    return d;
  }

  #unplug(id: string): void {
    const d = this.devices.get(id);
    if (d === undefined) return;
    this.devices.delete(id);
    // A virtio device's backend goes first, in an event without `device` (qemu-lab.md section 5).
    if (d.bus !== 'scsi.0') this.#event('DEVICE_DELETED', { path: `/machine/peripheral/${id}/virtio-backend` });
    this.#event('DEVICE_DELETED', { device: id, path: `/machine/peripheral/${id}` });
  }
}
