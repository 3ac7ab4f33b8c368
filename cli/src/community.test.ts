/**
 * A scripted community on the command line, over two real relay processes (ISSUE: the
 * headless client). Alice uses relay A, Bob relay B, John relay A; the relays share one
 * backbone. Every step is a separate `conclave` process on its home folder, so every process is
 * restarted between steps; relay A is restarted midway too.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SpawnedRelay, spawnRelay, tempDir } from '../../relay/src/testing/spawn.js';
import { conclave, okJson } from './testing/cli.js';

interface Post {
  postId: string;
  threadId: string | null;
  title: string | null;
  author: string;
  authorName: string;
  text: string;
  replyTo: string | null;
  edited: boolean;
  deleted: boolean;
  lateAfterRemoval: boolean;
  attachments: { blobId: string; name: string; size: number }[];
}

const dirs = { relayA: tempDir(), relayB: tempDir(), homes: tempDir('conclave-homes-') };
const home = (name: string) => join(dirs.homes.dir, name);
let relayA: SpawnedRelay;
let relayB: SpawnedRelay;
let portA = 0;

const json = okJson;

const as = {
  alice: (args: string[]) => conclave(home('alice'), [...args, '--json'], { relays: [relayA.multiaddr] }),
  bob: (args: string[]) => conclave(home('bob'), [...args, '--json'], { relays: [relayB.multiaddr] }),
  john: (args: string[], relays?: string[]) =>
    conclave(home('john'), [...args, '--json'], { relays: relays ?? [relayA.multiaddr] }),
};

async function read(who: keyof typeof as, channel: string, extra: string[] = []): Promise<Post[]> {
  return json<{ posts: Post[] }>(await as[who](['read', 'Guild', channel, ...extra])).posts;
}

/**
 * Reads again, as a person refreshes, until `seen` holds (at most `tries` reads, half a second
 * apart): a post reaches the other relay's subscribers over the backbone, not at once.
 */
async function readUntil(
  who: keyof typeof as,
  channel: string,
  seen: (posts: Post[]) => boolean,
  tries = 10,
): Promise<Post[]> {
  let posts = await read(who, channel);
  for (let i = 1; i < tries && !seen(posts); i++) {
    await new Promise((r) => setTimeout(r, 500));
    posts = await read(who, channel);
  }
  return posts;
}

