/**
 * The Peer's membership edges over in-memory relays: a Space that hides its history from new
 * members (`sinceJoin`), and leaving a Space.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { handshakeTopicId, topicId } from '../crypto/sha256.js';
import { decodeHandshake } from '../mls/envelope.js';
import { parseInviteLink } from '../mls/invite.js';
import { MemoryRelay } from '../net/memory.js';
import type { InviteLink } from '../mls/invite.js';
import type { Peer } from './peer.js';
import { type SpaceId, decodeSealed } from '../protocol/index.js';
import { closeAll, peerOf, person } from './peer.testkit.js';

const relay = new MemoryRelay('relay-history');
const relays = [relay.address];

afterEach(closeAll);

async function inviteLink(admin: Peer, space: SpaceId): Promise<InviteLink> {
  const inv = await admin.createInvite(space, {
    role: 'member',
    expiresAtMs: Date.now() + 60_000,
    maxUses: 0,
  });
  const parsed = parseInviteLink(inv.link);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.link;
}

/** `p` joins by `link`, admitted by `admin`'s next sync. */
async function joined(p: Peer, admin: Peer, link: InviteLink): Promise<void> {
  expect((await p.join(link, 0)).status).toBe('pending');
  expect((await admin.sync()).admitted).toBe(1);
  expect((await p.sync(5_000)).joined).toHaveLength(1);
}

const texts = (p: Peer, space: SpaceId, channel: Parameters<Peer['post']>[1]) =>
  p
    .state(space)
    .postsIn(channel, null)
    .map((x) => x.text);

describe('a Space that hides its history from new members', () => {
  it('a member who joins after "sinceJoin" reads from its join on, and everyone reads what it says', async () => {
    const [alice, bob, carol] = await Promise.all(['Alice', 'Bob', 'Carol'].map((n) => person(n, [relay])));
    if (alice === undefined || bob === undefined || carol === undefined) throw new Error('no people');
    const a = await peerOf(alice, relays);
    await a.goOnline();
    const { spaceId } = await a.createSpace('Private history');
    const { channelId } = await a.createChannel(spaceId, 'general', 'chat');
    const forum = await a.createChannel(spaceId, 'ideas', 'forum');
    await a.post(spaceId, channelId, 'before anyone else came');
    await a.post(spaceId, forum.channelId, 'first idea', { title: 'An old thread' });
    const link = await inviteLink(a, spaceId);

    // Carol joins while the history is shown: she reads it all.
    const c = await peerOf(carol, relays);
    await joined(c, a, link);
    expect(texts(c, spaceId, channelId)).toEqual(['before anyone else came']);

    await a.setSettings(spaceId, { name: null, description: null, historyVisibility: 'sinceJoin' });
    await c.post(spaceId, channelId, 'carol was here before bob');

    // Bob joins after: the channels and the Space's settings are there, earlier posts are not.
    let b = await peerOf(bob, relays);
    await a.sync();
    await joined(b, a, link);
    await b.sync(2_000);
    const bs = b.state(spaceId);
    expect(bs.settings()).toMatchObject({ name: 'Private history', historyVisibility: 'sinceJoin' });
    expect(bs.channels().map((ch) => ch.name)).toEqual(['general', 'ideas']);
    expect(texts(b, spaceId, channelId)).toEqual([]);
    expect(bs.threadsIn(forum.channelId).map((t) => [t.title, t.locked])).toEqual([['', true]]);
    // Everything of before is placed, so what follows is accepted at once, both ways.
    await a.post(spaceId, channelId, 'welcome, Bob');
    await b.sync(2_000);
    await b.post(spaceId, channelId, 'thanks!');
    await a.sync(2_000);
    await c.sync(2_000);
    expect(texts(b, spaceId, channelId)).toEqual(['welcome, Bob', 'thanks!']);
    for (const p of [a, c]) {
      expect(texts(p, spaceId, channelId)).toEqual([
        'before anyone else came',
        'carol was here before bob',
        'welcome, Bob',
        'thanks!',
      ]);
    }
    // A restart of Bob's device reads the same from its storage.
    await b.close();
    b = await peerOf(bob, relays);
    expect(texts(b, spaceId, channelId)).toEqual(['welcome, Bob', 'thanks!']);
  });
});

