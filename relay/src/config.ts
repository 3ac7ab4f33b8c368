/**
 * The relay's configuration: command-line flags, each with an environment variable, and an
 * optional JSON config file. Precedence: flag, then environment, then file, then default.
 * Every value is checked here; a bad one is a `ConfigError` naming the flag, and the relay
 * does not start.
 */
import { readFileSync } from 'node:fs';
import { multiaddr } from '@multiformats/multiaddr';

export interface RelayConfig {
  /** libp2p listen multiaddrs, e.g. `/ip4/127.0.0.1/tcp/9090/ws`. */
  readonly listen: readonly string[];
  /** Folder for the identity key and the store. */
  readonly dataDir: string;
  /** Other relays (multiaddrs with `/p2p/<id>`) to join the DHT and the gossip backbone through. */
  readonly bootstrap: readonly string[];
  /** `host:port` of the HTTP server for `/healthz` and `/metrics`; undefined: none. */
  readonly http: { readonly host: string; readonly port: number } | undefined;
  /** Milliseconds a mailbox message is kept. */
  readonly retentionMs: number;
  /** Bytes kept per mailbox; the oldest messages go first beyond it. */
  readonly maxMailboxBytes: number;
  /** Bytes of blob chunks one peer may store. */
  readonly blobQuotaPerPeer: number;
  /** Bytes of blob chunks the relay stores in all. */
  readonly blobStoreBytes: number;
  /** Requests per second one peer may send (sustained; bursts up to twice that). */
  readonly rateRequestsPerSec: number;
  /** Payload bytes per second one peer may send (sustained; bursts up to twice that). */
  readonly rateBytesPerSec: number;
  /** Relays each append and blob is stored on, counting this one (chosen by DHT distance). */
  readonly replicas: number;
  /** Connections the relay keeps open at most. */
  readonly maxConnections: number;
  /** Circuit-relay reservations the relay grants at most. */
  readonly maxReservations: number;
  /** pino level. */
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Folder of the built web app to serve over HTTP, if any. */
  readonly webRoot: string | undefined;
  /**
   * Backbone gossip signatures: `none` (StrictNoSign, content-addressed ids: the default, see
   * ARCHITECTURE.md section 8) or `strict` (each message signed by the relay; kept to measure).
   */
  readonly backboneSigning: 'none' | 'strict';
  /** Milliseconds between two pings of one connection (each connection at its own time). */
  readonly pingEveryMs: number;
}

export type ConfigErrorCode = 'unknown-flag' | 'missing-value' | 'bad-value' | 'bad-file';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly code: ConfigErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface FlagSpec {
  readonly env: string;
  readonly repeatable?: boolean;
  readonly help: string;
}

