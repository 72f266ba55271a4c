/**
 * The methods the daemon serves. A method is listed here only once the
 * module implementing it exists: an unknown method answers -32601, never a
 * stub.
 */
import type { RpcMethod } from '../method';
import instanceSchema from '../../../schemas/instance.schema.json';
import { discoverMethod } from './discover';
import { instancePlan } from './instance-plan';
import { lifecycleMethods, type Launched } from './instance-lifecycle';
import { runtimeMethods } from './runtime-methods';
import { RuntimeStore } from '../../runtime';
import type { Config } from '../../config';

export type { Launched } from './instance-lifecycle';

/** What the methods share: the daemon's config, its runtime store, what it launched. */
export interface MethodDeps {
  config: Config;
  store: RuntimeStore;
  launched: Launched;
}

/** The shared state for a daemon with `config`. */
export function methodDeps(config: Config): MethodDeps {
  return { config, store: new RuntimeStore(config.runtimeDir), launched: new Map() };
}

/** Schemas the method schemas `$ref` by `$id`. */
export const SHARED_SCHEMAS: Record<string, unknown>[] = [instanceSchema];

/** Every wired method, `rpc.discover` first. */
export function buildMethods(version: string, deps: MethodDeps, extra: RpcMethod[] = []): RpcMethod[] {
  const all: RpcMethod[] = [];
  all.push(
    discoverMethod(() => all, SHARED_SCHEMAS, version),
    instancePlan,
    ...lifecycleMethods(deps.store, deps.launched),
    ...runtimeMethods(deps.store),
    ...extra,
  );
  return all;
}