describe('leaving a Space', () => {
  it('a member leaves: the Space is gone from its device and from the member list; the creator cannot leave', async () => {
    const [alice, dan] = await Promise.all(['Alice', 'Dan'].map((n) => person(n, [relay])));
    if (alice === undefined || dan === undefined) throw new Error('no people');
    const a = await peerOf(alice, relays);
    await a.goOnline();
    const { spaceId } = await a.createSpace('Drop-in');
    const { channelId } = await a.createChannel(spaceId, 'general', 'chat');
    let d = await peerOf(dan, relays);
    await joined(d, a, await inviteLink(a, spaceId));
    await d.post(spaceId, channelId, 'hi, just passing through');
    expect(a.members(spaceId).map((m) => m.name)).toContain('Dan');

    await d.leave(spaceId);
    expect(d.spaces()).toEqual([]);
    // Alice (an admin) commits Dan's leave when she next follows the Space.
    await a.sync(2_000);
    await a.sync(0);
    expect(a.members(spaceId).map((m) => [m.name, m.status])).toEqual([['Alice', 'member']]);
    // Dan's post stays, as on other platforms.
    expect(texts(a, spaceId, channelId)).toEqual(['hi, just passing through']);
    // Dan's device, restarted, no longer has the Space.
    await d.close();
    d = await peerOf(dan, relays);
    expect(d.spaces()).toEqual([]);

    await expect(a.leave(spaceId)).rejects.toMatchObject({ code: 'refused' });
    expect(a.spaces().map((s) => s.status)).toEqual(['member']);
  });
});

describe('membership changes arrive live', () => {
  it('a member who is only online (no sync) sees a kick and a join as they happen, and commits and ops travel apart', async () => {
    const [alice, bob, carol] = await Promise.all(['Alice', 'Bob', 'Carol'].map((n) => person(n, [relay])));
    if (alice === undefined || bob === undefined || carol === undefined) throw new Error('no people');
    const a = await peerOf(alice, relays);
    await a.goOnline();
    const { spaceId } = await a.createSpace('Live');
    const { channelId } = await a.createChannel(spaceId, 'general', 'chat');
    const link = await inviteLink(a, spaceId);
    const b = await peerOf(bob, relays);
    await joined(b, a, link);
    const names = () =>
      b
        .members(spaceId)
        .filter((m) => m.status === 'member')
        .map((m) => m.name)
        .sort();
    expect(names()).toEqual(['Alice', 'Bob']);
    // Carol joins (Alice admits); Bob only stays online.
    const c = await peerOf(carol, relays);
    await joined(c, a, link);
    await expect.poll(names, { timeout: 10_000 }).toEqual(['Alice', 'Bob', 'Carol']);
    await c.post(spaceId, channelId, 'hello from Carol');
    await expect.poll(() => texts(b, spaceId, channelId), { timeout: 10_000 }).toEqual(['hello from Carol']);
    await a.remove(spaceId, c.userId, { ban: false });
    await expect.poll(names, { timeout: 10_000 }).toEqual(['Alice', 'Bob']);
    expect(b.members(spaceId).find((m) => m.name === 'Carol')?.status).toBe('removed');
    // Commits and ops travel apart: catching up on membership reads no op, and the other way.
    const ops = relay.messages(topicId(spaceId));
    const handshakes = relay.messages(handshakeTopicId(spaceId));
    expect(ops.length).toBeGreaterThan(5);
    expect(handshakes.length).toBeGreaterThanOrEqual(3);
    for (const m of ops) expect(decodeSealed(m).topic).toEqual(topicId(spaceId));
    for (const m of handshakes) expect(decodeHandshake(m).topic).toEqual(handshakeTopicId(spaceId));
  });
});
