/**
 * The methods the daemon serves. A method is listed here only once the
 * module implementing it exists: an unknown method answers -32601, never a
 * stub.
 */
import type { RpcMethod } from '../method';
import instanceSchema from '../../../schemas/instance.schema.json';
import { discoverMethod } from './discover';
import { instancePlan } from './instance-plan';

/** Schemas the method schemas `$ref` by `$id`. */
export const SHARED_SCHEMAS: Record<string, unknown>[] = [instanceSchema];

/** Every wired method, `rpc.discover` first. */
export function buildMethods(version: string, extra: RpcMethod[] = []): RpcMethod[] {
  const all: RpcMethod[] = [];
  all.push(discoverMethod(() => all, SHARED_SCHEMAS, version), instancePlan, ...extra);
  return all;
}
