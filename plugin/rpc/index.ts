/**
 * The daemon: JSON-RPC 2.0 over WebSocket on a Unix socket, its methods,
 * and the client the CLI, the hooks and the tests use.
 */
export { RpcServer, type RpcServerOptions } from './server';
export { RpcClient, RpcCallError, RpcConnectionError, RpcTimeoutError, type RpcClientOptions } from './client';
export { buildMethods, methodDeps, SHARED_SCHEMAS, type MethodDeps } from './methods';
export { startDaemon, type Daemon, type StartDaemonOptions } from './daemon';
export type { CallContext, Notify, RpcMethod, RpcPeer } from './method';
export { toParamErrors, type ParamError } from './params';
export { isLive, SocketInUseError } from './socket-file';