beforeAll(async () => {
  relayA = await spawnRelay({ dataDir: dirs.relayA.dir });
  portA = Number(/\/tcp\/(\d+)\//.exec(relayA.multiaddr)?.[1]);
  relayB = await spawnRelay({ dataDir: dirs.relayB.dir, bootstrap: [relayA.multiaddr] });
});

afterAll(async () => {
  await relayA.stop();
  await relayB.stop();
  for (const d of Object.values(dirs)) d.cleanup();
});

describe('a community run from the command line', () => {
  const ids = {
    space: '',
    general: '',
    forum: '',
    alice: '',
    bob: '',
    john: '',
    thread: '',
    johnsSpam: '',
    beforeKick: '',
  };
  const attachment = randomBytes(300_000);

  it('Alice creates a Space with a chat and a forum channel and invites Bob as moderator, John as member', async () => {
    ids.alice = json<{ userId: string }>(
      await as.alice(['identity', 'create', '--name', 'Alice', '--no-passphrase']),
    ).userId;
    ids.bob = json<{ userId: string }>(
      await as.bob(['identity', 'create', '--name', 'Bob', '--no-passphrase']),
    ).userId;
    ids.john = json<{ userId: string }>(
      await as.john(['identity', 'create', '--name', 'John', '--no-passphrase']),
    ).userId;
    ids.space = json<{ spaceId: string }>(await as.alice(['space', 'create', 'Guild'])).spaceId;
    ids.general = json<{ channelId: string }>(
      await as.alice(['channel', 'create', 'Guild', 'general', '--type', 'chat']),
    ).channelId;
    ids.forum = json<{ channelId: string }>(
      await as.alice(['channel', 'create', 'Guild', 'ideas', '--type', 'forum']),
    ).channelId;
    const channels = json<{ channels: { name: string; type: string }[] }>(
      await as.alice(['channel', 'list', 'Guild']),
    ).channels;
    expect(channels.map((c) => [c.name, c.type])).toEqual([
      ['general', 'chat'],
      ['ideas', 'forum'],
    ]);

    const forBob = json<{ link: string }>(
      await as.alice(['invite', 'create', 'Guild', '--role', 'moderator']),
    );
    const forJohn = json<{ link: string }>(
      await as.alice(['invite', 'create', 'Guild', '--role', 'member', '--uses', '1', '--expires', '1d']),
    );
    expect(forBob.link).toMatch(/^conclave:\/\/join\//);

    // Bob asks through relay B; Alice (on relay A) admits him when she next syncs.
    expect(json<{ status: string }>(await as.bob(['join', forBob.link, '--wait', '0'])).status).toBe(
      'pending',
    );
    expect(json<{ admitted: number }>(await as.alice(['sync'])).admitted).toBe(1);
    const bobSync = json<{ joined: string[] }>(await as.bob(['sync', '--wait', '20']));
    expect(bobSync.joined).toEqual([ids.space]);

    // Alice goes offline (she runs nothing from here until the posts); Bob admits John.
    expect(json<{ status: string }>(await as.john(['join', forJohn.link, '--wait', '0'])).status).toBe(
      'pending',
    );
    expect(json<{ admitted: number }>(await as.bob(['sync', '--wait', '10'])).admitted).toBe(1);
    expect(json<{ joined: string[] }>(await as.john(['sync', '--wait', '20'])).joined).toEqual([ids.space]);

    const members = json<{ members: { userId: string; name: string; roles: string[]; status: string }[] }>(
      await as.john(['members', 'Guild']),
    ).members;
    const byName = new Map(members.map((m) => [m.name, m]));
    expect(byName.get('Alice')?.roles).toContain('admin');
    expect(byName.get('Bob')?.roles).toContain('moderator');
    expect(byName.get('John')).toMatchObject({ userId: ids.john, roles: ['member'], status: 'member' });
    const info = json<{ members: number; epoch: number; name: string }>(
      await as.bob(['space', 'info', 'Guild']),
    );
    expect(info).toMatchObject({ name: 'Guild', members: 3 });
  });

  it('chat posts, a forum thread with replies and an attachment, an edit, and a moderator’s delete', async () => {
    const hello = json<{ postId: string; status: string }>(
      await as.alice(['post', 'Guild', 'general', 'Welcome, everyone']),
    );
    expect(hello.status).toBe('sent');
    await as.bob(['post', 'Guild', '#general', 'Thanks Alice']);
    ids.johnsSpam = json<{ postId: string }>(
      await as.john(['post', 'Guild', 'general', 'BUY CHEAP STUFF']),
    ).postId;
    await as.alice(['edit', 'Guild', hello.postId, 'Welcome, everyone!']);

    const file = join(dirs.homes.dir, 'map.png');
    writeFileSync(file, attachment);
    const thread = json<{ postId: string; threadId: string }>(
      await as.bob(['post', 'Guild', 'ideas', 'Where should we meet?', '--title', 'Meetup', '--file', file]),
    );
    ids.thread = thread.threadId;
    await as.john(['post', 'Guild', 'ideas', 'The park', '--thread', 'Meetup']);
    await as.alice(['post', 'Guild', 'ideas', 'Library works too', '--reply', thread.postId]);

    // Bob (moderator) deletes John's post: it is gone for everyone, kept as a tombstone.
    await as.bob(['delete', 'Guild', ids.johnsSpam, '--reason', 'spam']);

    const chat = await read('alice', 'general');
    expect(chat.map((p) => [p.authorName, p.text, p.edited])).toEqual([
      ['Alice', 'Welcome, everyone!', true],
      ['Bob', 'Thanks Alice', false],
    ]);
    const all = await read('john', 'general', ['--all']);
    expect(all.find((p) => p.postId === ids.johnsSpam)).toMatchObject({ deleted: true, text: '' });

    const forum = await read('alice', 'ideas', ['--thread', ids.thread]);
    expect(forum.map((p) => [p.authorName, p.text, p.title])).toEqual([
      ['Bob', 'Where should we meet?', 'Meetup'],
      ['John', 'The park', null],
      ['Alice', 'Library works too', null],
    ]);
    expect(forum[2]?.replyTo).toBe(thread.postId);
    const blob = forum[0]?.attachments[0];
    expect(blob).toMatchObject({ name: 'map.png', size: attachment.length });
    const out = join(dirs.homes.dir, 'got.png');
    json(await as.john(['get', 'Guild', blob?.blobId ?? '', '--out', out]));
    expect(readFileSync(out).equals(attachment)).toBe(true);
  });

  it('roles assigned and revoked, mutes and unmutes, shown to members', async () => {
    json(await as.alice(['role', 'assign', 'Guild', 'Bob', 'admin']));
    const roles = json<{ members: { name: string; roles: string[] }[] }>(await as.john(['members', 'Guild']));
    expect(roles.members.find((m) => m.name === 'Bob')?.roles).toEqual(
      expect.arrayContaining(['admin', 'moderator']),
    );
    json(await as.alice(['role', 'revoke', 'Guild', ids.bob, 'admin']));
    // A user who was never in the Space is not a target (exit 1).
    const stranger = await as.alice([
      'role',
      'assign',
      'Guild',
      'zUS517G5965aydkZ46HS38QLi7UQiSojurfbQfKCELFx',
      'moderator',
    ]);
    expect(stranger.code).toBe(1);
    expect(stranger.json).toMatchObject({ error: { code: 'unknown-user' } });
    // John may not give himself roles: refused by the Space's rules (exit 2).
    const self = await as.john(['role', 'assign', 'Guild', 'John', 'moderator']);
    expect(self.code).toBe(2);
    expect(self.json).toMatchObject({ error: { code: 'refused' } });

    json(await as.alice(['mute', 'Guild', 'John', '--for', '1h']));
    const muted = json<{ members: { name: string; mutedUntil: string | null }[] }>(
      await as.bob(['members', 'Guild']),
    );
    expect(muted.members.find((m) => m.name === 'John')?.mutedUntil).toMatch(/^\d{4}-/);
    json(await as.alice(['unmute', 'Guild', 'John']));
    const after = json<{ members: { name: string; roles: string[]; mutedUntil: string | null }[] }>(
      await as.bob(['members', 'Guild']),
    );
    expect(after.members.find((m) => m.name === 'John')?.mutedUntil).toBeNull();
    expect(after.members.find((m) => m.name === 'Bob')?.roles).not.toContain('admin');
  });

  it('John’s posts racing his kick: seen before it, written before it but late, and after it', async () => {
    // 1. Before the kick, and seen by the remover: an ordinary post.
    ids.beforeKick = json<{ postId: string }>(
      await as.john(['post', 'Guild', 'general', 'see you all']),
    ).postId;
    // 2. Written before the kick while John's relay was unreachable: it waits in his outbox.
    const unreachable = relayA.multiaddr.replace(`/tcp/${portA}/`, '/tcp/1/');
    const queued = json<{ postId: string; status: string }>(
      await as.john(['post', 'Guild', 'general', 'written on the train'], [unreachable]),
    );
    expect(queued.status).toBe('queued');

    // Bob kicks John (Bob catches up first, so he has seen post 1).
    const kick = json<{ atEpoch: number }>(await as.bob(['kick', 'Guild', 'John', '--reason', 'spam']));
    expect(kick.atEpoch).toBeGreaterThan(0);

    // John comes back online: his queued post goes out, then he learns he was removed.
    const johnSync = json<{ outboxLeft: number; removedFrom: string[] }>(await as.john(['sync']));
    expect(johnSync.outboxLeft).toBe(0);
    expect(johnSync.removedFrom).toEqual([ids.space]);

    // Relay A restarts on its data: nothing it acknowledged is lost.
    await relayA.stop();
    relayA = await spawnRelay({ dataDir: dirs.relayA.dir, port: portA });

    // 3. After the kick: John's client refuses, and says why.
    const after = await as.john(['post', 'Guild', 'general', 'let me back in']);
    expect(after.code).toBe(2);
    expect(after.json).toMatchObject({ error: { code: 'removed' } });
    expect((after.json as { error: { message: string } }).error.message).toMatch(/not a member/);

    // Everyone else: post 1 ordinary, post 2 accepted but flagged as late after removal.
    for (const who of ['alice', 'bob'] as const) {
      const chat = await read(who, 'general');
      expect(chat.find((p) => p.postId === ids.beforeKick)?.lateAfterRemoval).toBe(false);
      expect(chat.find((p) => p.postId === queued.postId)).toMatchObject({
        text: 'written on the train',
        lateAfterRemoval: true,
      });
      expect(chat.some((p) => p.text === 'let me back in')).toBe(false);
    }

    // After the kick John reads nothing new.
    await as.alice(['post', 'Guild', 'general', 'after John left']);
    const johnRead = json<{ posts: Post[]; removed?: boolean }>(await as.john(['read', 'Guild', 'general']));
    expect(johnRead.removed).toBe(true);
    expect(johnRead.posts.some((p) => p.text === 'after John left')).toBe(false);
    const afterKick = (posts: Post[]) => posts.some((p) => p.text === 'after John left');
    expect(afterKick(await readUntil('bob', 'general', afterKick))).toBe(true);

    // Banned, then unbanned: the member list says so.
    json(await as.alice(['ban', 'Guild', 'John', '--reason', 'repeat spam']));
    const banned = json<{ members: { name: string; status: string }[] }>(await as.bob(['members', 'Guild']));
    expect(banned.members.find((m) => m.name === 'John')?.status).toBe('banned');
    json(await as.alice(['unban', 'Guild', 'John']));
    const unbanned = json<{ members: { name: string; status: string }[] }>(
      await as.alice(['members', 'Guild']),
    );
    expect(unbanned.members.find((m) => m.name === 'John')?.status).toBe('removed');
  });

  it('the audit log lists every moderation act with valid signatures, and its export verifies offline', async () => {
    const audit = json<{
      entries: {
        kind: string;
        actor: string;
        target: string | null;
        reason: string;
        signatureValid: boolean;
      }[];
    }>(await as.bob(['audit', 'Guild', '--export', join(dirs.homes.dir, 'audit.json')]));
    const acts = audit.entries.map((e) => [e.kind, e.actor, e.target]);
    expect(acts).toEqual(
      expect.arrayContaining([
        ['DeletePost', ids.bob, ids.john],
        ['Mute', ids.alice, ids.john],
        ['Unmute', ids.alice, ids.john],
        ['RemoveMember', ids.bob, ids.john],
        ['Ban', ids.alice, ids.john],
        ['Unban', ids.alice, ids.john],
      ]),
    );
    expect(audit.entries.every((e) => e.signatureValid)).toBe(true);
    expect(audit.entries.find((e) => e.kind === 'DeletePost')?.reason).toBe('spam');

    // Verified with no home and no network.
    const verified = await conclave(join(dirs.homes.dir, 'nobody'), [
      'audit',
      'verify',
      join(dirs.homes.dir, 'audit.json'),
      '--json',
    ]);
    expect(verified.code).toBe(0);
    expect(verified.json).toMatchObject({ valid: true, spaceId: ids.space });
    // The export leaves out invite ops: they hold the secret that lets anyone ask to join.
    const exported = (verified.json as { entries: { kind: string }[] }).entries.map((e) => e.kind);
    expect(exported).toContain('RemoveMember');
    expect(exported).not.toContain('CreateInvite');

    // One changed character in one signed op: refused, naming the entry.
    const doc = JSON.parse(readFileSync(join(dirs.homes.dir, 'audit.json'), 'utf8')) as { ops: string[] };
    const i = doc.ops.length - 1;
    const op = doc.ops[i] ?? '';
    const at = Math.floor(op.length / 2);
    doc.ops[i] = op.slice(0, at) + (op[at] === 'A' ? 'B' : 'A') + op.slice(at + 1);
    writeFileSync(join(dirs.homes.dir, 'tampered.json'), JSON.stringify(doc));
    const bad = await conclave(join(dirs.homes.dir, 'nobody'), [
      'audit',
      'verify',
      join(dirs.homes.dir, 'tampered.json'),
      '--json',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.json).toMatchObject({ error: { code: 'audit-invalid' } });
    expect((bad.json as { error: { message: string } }).error.message).toContain(`entry ${i}`);
  });
});
