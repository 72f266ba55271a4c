/**
 * `POST /hook/<name>` on the daemon's socket: the fast path of the scripts
 * in hooks/. Node needs ~60 ms to start before a hook does any work; a
 * POSIX sh script posting its environment with curl and the daemon running
 * the hook in process take a fraction of that.
 *
 * Body: the hook's environment as NUL-separated `KEY=VALUE` records (what
 * `env -0` prints); records other than GANETI_* and GKD_* are ignored. The
 * config file the hook would read travels as the record GKD_CONFIG_TEXT
 * (GKD_CONFIG naming it): the daemon never reads a file a request names, and
 * the checks judge with the hook's configuration (ganetiFormat,
 * hookTimeoutMs), exactly as `kvm-devices hook <name>` does.
 *
 * Answer: 200 with `<exit status>\n<stdout text>` (text/plain) once the hook
 * ran, whatever its verdict; 4xx with a GKD_HOOK_REQUEST_INVALID error
 * (JSON, naming the field) for a request that is not one.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { loadConfig, type Config } from '../config';
import { GkdError } from '../errors';
import { runHook } from '../cli/hook-run';
import { HOOKS, type HookCaller } from '../cli/hook-table';
import { RpcCallError, RpcTimeoutError } from './client';
import type { RpcServer } from './server';

/** The endpoint's path prefix; the hook's name follows. */
export const HOOK_PATH = '/hook/';
/** The record carrying the config file's text. */
export const CONFIG_TEXT_KEY = 'GKD_CONFIG_TEXT';
/** Records the hook code and the configuration read; the rest of an environment is dropped. */
const KEPT_KEY = /^(GANETI|GKD)_[A-Za-z0-9_]*$/;

function invalid(message: string, field: string, httpStatus = 400): GkdError {
  return new GkdError('GKD_HOOK_REQUEST_INVALID', message, { field, data: { httpStatus } });
}

/**
 * The environment in a request body.
 * @throws GkdError GKD_HOOK_REQUEST_INVALID naming the record at fault
 */
export function parseHookBody(body: Buffer): Record<string, string> {
  const env: Record<string, string> = Object.create(null) as Record<string, string>;
  const records = body.toString('utf8').split('\0');
  // `env -0` ends every record with NUL, the last one included.
  if (records.at(-1) === '') records.pop();
  for (const [i, rec] of records.entries()) {
    const eq = rec.indexOf('=');
    if (eq <= 0) throw invalid(`Cannot read the hook environment: record ${i} is not KEY=VALUE (records are NUL-separated, as env -0 prints them)`, `body[${i}]`);
    const key = rec.slice(0, eq);
    if (!KEPT_KEY.test(key)) continue;
    if (key in env) throw invalid(`Cannot read the hook environment: ${key} is given twice`, key);
    env[key] = rec.slice(eq + 1);
  }
  return env;
}

/**
 * A config file named without its text would have to be read by the daemon.
 * @throws GkdError GKD_HOOK_REQUEST_INVALID naming GKD_CONFIG_TEXT
 */
function checkConfigSent(env: NodeJS.ProcessEnv): void {
  if (env[CONFIG_TEXT_KEY] === undefined && (env.GKD_CONFIG ?? '') !== '') {
    throw invalid(`Cannot use GKD_CONFIG="${String(env.GKD_CONFIG).slice(0, 256)}" without ${CONFIG_TEXT_KEY}: the daemon reads no file a request names`, CONFIG_TEXT_KEY);
  }
}

/** The hook's configuration: the text the script sent, never a file the request names. */
function hookConfig(env: NodeJS.ProcessEnv): Config {
  checkConfigSent(env);
  const { [CONFIG_TEXT_KEY]: text, ...rest } = env;
  return loadConfig({ env: rest, fileText: text ?? null });
}

/** Reads the body, refusing it once it passes `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(invalid(`Cannot take the hook request: its body of ${declared} bytes is over the limit of ${limit} (maxPayload)`, 'body', 413));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(invalid(`Cannot take the hook request: its body is over the limit of ${limit} bytes (maxPayload)`, 'body', 413));
        req.removeAllListeners('data');
        req.pause();
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('close', () => reject(new Error('client went away before sending the whole body')));
    req.once('error', reject);
  });
}

/** A caller whose calls go through the server in process, each bounded by hookTimeoutMs as over the WebSocket. */
function localCaller(server: RpcServer, config: Config, log: Logger): HookCaller & { close(): Promise<void> } {
  const peer = server.localPeer(log);
  return {
    async call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new RpcTimeoutError(method, config.hookTimeoutMs)), config.hookTimeoutMs);
      });
      try {
        const reply = await Promise.race([peer.call(method, params), late]);
        if ('error' in reply && reply.error !== undefined && reply.error !== null) throw new RpcCallError(reply.error);
        return (reply as { result: T }).result;
      } finally {
        clearTimeout(timer);
      }
    },
    close: async () => peer.close('hook finished'),
  };
}

/** Answers one plain HTTP request on the daemon's socket. */
export function hookEndpoint(maxBytes: number, log: Logger) {
  return async (req: IncomingMessage, res: ServerResponse, server: RpcServer): Promise<void> => {
    const started = process.hrtime.bigint();
    const fail = (e: GkdError): void => {
      log.info({ outcome: e.code, field: e.field, url: (req.url ?? '').slice(0, 256) }, 'hook request refused');
      const status = (e.data?.httpStatus as number | undefined) ?? 400;
      // A refused body may be left unread: the connection cannot carry another request.
      res.writeHead(status, { 'content-type': 'application/json', connection: 'close' }).end(`${JSON.stringify(e.toJSON())}\n`);
    };
    const url = req.url ?? '';
    if (!url.startsWith(HOOK_PATH)) {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('This socket speaks JSON-RPC over WebSocket, and runs hooks at POST /hook/<name>\n');
      return;
    }
    const name = url.slice(HOOK_PATH.length);
    if (!Object.hasOwn(HOOKS, name)) {
      fail(invalid(`Cannot run hook "${name.slice(0, 64)}": no such hook (see kvm-devices hook --help)`, 'path', 404));
      return;
    }
    if (req.method !== 'POST') {
      fail(invalid(`Cannot run hook "${name}" with ${String(req.method).slice(0, 16)}: POST its environment`, 'method', 405));
      return;
    }
    let env: Record<string, string>;
    try {
      env = parseHookBody(await readBody(req, maxBytes));
      checkConfigSent(env);
    } catch (e) {
      if (e instanceof GkdError) fail(e);
      else log.info({ err: { message: (e as Error).message } }, 'hook request abandoned');
      return;
    }
    const hookLog = log.child({ hook: name, ...(env.GANETI_INSTANCE_NAME ? { instance: env.GANETI_INSTANCE_NAME.slice(0, 255) } : {}) });
    let caller: ReturnType<typeof localCaller> | undefined;
    // curl gave up (its --max-time): what still runs for it is abandoned, as on a WebSocket close.
    res.once('close', () => void caller?.close());
    const r = await runHook(name, HOOKS[name]!, env, {
      config: hookConfig,
      connect: async (config) => (caller = localCaller(server, config, hookLog)),
    });
    hookLog.info({ status: r.status, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'hook');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`${r.status}\n${r.out}`);
  };
}
