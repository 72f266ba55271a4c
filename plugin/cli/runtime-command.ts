/**
 * `kvm-devices runtime detect|validate|convert|upgrade-all|downgrade-all`:
 * runtime files from the command line (interface.md section 4).
 * Exit status: 0 success, 1 refused or failed (stderr names the device or
 * field), 2 usage error.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { GkdError, isGkdError } from '../errors';
import {
  type BulkFileResult,
  type RuntimeChange,
  STORE_DEFAULTS,
  convertAll,
  convertRuntime,
  detectFormat,
  isRuntimeFormatId,
  parseRuntime,
  readTextFile,
  runtimeIssues,
  serializeRuntime,
} from '../runtime';
import type { Command } from './commands';

const FORMATS = '2.9, 2.10 or 2.16';

const HELP: Record<string, string> = {
  '': `usage: kvm-devices runtime SUBCOMMAND [ARGS]   (SUBCOMMAND --help for details)

  detect FILE                 print the format of a runtime file (2.9, 2.10, 2.16)
  validate FILE               check a runtime file against its format's schema
  convert --to ID FILE        print the runtime file converted to format ID
  upgrade-all --to ID DIR     convert every runtime file in DIR to format ID, in place
  downgrade-all --to ID DIR   the same, towards an older format

FILE may be "-" for standard input.
Exit status: 0 success, 1 refused or failed, 2 usage error.
`,
  detect: `usage: kvm-devices runtime detect FILE|-

Prints the format id of the runtime file, read from its shape: 2.9
([kvm_cmd, nics, hvparams]), 2.10 (devices carry an integer "pci") or 2.16
(devices carry "hvinfo"). Does not validate; see "validate".
Exit status: 0 detected, 1 unreadable or no format matches, 2 usage.
`,
  validate: `usage: kvm-devices runtime validate FILE|-

Checks the runtime file against the JSON Schema of its detected format
(schemas/runtime/<id>.schema.json). Prints "valid <id>" or, on standard
error, each problem with its place (e.g. disks[0].hvinfo).
Exit status: 0 valid, 1 invalid or unreadable, 2 usage.
`,
  convert: `usage: kvm-devices runtime convert --to ID [--allow-id-change] [--force] FILE|-

Prints the runtime file converted to format ID (${FORMATS}) as Ganeti writes
it: one line of JSON. Upgrades never lose information. A downgrade that
would lose information is refused, naming each device and what format ID
can't express.

  --to ID             target format (required)
  --allow-id-change   accept that 2.10 renames a device to its PCI-era id
                      (hotdisk-<uuid>-pci-<slot>); the older release then can't
                      hot-remove it until the instance restarts or migrates
  --force             drop what the target can't express (implies
                      --allow-id-change); every drop is listed on standard error

Exit status: 0 converted, 1 refused, invalid or unreadable, 2 usage.
`,
  'upgrade-all': `usage: kvm-devices runtime upgrade-all --to ID [--dry-run] [--lock-wait MS] DIR

Converts every <instance>.runtime file in DIR to format ID, file by file,
each under its instance lock and written atomically (keeping owner and
mode). A file that is unreadable, invalid, already newer than ID or locked
is reported and left untouched; the others proceed. Prints one line per
file: converted, unchanged, refused or error.

  --to ID          target format (required)
  --dry-run        write nothing; say what would happen
  --lock-wait MS   how long to wait for a busy instance lock (default 10000)
  --json           print the report as one JSON object instead

Exit status: 0 every file converted or unchanged, 1 otherwise, 2 usage.
`,
  'downgrade-all': `usage: kvm-devices runtime downgrade-all --to ID [--dry-run] [--allow-id-change] [--force] [--lock-wait MS] DIR

Like upgrade-all, towards an older format: a file that would lose
information is refused (reported with each device and what format ID
can't express) and left untouched. "--dry-run" answers "can this node
downgrade?" without writing anything.

  --to ID             target format (required)
  --dry-run           write nothing; say what would happen
  --allow-id-change   accept PCI-era id renames (see "convert --help")
  --force             drop what the target can't express; every drop is listed
  --lock-wait MS      how long to wait for a busy instance lock (default 10000)
  --json              print the report as one JSON object instead

Exit status: 0 every file converted or unchanged, 1 otherwise, 2 usage.
`,
};

class UsageError extends Error {}

function say(stream: NodeJS.WriteStream, text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function readInput(file: string): Promise<unknown> {
  // A file named on the command line may be a symlink: the user chose it.
  const text = file === '-' ? await readStdin() : (await readTextFile(file, { maxBytes: STORE_DEFAULTS.maxBytes, followSymlinks: true })).text;
  return parseRuntime(text);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    // Too much input is a refused input (exit 1), not a usage error (exit 2), as for a file over the cap.
    if (size > STORE_DEFAULTS.maxBytes) {
      throw new GkdError('GKD_RUNTIME_IO', `Cannot read standard input: it is over the ${STORE_DEFAULTS.maxBytes / (1024 * 1024)} MiB limit`, { field: 'path', data: { path: '-', maxBytes: STORE_DEFAULTS.maxBytes } });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeChange(c: RuntimeChange): string {
  return `note: ${c.field}: ${c.detail}`;
}

function bulkLine(r: BulkFileResult, dryRun: boolean): string {
  const step = r.from === undefined ? `-> ${r.to}` : `${r.from} -> ${r.to}`;
  const verb = dryRun && r.status === 'converted' ? 'would convert' : r.status;
  const tail = r.message === undefined ? '' : `: ${r.message}`;
  const notes = r.changes.map((c) => `\n  ${describeChange(c)}`).join('');
  return `${r.name}: ${verb} (${r.from === r.to ? r.to : step})${tail}${notes}\n`;
}

type Values = Record<string, string | boolean | undefined>;
type OptionSpec = Record<string, { type: 'string' | 'boolean' }>;

const STR = { type: 'string' } as const;
const BOOL = { type: 'boolean' } as const;

/** Options of each subcommand. */
const SUB_OPTIONS: Record<string, OptionSpec> = {
  detect: {},
  validate: {},
  convert: { to: STR, force: BOOL, 'allow-id-change': BOOL },
  'upgrade-all': { to: STR, 'dry-run': BOOL, 'lock-wait': STR, json: BOOL },
  'downgrade-all': { to: STR, 'dry-run': BOOL, force: BOOL, 'allow-id-change': BOOL, 'lock-wait': STR, json: BOOL },
};