const FLAGS = {
  listen: { env: 'CONCLAVE_RELAY_LISTEN', repeatable: true, help: 'listen multiaddr (repeatable)' },
  data: { env: 'CONCLAVE_RELAY_DATA', help: 'data folder' },
  bootstrap: {
    env: 'CONCLAVE_RELAY_BOOTSTRAP',
    repeatable: true,
    help: 'another relay to join (repeatable)',
  },
  http: { env: 'CONCLAVE_RELAY_HTTP', help: 'host:port for /healthz, /metrics and the web app' },
  retention: { env: 'CONCLAVE_RELAY_RETENTION', help: 'how long mailbox messages are kept (e.g. 30d)' },
  'max-mailbox-bytes': {
    env: 'CONCLAVE_RELAY_MAX_MAILBOX_BYTES',
    help: 'bytes kept per mailbox (e.g. 256MiB)',
  },
  'blob-quota': { env: 'CONCLAVE_RELAY_BLOB_QUOTA', help: 'blob bytes per peer (e.g. 1GiB)' },
  'blob-store': { env: 'CONCLAVE_RELAY_BLOB_STORE', help: 'blob bytes in all (e.g. 20GiB)' },
  'rate-requests': { env: 'CONCLAVE_RELAY_RATE_REQUESTS', help: 'requests per second per peer' },
  'rate-bytes': { env: 'CONCLAVE_RELAY_RATE_BYTES', help: 'bytes per second per peer (e.g. 8MiB)' },
  replicas: { env: 'CONCLAVE_RELAY_REPLICAS', help: 'relays holding each mailbox and blob' },
  'max-connections': { env: 'CONCLAVE_RELAY_MAX_CONNECTIONS', help: 'open connections at most' },
  'max-reservations': { env: 'CONCLAVE_RELAY_MAX_RESERVATIONS', help: 'circuit reservations at most' },
  'log-level': { env: 'CONCLAVE_RELAY_LOG_LEVEL', help: 'fatal|error|warn|info|debug|trace|silent' },
  'web-root': { env: 'CONCLAVE_RELAY_WEB_ROOT', help: 'folder of the built web app to serve' },
  'backbone-signing': { env: 'CONCLAVE_RELAY_BACKBONE_SIGNING', help: 'none (default) or strict' },
  'ping-every': {
    env: 'CONCLAVE_RELAY_PING_EVERY',
    help: 'how often each connection is pinged; no answer closes it (e.g. 30s)',
  },
  config: { env: 'CONCLAVE_RELAY_CONFIG', help: 'JSON file with any of these settings (flag names as keys)' },
} as const satisfies Record<string, FlagSpec>;

type Flag = keyof typeof FLAGS;

export function usage(): string {
  const lines = [
    'Usage: npm run relay -- [flags]',
    '',
    'Flags (each also read from its environment variable):',
  ];
  for (const [name, spec] of Object.entries(FLAGS) as [Flag, FlagSpec][]) {
    lines.push(`  --${name.padEnd(18)} ${spec.env.padEnd(34)} ${spec.help}`);
  }
  return lines.join('\n');
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};
const DURATIONS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function bytes(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m?.[2]?.toLowerCase() ?? '';
  const scale = UNITS[unit];
  if (m?.[1] === undefined || scale === undefined)
    throw new ConfigError('bad-value', `--${flag}: not a size: ${v}`);
  const n = Math.floor(Number(m[1]) * scale);
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError('bad-value', `--${flag}: out of range: ${v}`);
  return n;
}

function duration(flag: string, v: string): number {
  const m = /^(\d+)\s*(ms|s|m|h|d)$/.exec(v.trim());
  const scale = DURATIONS[m?.[2] ?? ''];
  if (m?.[1] === undefined || scale === undefined) {
    throw new ConfigError('bad-value', `--${flag}: not a duration (like 90s, 12h, 30d): ${v}`);
  }
  const n = Number(m[1]) * scale;
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError('bad-value', `--${flag}: out of range: ${v}`);
  return n;
}

function integer(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v.trim())) throw new ConfigError('bad-value', `--${flag}: not a whole number: ${v}`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError('bad-value', `--${flag}: must be ${min} to ${max}: ${v}`);
  return n;
}

function address(flag: string, v: string, needPeer: boolean): string {
  let ma;
  try {
    ma = multiaddr(v);
  } catch {
    throw new ConfigError('bad-value', `--${flag}: not a multiaddr: ${v}`);
  }
  if (needPeer && !ma.getComponents().some((c) => c.name === 'p2p')) {
    throw new ConfigError('bad-value', `--${flag}: needs /p2p/<peer id>: ${v}`);
  }
  return v;
}

