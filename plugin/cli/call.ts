/**
 * `kvm-devices call`: one JSON-RPC call to the daemon.
 * The result goes to stdout; an RPC error object goes to stderr with exit 1.
 * Exact JSON with `--json` or when stdout is not a terminal; an indented
 * rendering (and a method table for `rpc.discover`) for people otherwise.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config';
// The client module alone: loading the daemon side (planner, ajv, pino) would
// add ~100 ms to every call and hook run.
import { RpcCallError, RpcClient } from '../rpc/client';
import type { Command } from './commands';

const HELP = `usage: kvm-devices call [--socket PATH] [--config FILE] [--json] [--timeout MS]
                        METHOD [PARAMS-JSON | -]

Makes one JSON-RPC call to the daemon and prints the result.

  METHOD            e.g. instance.plan, runtime.get, rpc.discover (lists them all)
  PARAMS-JSON       the params object, e.g. '{"name":"inst1"}'; "-" reads it from stdin
  --socket PATH     daemon socket (default from the config)
  --config FILE     JSON config file
  --json            exact JSON output even on a terminal
  --timeout MS      give up waiting for the answer after MS milliseconds

Notifications the daemon sends during the call (e.g. migration.progress) are
shown on stderr.

Exit status: 0 success, 1 the daemon answered with an error or is unreachable,
2 usage error.
`;

export const callCommand: Command = {
  summary: 'make one JSON-RPC call to the daemon',
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args, allowPositionals: true,
        options: {
          socket: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' },
          timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' },
        },
      });
    } catch (e) {
      return usageError((e as Error).message);
    }
    const { values, positionals } = parsed;
    if (values.help === true) {
      process.stdout.write(HELP);
      return 0;
    }
    const [method, paramsText, ...extra] = positionals;
    if (method === undefined) return usageError('METHOD is required');
    if (extra.length > 0) return usageError(`unexpected argument "${extra[0]}"`);
    let params: Record<string, unknown> = {};
    if (paramsText !== undefined) {
      try {
        const text = paramsText === '-' ? readFileSync(0, 'utf8') : paramsText;
        const v: unknown = JSON.parse(text);
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return usageError('PARAMS-JSON must be a JSON object');
        params = v as Record<string, unknown>;
      } catch (e) {
        return usageError(`PARAMS-JSON is not valid JSON: ${(e as Error).message}`);
      }
    }
    const timeout = values.timeout === undefined ? 0 : Number(values.timeout);
    if (!Number.isInteger(timeout) || timeout < 0) return usageError('--timeout must be a whole number of milliseconds');
    let socket: string;
    try {
      socket = loadConfig({
        ...(values.config === undefined ? {} : { file: values.config }),
        overrides: { socket: values.socket },
      }).socket;
    } catch (e) {
      return usageError((e as Error).message);
    }
    const human = values.json !== true && process.stdout.isTTY === true;
    let client: RpcClient;
    try {
      client = await RpcClient.connect(socket, { callTimeoutMs: timeout });
    } catch (e) {
      process.stderr.write(`kvm-devices call: ${(e as Error).message}\n`);
      return 1;
    }
    client.on('notification', (m: string, p: unknown) => {
      process.stderr.write(human ? `${m}: ${JSON.stringify(p)}\n` : `${JSON.stringify({ method: m, params: p })}\n`);
    });
    try {
      const result = await client.call(method, params);
      process.stdout.write(human ? render(method, result) : `${JSON.stringify(result)}\n`);
      return 0;
    } catch (e) {
      if (e instanceof RpcCallError) {
        process.stderr.write(human ? renderError(e) : `${JSON.stringify(e.toJSON())}\n`);
      } else {
        process.stderr.write(`kvm-devices call: ${(e as Error).message}\n`);
      }
      return 1;
    } finally {
      await client.close();
    }
  },
};

function usageError(message: string): number {
  process.stderr.write(`kvm-devices call: ${message}\n\n${HELP}`);
  return 2;
}

/** A readable rendering for a terminal. */
function render(method: string, result: unknown): string {
  if (method === 'rpc.discover' && result !== null && typeof result === 'object') {
    const methods = (result as { methods?: { name: string; summary: string }[] }).methods ?? [];
    const w = Math.max(...methods.map((m) => m.name.length), 6);
    return `${'METHOD'.padEnd(w)}  SUMMARY\n${methods.map((m) => `${m.name.padEnd(w)}  ${m.summary}`).join('\n')}\n`;
  }
  return `${JSON.stringify(result, null, 2)}\n`;
}

function renderError(e: RpcCallError): string {
  const data = e.data as { code?: string; errors?: { path: string; message: string }[] } | undefined;
  const name = typeof data?.code === 'string' ? ` ${data.code}` : '';
  const lines = [`error ${e.code}${name}: ${e.message}`];
  for (const x of data?.errors ?? []) lines.push(`  ${x.path || '/'}: ${x.message}`);
  return `${lines.join('\n')}\n`;
}
