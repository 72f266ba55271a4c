/**
 * `runtime.get`, `runtime.validate`, `runtime.convert` and `runtime.list`:
 * the runtime CLI's operations over the daemon's runtime dir (or over a
 * runtime passed inline).
 */
import { convertRuntime, detectFormat, validateRuntime, type RuntimeStore } from '../../runtime';
import { isGkdError } from '../../errors';
import { existsSync } from 'node:fs';
import { JSONRPCErrorCode, JSONRPCErrorException } from 'json-rpc-2.0';
import type { HotplugEngine } from '../../hotplug';
import type { RuntimeFormatId } from '../../types';
import { defineMethod, type RpcMethod } from '../method';
import getSchema from '../../../schemas/rpc/runtime.get.schema.json';
import validateSchema from '../../../schemas/rpc/runtime.validate.schema.json';
import convertSchema from '../../../schemas/rpc/runtime.convert.schema.json';
import listSchema from '../../../schemas/rpc/runtime.list.schema.json';

interface Source {
  name?: string;
  runtime?: unknown;
}

/**
 * The four runtime methods over `store`. A conversion that writes runs in the
 * instance's queue (`engine`, HotplugEngine.exclusive) when given, after what a
 * dead process left half done is finished; otherwise under the lock alone.
 */
export function runtimeMethods(store: RuntimeStore, engine?: Pick<HotplugEngine, 'exclusive'>): RpcMethod[] {
  /** The runtime a call names: the instance's file, or the inline value. */
  const load = async (p: Source): Promise<{ value: unknown; format: RuntimeFormatId }> => {
    if (p.name !== undefined) {
      const r = await store.read(p.name);
      return { value: r.value, format: r.format };
    }
    const format = detectFormat(p.runtime);
    validateRuntime(p.runtime, format);
    return { value: p.runtime, format };
  };
  return [
    defineMethod({
      name: 'runtime.get',
      summary: "Reads an instance's runtime file and its detected format",
      schema: getSchema,
      handler: async (p) => {
        const r = await store.read(p.name);
        return { name: r.name, path: r.path, format: r.format, runtime: r.value };
      },
    }),
    defineMethod({
      name: 'runtime.validate',
      summary: 'Validates a runtime (an instance file or inline) for its detected format',
      schema: validateSchema,
      handler: async (p) => {
        const { format } = await load(p);
        return { valid: true, format };
      },
    }),
    defineMethod({
      name: 'runtime.convert',
      summary: 'Converts a runtime to another format; refuses when information would be lost',
      schema: convertSchema,
      handler: async (p, ctx) => {
        const to: RuntimeFormatId = p.to;
        const name = p.name;
        if (p.write === true) {
          if (name === undefined) {
            throw new JSONRPCErrorException('Invalid params: "write" needs "name"', JSONRPCErrorCode.InvalidParams, {
              errors: [{ path: '/name', message: 'is required with write' }],
            });
          }
          const convert = async (): Promise<Record<string, unknown>> => {
            const r = await store.read(name);
            const c = convertRuntime(structuredClone(r.value), to, { name });
            if (c.from !== c.to) await store.write(name, c.value as never, { format: to as never, expect: r.stamp });
            return { from: c.from, to: c.to, runtime: c.value, changes: c.changes, written: c.from !== c.to };
          };
          return engine === undefined ? store.withLock(name, convert) : engine.exclusive(name, convert, ctx.cancel);
        }
        const { value } = await load(p);
        const c = convertRuntime(structuredClone(value), to, name === undefined ? {} : { name });
        return { from: c.from, to: c.to, runtime: c.value, changes: c.changes, written: false };
      },
    }),
    defineMethod({
      name: 'runtime.list',
      summary: "Lists the runtime dir's files with their formats; with expect, flags the others",
      schema: listSchema,
      handler: async (p, ctx) => {
        const expect: RuntimeFormatId | undefined = p.expect;
        const files = [];
        // No runtime dir yet (Ganeti creates it at the first start): no files.
        const names = existsSync(store.dir) ? await store.list() : [];
        for (const name of names) {
          try {
            const r = await store.read(name);
            files.push({ name, format: r.format, ...(expect === undefined ? {} : { matches: r.format === expect }) });
          } catch (e) {
            // A file that vanished between list and read is not a finding.
            if (isGkdError(e) && e.code === 'GKD_RUNTIME_NOT_FOUND') continue;
            // Any other failure is this file's alone: report it by name and go on with the rest.
            let error: { code: string; message: string };
            if (isGkdError(e)) error = { code: e.code, message: e.message };
            else {
              ctx.log.error({ err: e, file: name }, 'cannot read runtime file');
              error = { code: 'GKD_INTERNAL', message: `Cannot read the runtime file of "${name}": internal error, see the daemon log` };
            }
            files.push({ name, error, ...(expect === undefined ? {} : { matches: false }) });
          }
        }
        const mismatched = expect === undefined ? 0 : files.filter((f) => f.matches === false).length;
        return { dir: store.dir, ...(expect === undefined ? {} : { expect, mismatched }), files };
      },
    }),
  ];
}
