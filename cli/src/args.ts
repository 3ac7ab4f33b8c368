/**
 * Command-line arguments: `--name value`, `--name=value`, boolean `--flag`, repeatable
 * options, and positionals, checked against each command's declared options. Anything else is
 * a `CliError` with exit code 1 (usage).
 */

/** Exit codes (cli/README.md): 0 done, 1 usage, 2 refused, 3 network, 4 local storage. */
export type ExitCode = 1 | 2 | 3 | 4;

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    /** A stable, machine-readable code (cli/README.md lists them). */
    readonly code: string,
    message: string,
    readonly exit: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function usage(message: string): CliError {
  return new CliError('usage', message, 1);
}

export interface OptionSpec {
  /** `string` takes a value; `flag` does not; `list` takes a value and may repeat. */
  readonly type: 'string' | 'flag' | 'list';
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export interface Parsed {
  readonly positionals: string[];
  readonly strings: Map<string, string>;
  readonly flags: Set<string>;
  readonly lists: Map<string, string[]>;
}

/** Parses `argv` against `specs`; stops taking options after `--`. */
export function parseArgs(argv: readonly string[], specs: OptionSpecs): Parsed {
  const out: Parsed = { positionals: [], strings: new Map(), flags: new Set(), lists: new Map() };
  let rest = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (rest || !a.startsWith('--') || a === '--') {
      if (a === '--' && !rest) {
        rest = true;
        continue;
      }
      out.positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
    const spec = specs[name];
    if (spec === undefined) throw usage(`unknown option --${name}`);
    if (spec.type === 'flag') {
      if (eq !== -1) throw usage(`--${name} takes no value`);
      out.flags.add(name);
      continue;
    }
    let value: string;
    if (eq !== -1) value = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw usage(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (spec.type === 'list') {
      const l = out.lists.get(name) ?? [];
      l.push(value);
      out.lists.set(name, l);
    } else {
      if (out.strings.has(name)) throw usage(`--${name} given twice`);
      out.strings.set(name, value);
    }
  }
  return out;
}

const UNITS: Readonly<Record<string, number>> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** A duration like `90s`, `10m`, `2h`, `7d`, `1w` (a bare number is seconds), in milliseconds. */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d{1,9})([smhdw]?)$/.exec(text.trim());
  if (m === null) throw usage(`${what}: "${text}" is not a duration (like 30s, 10m, 2h, 7d, 1w)`);
  const n = Number(m[1]);
  const ms = n * (UNITS[m[2] === '' || m[2] === undefined ? 's' : m[2]] ?? 1000);
  if (!Number.isSafeInteger(ms)) throw usage(`${what}: "${text}" is too long`);
  return ms;
}

/** A non-negative whole number no larger than `max`. */
export function parseCount(text: string, what: string, max = 1_000_000): number {
  if (!/^\d{1,9}$/.test(text)) throw usage(`${what}: "${text}" is not a whole number`);
  const n = Number(text);
  if (n > max) throw usage(`${what}: at most ${max}`);
  return n;
}

/** Seconds to wait, as given to `--wait`: a duration or a bare number of seconds, at most a day. */
export function parseWait(text: string | undefined, fallbackMs: number): number {
  if (text === undefined) return fallbackMs;
  const ms = parseDuration(text, '--wait');
  if (ms > 86_400_000) throw usage('--wait: at most a day');
  return ms;
}
