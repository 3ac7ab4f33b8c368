/**
 * `conclave` given bad input, as a person or a script would give it: usage mistakes, broken,
 * expired, revoked and fabricated invite links, unknown ids, no reachable relay, a damaged or
 * busy home, wrong passphrases and bad backups. Each case checks the exit code (0 done, 1 usage,
 * 2 refused, 3 network, 4 local storage), the `--json` error code and message, and — where the
 * command is refused — that nothing in the home folder changed. Real CLI processes, one real relay.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatInviteLink, parseInviteLink } from '../../shared/src/mls/invite.js';
import type { SpaceId } from '../../shared/src/protocol/ids.js';
import { fromMultibase, toMultibase } from '../../shared/src/protocol/multibase.js';
import { type SpawnedRelay, spawnRelay, tempDir } from '../../relay/src/testing/spawn.js';
import { type CliOptions, type CliRun, conclave, snapshot } from './testing/cli.js';

interface CliErrorJson {
  readonly code: string;
  readonly message: string;
}

/** The command's `--json` result, typed as the test expects it. */
function out<T>(r: CliRun): T {
  expect(r.code, `exit ${String(r.code)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r.json as T;
}

/** Asserts a failure: its exit code, its `--json` error code and its message. */
function expectError(r: CliRun, exit: number, code: string, message: RegExp): CliErrorJson {
  const why = `stdout: ${r.stdout}\nstderr: ${r.stderr}`;
  expect(r.code, why).toBe(exit);
  const e = (r.json as { error?: CliErrorJson } | undefined)?.error;
  expect(e, why).toBeDefined();
  expect(e?.code, why).toBe(code);
  expect(e?.message, why).toMatch(message);
  return e as CliErrorJson;
}

/** Runs a command that must be refused, and checks that it wrote nothing in `home`. */
async function refused(home: string, args: readonly string[], o: CliOptions = {}): Promise<CliRun> {
  const before = snapshot(home);
  const r = await conclave(home, [...args, '--json'], o);
  expect(snapshot(home), `${args.join(' ')} changed ${home}\n${r.stdout}\n${r.stderr}`).toBe(before);
  return r;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

describe('conclave given bad input', () => {
  const relayDir = tempDir('conclave-relay-');
  const root = tempDir('conclave-bad-input-');
  const alice = join(root.dir, 'alice');
  const john = join(root.dir, 'john');
  let relay: SpawnedRelay;
  let relays: string[];
  let aliceUser = '';
  let space = '';
  let link = '';
  let inviteId = '';

  beforeAll(async () => {
    relay = await spawnRelay({ dataDir: relayDir.dir });
    relays = [relay.multiaddr];
    const created = out<{ userId: string }>(
      await conclave(alice, ['identity', 'create', '--name', 'Alice', '--no-passphrase', '--json']),
    );
    aliceUser = created.userId;
    space = out<{ spaceId: string }>(
      await conclave(alice, ['space', 'create', 'Club', '--json'], { relays }),
    ).spaceId;
    out(
      await conclave(alice, ['channel', 'create', space, 'general', '--type', 'chat', '--json'], { relays }),
    );
    const inv = out<{ inviteId: string; link: string }>(
      await conclave(alice, ['invite', 'create', space, '--json'], { relays }),
    );
    link = inv.link;
    inviteId = inv.inviteId;
    out(await conclave(john, ['identity', 'create', '--name', 'John', '--no-passphrase', '--json']));
  }, 120_000);

  afterAll(async () => {
    await relay.stop();
    relayDir.cleanup();
    root.cleanup();
  });

  describe('usage (exit 1, nothing written)', () => {
    it('no command', async () => {
      expectError(await refused(alice, []), 1, 'usage', /no command given/);
    });

    it('an unknown command', async () => {
      expectError(await refused(alice, ['frobnicate']), 1, 'usage', /unknown command "frobnicate"/);
    });

    it('an unknown option, after the command and before it', async () => {
      expectError(await refused(alice, ['space', 'list', '--bogus']), 1, 'usage', /unknown option --bogus/);
      expectError(await refused(alice, ['--bogus', 'space', 'list']), 1, 'usage', /unknown option --bogus/);
    });

    it('a missing argument', async () => {
      expectError(await refused(alice, ['space', 'create']), 1, 'usage', /missing NAME/);
    });

    it('a --relay that is not a relay multiaddr', async () => {
      const r = await refused(alice, ['space', 'list', '--relay', '/ip4/127.0.0.1/tcp/9090/ws']);
      expectError(r, 1, 'usage', /--relay: "\/ip4\/127\.0\.0\.1\/tcp\/9090\/ws" is not a relay multiaddr/);
    });

    it('--help prints the usage and exits 0', async () => {
      const before = snapshot(alice);
      const r = await conclave(alice, ['--help']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^usage: conclave /m);
      expect(r.stdout).toMatch(/exit codes: 0 done, 1 usage, 2 refused, 3 network, 4 local storage/);
      expect(snapshot(alice)).toBe(before);
    });

    it('post with too many positionals', async () => {
      const r = await refused(alice, ['post', space, 'general', 'hello', 'extra'], { relays });
      expectError(r, 1, 'usage', /unexpected argument "extra"/);
    });
  });

  describe('invite links given to join', () => {
    it('not a link at all (exit 2, nothing written)', async () => {
      const r = await refused(john, ['join', 'hello there']);
      expectError(r, 2, 'invite-not-an-invite', /not a Conclave invite link/);
    });

    it('a link with one payload character changed fails its checksum', async () => {
      const prefix = 'conclave://join/';
      expect(link.startsWith(prefix)).toBe(true);
      const payload = link.slice(prefix.length);
      const i = Math.floor(payload.length / 2);
      const changed = `${prefix}${payload.slice(0, i)}${payload[i] === 'A' ? 'B' : 'A'}${payload.slice(i + 1)}`;
      const r = await refused(john, ['join', changed]);
      expectError(r, 2, 'invite-bad-checksum', /mistyped or cut short/);
    });

    it('a truncated link', async () => {
      // Eight characters (six bytes) fewer: still valid base64url, but the checksum no longer fits.
      const r = await refused(john, ['join', link.slice(0, -8)]);
      expectError(r, 2, 'invite-bad-checksum', /mistyped or cut short/);
    });

    it('an expired link', async () => {
      const inv = out<{ link: string }>(
        await conclave(alice, ['invite', 'create', space, '--expires', '1s', '--json'], { relays }),
      );
      const parsed = parseInviteLink(inv.link);
      if (!parsed.ok) throw new Error(parsed.message);
      await sleep(parsed.link.expiresAtMs + 100 - Date.now());
      const r = await refused(john, ['join', inv.link]);
      expectError(r, 2, 'invite-expired', /expired/);
    });

    it('a revoked invite: the pending request is refused once an admin syncs', async () => {
      const pending = out<{ status: string; spaceId: string }>(
        await conclave(john, ['join', link, '--wait', '0', '--json']),
      );
      expect(pending).toMatchObject({ status: 'pending', spaceId: space });
      const revoked = out<{ inviteId: string }>(
        await conclave(alice, ['invite', 'revoke', space, inviteId, '--json'], { relays }),
      );
      expect(revoked.inviteId).toBe(inviteId);
      const synced = out<{ admitted: number }>(await conclave(alice, ['sync', '--json'], { relays }));
      expect(synced.admitted).toBe(0);
      const r = await conclave(john, ['join', link, '--wait', '10', '--json']);
      expectError(r, 2, 'invite-refused', /revoked/);
    });

    it('a fabricated link (real Space, a secret no invite has) stays pending and nobody admits it', async () => {
      const spaceId = fromMultibase(space);
      if (spaceId === undefined) throw new Error('bad space id');
      const fake = formatInviteLink({
        space: spaceId as SpaceId,
        secret: new Uint8Array(randomBytes(32)),
        relays: [relay.multiaddr],
        expiresAtMs: Date.now() + 3_600_000,
      });
      const joined = out<{ status: string }>(await conclave(john, ['join', fake, '--wait', '1', '--json']));
      expect(joined.status).toBe('pending');
      const synced = out<{ admitted: number }>(await conclave(alice, ['sync', '--json'], { relays }));
      expect(synced.admitted).toBe(0);
    });
  });

  describe('unknown ids (exit 1, nothing written)', () => {
    it('read in an unknown Space', async () => {
      const r = await refused(alice, ['read', 'NoSuchSpace', 'general']);
      expectError(r, 1, 'unknown-space', /NoSuchSpace/);
    });

    it('read in an unknown channel', async () => {
      const r = await refused(alice, ['read', space, 'nosuchchannel']);
      expectError(r, 1, 'unknown-channel', /nosuchchannel/);
    });

    it('edit of an unknown post', async () => {
      const post = toMultibase(new Uint8Array(randomBytes(16)));
      const r = await refused(alice, ['edit', space, post, 'new text']);
      expectError(r, 1, 'unknown-post', new RegExp(post));
    });
  });

  describe('no reachable relay', () => {
    it('sync fails with exit 3; post is queued and goes out with the next sync', async () => {
      const dead = [`/ip4/127.0.0.1/tcp/1/ws/p2p/${relay.peerId}`];
      const r = await refused(alice, ['sync'], { relays: dead });
      expectError(r, 3, 'offline', /no relay could be reached/);

      const posted = out<{ postId: string; status: string }>(
        await conclave(alice, ['post', space, 'general', 'written offline', '--json'], { relays: dead }),
      );
      expect(posted.status).toBe('queued');

      const synced = out<{ outboxLeft: number }>(await conclave(alice, ['sync', '--json'], { relays }));
      expect(synced.outboxLeft).toBe(0);

      const read = out<{ posts: { postId: string; text: string }[]; offline?: boolean }>(
        await conclave(alice, ['read', space, 'general', '--json'], { relays }),
      );
      expect(read.offline).toBeUndefined();
      expect(read.posts).toContainEqual(
        expect.objectContaining({ postId: posted.postId, text: 'written offline' }),
      );
    });
  });

  describe('a damaged home (exit 4, nothing written)', () => {
    it('an identity file that is garbage', async () => {
      const home = join(root.dir, 'garbage-identity');
      mkdirSync(home);
      writeFileSync(join(home, 'identity'), 'this is not an identity file\n'.repeat(20));
      const r = await refused(home, ['identity', 'show']);
      expectError(r, 4, 'home-corrupt', /identity file is damaged/);
    });

    it('a valid identity with a conclave.db that is garbage', async () => {
      const home = join(root.dir, 'garbage-db');
      mkdirSync(home);
      writeFileSync(join(home, 'identity'), readFileSync(join(alice, 'identity')));
      writeFileSync(join(home, 'conclave.db'), 'this is not a SQLite database\n'.repeat(200));
      const r = await refused(home, ['space', 'list']);
      expectError(r, 4, 'home-corrupt', /conclave\.db is not a SQLite database/);
    });
  });

  it('a wrong passphrase is refused (exit 2, nothing written); the right one opens the identity', async () => {
    const home = join(root.dir, 'protected');
    out(
      await conclave(home, ['identity', 'create', '--name', 'P', '--json'], {
        env: { CONCLAVE_PASSPHRASE: 'right' },
      }),
    );
    const r = await refused(home, ['identity', 'show'], { env: { CONCLAVE_PASSPHRASE: 'wrong' } });
    expectError(r, 2, 'wrong-passphrase', /wrong passphrase/);
    const shown = out<{ name: string }>(
      await conclave(home, ['identity', 'show', '--json'], { env: { CONCLAVE_PASSPHRASE: 'right' } }),
    );
    expect(shown.name).toBe('P');
  });

  it('backups: export, bad imports refused, import as a new device, no import over an identity', async () => {
    const file = join(root.dir, 'alice.backup');
    const garbage = join(root.dir, 'garbage.backup');
    writeFileSync(garbage, 'not a backup at all\n');
    const backupEnv = { env: { CONCLAVE_BACKUP_PASSPHRASE: 'backup words' } };
    const exported = out<{ userId: string; file: string }>(
      await conclave(alice, ['identity', 'export', '--out', file, '--json'], backupEnv),
    );
    expect(exported).toEqual({ userId: aliceUser, file });

    const home = join(root.dir, 'restored');
    mkdirSync(home);
    const g = await refused(home, ['identity', 'import', garbage, '--no-passphrase'], backupEnv);
    expectError(g, 1, 'bad-backup', /not a Conclave backup/);
    const w = await refused(home, ['identity', 'import', file, '--no-passphrase'], {
      env: { CONCLAVE_BACKUP_PASSPHRASE: 'other words' },
    });
    expectError(w, 2, 'wrong-passphrase', /wrong passphrase/);

    const imported = out<{ userId: string; name: string }>(
      await conclave(home, ['identity', 'import', file, '--no-passphrase', '--json'], backupEnv),
    );
    expect(imported).toEqual({ userId: aliceUser, name: 'Alice' });
    const restored = out<{ userId: string; deviceId: string }>(
      await conclave(home, ['identity', 'show', '--json']),
    );
    const original = out<{ userId: string; deviceId: string }>(
      await conclave(alice, ['identity', 'show', '--json']),
    );
    expect(restored.userId).toBe(aliceUser);
    expect(original.userId).toBe(aliceUser);
    expect(restored.deviceId).not.toBe(original.deviceId);

    const again = await refused(home, ['identity', 'import', file, '--no-passphrase'], backupEnv);
    expectError(again, 2, 'identity-exists', /already holds an identity/);
  });

  it('a second command while the home is locked by a live process (exit 4, nothing written)', async () => {
    const lock = join(alice, 'lock');
    writeFileSync(lock, `${process.pid}\n`);
    try {
      const r = await refused(alice, ['space', 'list']);
      expectError(r, 4, 'home-busy', new RegExp(`pid ${process.pid}`));
    } finally {
      rmSync(lock, { force: true });
    }
  });
});