function hostPort(flag: string, v: string): { host: string; port: number } {
  const m = /^([^:]+|\[[0-9a-f:]+\]):(\d+)$/i.exec(v.trim());
  if (m?.[1] === undefined || m[2] === undefined)
    throw new ConfigError('bad-value', `--${flag}: expected host:port: ${v}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: integer(flag, m[2], 0, 65535) };
}

function signing(v: string): 'none' | 'strict' {
  if (v !== 'none' && v !== 'strict')
    throw new ConfigError('bad-value', `--backbone-signing: none or strict: ${v}`);
  return v;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Parses flags, environment and config file into a checked configuration. */
export function parseConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): RelayConfig {
  const flags = new Map<Flag, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) throw new ConfigError('unknown-flag', `unexpected argument: ${arg}`);
    const eq = arg.indexOf('=');
    const name = (eq < 0 ? arg.slice(2) : arg.slice(2, eq)) as Flag;
    if (!(name in FLAGS)) throw new ConfigError('unknown-flag', `unknown flag --${name}`);
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined || value === '')
      throw new ConfigError('missing-value', `--${name} needs a value`);
    const spec: FlagSpec = FLAGS[name];
    const list = flags.get(name) ?? [];
    if (list.length > 0 && spec.repeatable !== true)
      throw new ConfigError('bad-value', `--${name} given twice`);
    list.push(value);
    flags.set(name, list);
  }

  let file: Record<string, unknown> = {};
  const configPath = flags.get('config')?.[0] ?? env[FLAGS.config.env];
  if (configPath !== undefined && configPath !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (e) {
      throw new ConfigError(
        'bad-file',
        `--config ${configPath}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError('bad-file', `--config ${configPath}: expected a JSON object`);
    }
    file = parsed as Record<string, unknown>;
    for (const key of Object.keys(file)) {
      if (!(key in FLAGS) || key === 'config')
        throw new ConfigError('bad-file', `--config: unknown setting ${key}`);
    }
  }

  const values = (name: Flag): string[] | undefined => {
    const fromFlag = flags.get(name);
    if (fromFlag !== undefined) return fromFlag;
    const fromEnv = env[FLAGS[name].env];
    if (fromEnv !== undefined && fromEnv !== '')
      return fromEnv
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    const fromFile = file[name];
    if (fromFile === undefined) return undefined;
    const list = Array.isArray(fromFile) ? (fromFile as unknown[]) : [fromFile];
    return list.map((v) => {
      if (typeof v !== 'string' && typeof v !== 'number') {
        throw new ConfigError('bad-file', `--config: ${name} must be a string or number`);
      }
      return String(v);
    });
  };
  const one = (name: Flag): string | undefined => values(name)?.[0];

  const level = one('log-level') ?? 'info';
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError('bad-value', `--log-level: one of ${LEVELS.join(', ')}: ${level}`);
  }
  const httpValue = one('http');
  return {
    listen: (values('listen') ?? ['/ip4/127.0.0.1/tcp/9090/ws']).map((v) => address('listen', v, false)),
    dataDir: one('data') ?? './.conclave/relay',
    bootstrap: (values('bootstrap') ?? []).map((v) => address('bootstrap', v, true)),
    http: httpValue === undefined ? undefined : hostPort('http', httpValue),
    retentionMs: duration('retention', one('retention') ?? '30d'),
    maxMailboxBytes: bytes('max-mailbox-bytes', one('max-mailbox-bytes') ?? '256MiB'),
    blobQuotaPerPeer: bytes('blob-quota', one('blob-quota') ?? '1GiB'),
    blobStoreBytes: bytes('blob-store', one('blob-store') ?? '20GiB'),
    rateRequestsPerSec: integer('rate-requests', one('rate-requests') ?? '5000', 1, 1_000_000),
    rateBytesPerSec: bytes('rate-bytes', one('rate-bytes') ?? '16MiB'),
    replicas: integer('replicas', one('replicas') ?? '2', 1, 16),
    maxConnections: integer('max-connections', one('max-connections') ?? '4096', 1, 1_000_000),
    maxReservations: integer('max-reservations', one('max-reservations') ?? '1024', 0, 1_000_000),
    logLevel: level as RelayConfig['logLevel'],
    webRoot: one('web-root'),
    backboneSigning: signing(one('backbone-signing') ?? 'none'),
    pingEveryMs: duration('ping-every', one('ping-every') ?? '30s'),
  };
}
