// Generated from schemas/rpc/*.schema.json by plugin/rpc/schema-types.ts; do not edit.
// Regenerate: npm run build && node dist/plugin/rpc/schema-types.js --write
import type { DiskSpec, InstanceSpec, NicBackend, NicSpec } from '../types';

/** The params of each method, as its schema accepts them. */
export interface RpcParams {
  "cdrom.change": {
    name: string;
    slot: 1 | 2;
    path: string | null;
    force?: boolean;
    qmp?: string;
  };
  "disk.add": {
    name: string;
    disk: DiskSpec;
    qmp?: string;
  };
  "disk.remove": {
    name: string;
    uuid: string;
    qmp?: string;
  };
  "disk.resize": {
    name: string;
    uuid?: string;
    index?: number;
    size?: number;
    allowIdeReprobe?: boolean;
    qmp?: string;
  };
  "hotplug.supported": {
    name: string;
    kind: "disk" | "nic";
    action: "add" | "remove";
    qmp?: string;
  };
  "instance.cleanup": {
    name: string;
    qmp?: string;
  };
  "instance.plan": {
    instance: InstanceSpec;
    qmp?: string;
    accel?: "kvm" | "tcg";
  };
  "instance.start": {
    instance: InstanceSpec;
    qmp?: string;
    replace?: boolean;
  };
  "instance.verify": {
    name: string;
    qmp?: string;
    repair?: boolean | {
      known?: {
        disks?: Array<DiskSpec>;
        nics?: Array<NicSpec>;
      };
    };
  };
  "migration.accept": {
    name: string;
    runtime: unknown[];
    incoming: string;
    qmp?: string;
    nicBackends?: Record<string, NicBackend>;
  };
  "migration.start": {
    name: string;
    uri: string;
    qmp?: string;
    targetQmp?: string;
    timeoutMs?: number;
  };
  "nic.add": {
    name: string;
    nic: NicSpec;
    qmp?: string;
  };
  "nic.remove": {
    name: string;
    uuid: string;
    qmp?: string;
  };
  "rpc.discover": Record<string, never>;
  "runtime.convert": {
    name?: string;
    runtime?: unknown[];
    to: "2.9" | "2.10" | "2.16";
    write?: boolean;
  };
  "runtime.get": {
    name: string;
  };
  "runtime.list": {
    expect?: "2.9" | "2.10" | "2.16";
  };
  "runtime.validate": {
    name?: string;
    runtime?: unknown[];
  };
}

/** Names of the methods with a params schema. */
export type RpcMethodName = keyof RpcParams;
