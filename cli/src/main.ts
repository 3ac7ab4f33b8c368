/**
 * `conclave [--home DIR] [--relay MULTIADDR]… COMMAND … [--json]`: parses the global options,
 * runs one command, prints its result (text, or one JSON document with `--json`) and exits with
 * the documented code. Errors go to stderr as text, or as `{"error": {"code", "message"}}` on
 * stdout with `--json`.
 */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { isRelayAddress } from '../../shared/src/net/libp2p.js';
import { CliError, parseArgs, usage } from './args.js';
import { COMMANDS, type Command, type Context, asCliError, findCommand } from './commands.js';
import { Home, type PassphraseSource, homeDir } from './home.js';

const GLOBAL = {
  home: { type: 'string' },
  relay: { type: 'list' },
  json: { type: 'flag' },
  'no-passphrase': { type: 'flag' },
  help: { type: 'flag' },
} as const;

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'conclave — the Conclave client on the command line',
    '',
    'usage: conclave [--home DIR] [--relay MULTIADDR]... COMMAND ... [--json]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'global options:',
    '  --home DIR          the identity’s folder (default $CONCLAVE_HOME, else ~/.conclave)',
    '  --relay MULTIADDR   a relay to use (repeatable; default $CONCLAVE_RELAYS, else the home’s config.json)',
    '  --json              print one JSON document (errors as {"error": {"code", "message"}})',
    '  --no-passphrase     create or use an identity without a passphrase (test homes only)',
    '  --help              this text; "conclave COMMAND --help" for a command',
    '',
    'exit codes: 0 done, 1 usage, 2 refused, 3 network, 4 local storage',
    'passphrase: $CONCLAVE_PASSPHRASE, or asked on a terminal',
  ].join('\n');
}

function commandHelp(c: Command): string {
  const opts = Object.keys(c.options);
  return [
    `usage: conclave ${c.name}${c.args === '' ? '' : ` ${c.args}`} [--json]`,
    '',
    c.summary,
    ...(c.help === undefined ? [] : ['', c.help]),
    ...(opts.length === 0 ? [] : ['', `options: ${opts.map((o) => `--${o}`).join(' ')}`]),
    '',
    'see "conclave --help" for the global options and exit codes',
  ].join('\n');
}

/** Asks on the terminal without echo; `undefined` when stdin is not a terminal. */
async function ask(question: string): Promise<string | undefined> {
  if (!process.stdin.isTTY) return undefined;
  let muted = false;
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output: out, terminal: true });
  try {
    const answer = new Promise<string>((resolve) => {
      rl.question(question, resolve);
    });
    muted = true;
    const a = await answer;
    process.stderr.write('\n');
    return a;
  } finally {
    rl.close();
  }
}

function passphrases(env: NodeJS.ProcessEnv): PassphraseSource {
  return {
    async get(purpose) {
      const fromEnv =
        purpose === 'backup'
          ? (env.CONCLAVE_BACKUP_PASSPHRASE ?? env.CONCLAVE_PASSPHRASE)
          : env.CONCLAVE_PASSPHRASE;
      if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
      const first = await ask(purpose === 'backup' ? 'Backup passphrase: ' : 'Passphrase: ');
      if (first === undefined || first === '') return undefined;
      if (purpose === 'unlock') return first;
      const again = await ask('Again: ');
      if (again !== first) throw new CliError('usage', 'the two passphrases differ', 1);
      return first;
    },
  };
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const dashdash = argv.indexOf('--');
  const json = (dashdash === -1 ? argv : argv.slice(0, dashdash)).includes('--json');
  try {
    // Global options may come anywhere; the words before the command's own options name it.
    const wordAt: number[] = [];
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i] as string;
      const name = a.startsWith('--') ? (a.slice(2).split('=')[0] ?? '') : undefined;
      if (name === undefined) {
        wordAt.push(i);
        continue;
      }
      const g = (GLOBAL as Record<string, { type: string } | undefined>)[name];
      if (g === undefined) {
        if (wordAt.length === 0)
          throw usage(`unknown option --${name} (options of a command come after its name)`);
        break;
      }
      if (g.type !== 'flag' && !a.includes('=')) i++;
    }
    const words = wordAt.map((i) => argv[i] as string);
    const found = findCommand(words);
    if (found === undefined) {
      if (words.length === 0 && (argv.includes('--help') || argv.length === 0)) {
        process.stdout.write(`${mainHelp()}\n`);
        return argv.length === 0 ? 1 : 0;
      }
      throw usage(
        words.length === 0
          ? 'no command given (see conclave --help)'
          : `unknown command "${words.slice(0, 2).join(' ')}"`,
      );
    }
    const { command } = found;
    const nameAt = new Set(wordAt.slice(0, found.rest));
    const p = parseArgs(
      argv.filter((_, i) => !nameAt.has(i)),
      { ...GLOBAL, ...command.options },
    );
    const positionals = p.positionals;
    if (p.flags.has('help')) {
      process.stdout.write(`${commandHelp(command)}\n`);
      return 0;
    }
    const relays =
      p.lists.get('relay') ??
      (env.CONCLAVE_RELAYS ?? '')
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r !== '');
    for (const r of relays) {
      if (!isRelayAddress(r))
        throw usage(`--relay: "${r}" is not a relay multiaddr like /ip4/127.0.0.1/tcp/9090/ws/p2p/<peer id>`);
    }
    let stop: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      stop = resolve;
    });
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const ctx: Context = {
      home: new Home(homeDir(p.strings.get('home'), env)),
      relays,
      json,
      noPassphrase: p.flags.has('no-passphrase'),
      passphrases: passphrases(env),
      log: (line) => process.stdout.write(`${line}\n`),
      note: (line) => {
        if (!json) process.stderr.write(`${line}\n`);
      },
      stopped,
    };
    const result = await command.run(ctx, { ...p, positionals });
    process.stdout.write(json ? `${JSON.stringify(result.json)}\n` : `${result.text}\n`);
    return 0;
  } catch (e) {
    const err = asCliError(e);
    if (json)
      process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`);
    else process.stderr.write(`conclave: ${err.message}\n`);
    if (err.code === 'internal' && env.CONCLAVE_DEBUG === '1') console.error(e);
    return err.exit;
  }
}

const code = await main(process.argv.slice(2), process.env);
process.exitCode = code;
// libp2p may keep timers alive for a while after stopping: the command is done.
setTimeout(() => process.exit(code), 200).unref();
