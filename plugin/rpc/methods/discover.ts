/**
 * `rpc.discover`: the methods this daemon serves, each with its params
 * schema, plus the shared schemas those `$ref` (so a client can validate
 * before calling).
 */
import type { RpcMethod } from '../method';
import schema from '../../../schemas/rpc/rpc.discover.schema.json';

/** Builds `rpc.discover` over a live view of the method list. */
export function discoverMethod(list: () => RpcMethod[], shared: Record<string, unknown>[], version: string): RpcMethod {
  return {
    name: 'rpc.discover',
    summary: 'Lists the methods this daemon serves and their params schemas',
    schema,
    handler: () => ({
      version,
      methods: list().map((m) => ({ name: m.name, summary: m.summary, params: m.schema })),
      schemas: Object.fromEntries(shared.map((s) => [String(s.$id), s])),
    }),
  };
}