function parse(sub: string, args: string[]): { values: Values; positional: string } {
  const options = SUB_OPTIONS[sub];
  const parsed = parseArgs({ args, allowPositionals: true, options: { ...options, help: { type: 'boolean', short: 'h' } } });
  const values = parsed.values as Values;
  if (values.help === true) return { values, positional: '' };
  const what = sub.endsWith('-all') ? 'DIR' : 'FILE';
  if (parsed.positionals.length !== 1) throw new UsageError(`${sub} takes exactly one ${what}, got ${parsed.positionals.length}`);
  if ('to' in options) {
    if (values.to === undefined) throw new UsageError(`${sub} needs --to ID (${FORMATS})`);
    if (!isRuntimeFormatId(values.to)) throw new UsageError(`unknown format "${String(values.to)}": use ${FORMATS}`);
  }
  return { values, positional: parsed.positionals[0] };
}

async function run(sub: string, args: string[]): Promise<number> {
  const { values, positional } = parse(sub, args);
  if (values.help === true) {
    say(process.stdout, HELP[sub]);
    return 0;
  }
  const to = values.to as '2.9' | '2.10' | '2.16';
  switch (sub) {
    case 'detect':
      say(process.stdout, detectFormat(await readInput(positional)));
      return 0;
    case 'validate': {
      const value = await readInput(positional);
      const format = detectFormat(value);
      const issues = runtimeIssues(value, format);
      if (issues.length === 0) {
        say(process.stdout, `valid ${format}`);
        return 0;
      }
      say(process.stderr, `kvm-devices runtime validate: "${positional}" is not valid ${format}:`);
      for (const i of issues) say(process.stderr, `  ${i.field}: ${i.message}`);
      return 1;
    }
    case 'convert': {
      const r = convertRuntime(await readInput(positional), to, {
        uuid: randomUUID,
        force: values.force === true,
        allowIdChange: values['allow-id-change'] === true,
      });
      process.stdout.write(serializeRuntime(r.value));
      for (const c of r.changes) say(process.stderr, describeChange(c));
      return 0;
    }
    default: {
      const wait = values['lock-wait'] === undefined ? undefined : Number(values['lock-wait']);
      if (wait !== undefined && !(Number.isInteger(wait) && wait >= 0)) throw new UsageError(`--lock-wait takes milliseconds, got "${String(values['lock-wait'])}"`);
      const dryRun = values['dry-run'] === true;
      const json = values.json === true;
      const report = await convertAll(positional, {
        to,
        direction: sub === 'upgrade-all' ? 'upgrade' : 'downgrade',
        dryRun,
        force: values.force === true,
        allowIdChange: values['allow-id-change'] === true,
        ...(wait === undefined ? {} : { lock: { wait } }),
        onFile: (r) => {
          if (!json) process.stdout.write(bulkLine(r, dryRun));
        },
      });
      if (json) say(process.stdout, JSON.stringify(report));
      else {
        const c = report.counts;
        const n = report.files.length;
        say(
          process.stderr,
          `${dryRun ? 'dry run: ' : ''}${n} file${n === 1 ? '' : 's'}: ${c.converted} ${dryRun ? 'would convert' : 'converted'}, ${c.unchanged} unchanged, ${c.refused} refused, ${c.error} failed`,
        );
      }
      return report.ok ? 0 : 1;
    }
  }
}

/** The `runtime` command. */
export const runtimeCommand: Command = {
  summary: 'runtime files: detect, validate, convert, upgrade-all, downgrade-all',
  async run(args) {
    const [sub, ...rest] = args;
    if (sub === undefined || sub === '--help' || sub === '-h') {
      say(sub === undefined ? process.stderr : process.stdout, HELP['']);
      return sub === undefined ? 2 : 0;
    }
    if (!(sub in SUB_OPTIONS)) {
      say(process.stderr, `kvm-devices runtime: unknown subcommand "${sub}"\n\n${HELP['']}`);
      return 2;
    }
    try {
      return await run(sub, rest);
    } catch (e) {
      if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
        say(process.stderr, `kvm-devices runtime ${sub}: ${(e as Error).message}\n\n${HELP[sub]}`);
        return 2;
      }
      if (isGkdError(e)) {
        say(process.stderr, `kvm-devices runtime ${sub}: ${e.message}`);
        return 1;
      }
      const err = e as NodeJS.ErrnoException;
      say(process.stderr, `kvm-devices runtime ${sub}: ${err.code === undefined ? err.message : `${err.code}: ${err.message}`}`);
      return 1;
    }
  },
};
