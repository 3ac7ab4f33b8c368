import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, type ConfigErrorCode, parseConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'conclave-relay-config-'));
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const refused = (argv: readonly string[], env: Record<string, string> = {}): ConfigErrorCode => {
  try {
    parseConfig(argv, env);
  } catch (e) {
    if (e instanceof ConfigError) return e.code;
    throw e;
  }
  throw new Error(`accepted: ${argv.join(' ')}`);
};

describe('relay configuration', () => {
  it('has working defaults', () => {
    const c = parseConfig([], {});
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/9090/ws']);
    expect(c.retentionMs).toBe(30 * 86_400_000);
    expect(c.maxMailboxBytes).toBe(256 * 2 ** 20);
    expect(c.pingEveryMs).toBe(30_000);
    expect(c.replicas).toBe(2);
    expect(c.http).toBeUndefined();
  });

  it('takes a flag over its environment variable, and the variable over the config file', () => {
    const cfg = file('a.json', JSON.stringify({ 'ping-every': '2m', retention: '7d', replicas: 3 }));
    const c = parseConfig(['--ping-every', '5s', '--config', cfg], {
      CONCLAVE_RELAY_PING_EVERY: '10s',
      CONCLAVE_RELAY_RETENTION: '12h',
    });
    expect(c.pingEveryMs).toBe(5_000);
    expect(c.retentionMs).toBe(12 * 3_600_000);
    expect(c.replicas).toBe(3);
    expect(parseConfig(['--http=127.0.0.1:0', '--rate-bytes', '8MiB'], {})).toMatchObject({
      http: { host: '127.0.0.1', port: 0 },
      rateBytesPerSec: 8 * 2 ** 20,
    });
  });

  it('refuses bad input with a typed error', () => {
    expect(refused(['--nope', 'x'])).toBe('unknown-flag');
    expect(refused(['stray'])).toBe('unknown-flag');
    expect(refused(['--retention'])).toBe('missing-value');
    expect(refused(['--retention='])).toBe('missing-value');
    expect(refused(['--ping-every', '0s'])).toBe('bad-value');
    expect(refused(['--ping-every', 'soon'])).toBe('bad-value');
    expect(refused([], { CONCLAVE_RELAY_PING_EVERY: '30' })).toBe('bad-value');
    expect(refused(['--retention', '1d', '--retention', '2d'])).toBe('bad-value');
    expect(refused(['--max-mailbox-bytes', '12 parsecs'])).toBe('bad-value');
    expect(refused(['--replicas', '17'])).toBe('bad-value');
    expect(refused(['--http', 'localhost'])).toBe('bad-value');
    expect(refused(['--http', '127.0.0.1:70000'])).toBe('bad-value');
    expect(refused(['--listen', 'not a multiaddr'])).toBe('bad-value');
    expect(refused(['--bootstrap', '/ip4/127.0.0.1/tcp/1/ws'])).toBe('bad-value');
    expect(refused(['--log-level', 'loud'])).toBe('bad-value');
    expect(refused(['--backbone-signing', 'some'])).toBe('bad-value');
    expect(refused(['--config', file('b.json', '{ not json')])).toBe('bad-file');
    expect(refused(['--config', file('c.json', '[1, 2]')])).toBe('bad-file');
    expect(refused(['--config', file('d.json', '{"colour": "red"}')])).toBe('bad-file');
    expect(refused(['--config', file('e.json', '{"retention": {"days": 3}}')])).toBe('bad-file');
    expect(refused(['--config', join(dir, 'missing.json')])).toBe('bad-file');
  });
});
