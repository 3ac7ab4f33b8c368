/**
 * The Peer over in-memory relays and storage: a Space created, joined by invite, posted in,
 * moderated, and every device reopened from its storage between steps.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../core/checkpoint.js';
import { checkpointKey } from '../core/replica.js';
import { parseInviteLink } from '../mls/invite.js';
import { MemoryRelay } from '../net/memory.js';
import type { ChannelId, PostId, SpaceId } from '../protocol/index.js';
import { PeerError } from './peer.js';
import { type Person, closeAll, peerOf as openPeer, person as newPerson } from './peer.testkit.js';

const relay = new MemoryRelay('relay-a');
const person = (name: string) => newPerson(name, [relay]);
const peerOf = (p: Person, relays = [relay.address]) => openPeer(p, relays);

afterEach(closeAll);

describe('Peer', () => {
  it('creates a Space, admits a member by invite, and both read each other after restarts', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');
    let a = await peerOf(alice);
    await a.goOnline();
    const { spaceId } = await a.createSpace('Book club');
    const { channelId } = await a.createChannel(spaceId, 'general', 'chat');
    const first = await a.post(spaceId, channelId, 'hello from Alice');
    expect(first.status).toBe('sent');
    const inv = await a.createInvite(spaceId, {
      role: 'member',
      expiresAtMs: Date.now() + 60_000,
      maxUses: 1,
    });
    const parsed = parseInviteLink(inv.link);
    if (!parsed.ok) throw new Error(parsed.message);

    let b = await peerOf(bob);
    expect((await b.join(parsed.link, 0)).status).toBe('pending');
    const report = await a.sync();
    expect(report.admitted).toBe(1);
    await b.close();
    b = await peerOf(bob);
    const s = await b.sync(5_000);
    expect(s.joined).toHaveLength(1);
    expect(b.spaces()).toEqual([{ spaceId, name: 'Book club', role: 'member', status: 'member' }]);
    expect(
      b
        .state(spaceId)
        .postsIn(channelId, null)
        .map((p) => p.text),
    ).toEqual(['hello from Alice']);

    await b.post(spaceId, channelId, 'hi Alice');
    await a.close();
    a = await peerOf(alice);
    await a.sync();
    const texts = a
      .state(spaceId)
      .postsIn(channelId, null)
      .map((p) => p.text);
    expect(texts).toEqual(['hello from Alice', 'hi Alice']);
    const members = a.members(spaceId);
    expect(members.map((m) => [m.name, m.status]).sort()).toEqual([
      ['Alice', 'member'],
      ['Bob', 'member'],
    ]);

    // Kicked: Bob's device learns it, and cannot write any more.
    await a.remove(spaceId, b.userId, { ban: false });
    await b.sync();
    expect(b.spaces()[0]?.status).toBe('removed');
    await expect(b.post(spaceId, channelId, 'still here?')).rejects.toMatchObject({ code: 'removed' });
    expect(a.members(spaceId).find((m) => m.name === 'Bob')?.status).toBe('removed');
    const audit = await a.audit(spaceId);
    expect(audit.entries.map((e) => e.kind)).toContain('RemoveMember');
    expect(audit.entries.every((e) => e.signatureValid)).toBe(true);
  });

  it("saves each Space's state checkpoint when asked and on close, and reopens with every post", async () => {
    const dana = await person('Dana');
    let d = await peerOf(dana);
    const { spaceId } = await d.createSpace('Notes');
    const { channelId } = await d.createChannel(spaceId, 'general', 'chat');
    for (let i = 0; i < 3; i++) await d.post(spaceId, channelId, `note ${i}`);
    const covered = async () => {
      const saved = await dana.storage.getMeta(checkpointKey(spaceId));
      return saved === undefined ? 0 : decodeCheckpoint(saved).count;
    };
    await d.saveCheckpoints();
    expect(await covered()).toBe(await dana.storage.countOps(spaceId));
    await d.post(spaceId, channelId, 'after the checkpoint');
    expect(await covered()).toBeLessThan(await dana.storage.countOps(spaceId));
    await d.close();
    expect(await covered()).toBe(await dana.storage.countOps(spaceId));
    d = await peerOf(dana);
    expect(
      d
        .state(spaceId)
        .postsIn(channelId, null)
        .map((p) => p.text),
    ).toEqual(['note 0', 'note 1', 'note 2', 'after the checkpoint']);
  });

  it('queues a post while no relay is reachable and sends it on the next sync', async () => {
    const carol = await person('Carol');
    const c = await peerOf(carol);
    await c.goOnline();
    const { spaceId } = await c.createSpace('Offline');
    const { channelId } = await c.createChannel(spaceId, 'chat', 'chat');
    relay.down();
    const r = await c.post(spaceId, channelId, 'written offline');
    expect(r.status).toBe('queued');
    expect(c.network.outbox).toBeGreaterThan(0);
    relay.up();
    await c.close();
    const again = await peerOf(carol);
    const s = await again.sync();
    expect(s.outboxLeft).toBe(0);
  });

  it('renames a channel for an admin and refuses it to a member; a post id chosen by the writer is used once', async () => {
    const erin = await person('Erin');
    const fred = await person('Fred');
    const e = await peerOf(erin);
    await e.goOnline();
    const { spaceId } = await e.createSpace('Names');
    const { channelId } = await e.createChannel(spaceId, 'general', 'chat');
    await e.renameChannel(spaceId, channelId, 'lobby');
    expect(
      e
        .state(spaceId)
        .channels()
        .map((c) => c.name),
    ).toEqual(['lobby']);
    await expect(e.renameChannel(spaceId, channelId, ' ')).rejects.toMatchObject({ code: 'invalid' });
    await expect(e.renameChannel(spaceId, new Uint8Array(16) as ChannelId, 'other')).rejects.toMatchObject({
      code: 'unknown',
    });

    const inv = await e.createInvite(spaceId, {
      role: 'member',
      expiresAtMs: Date.now() + 60_000,
      maxUses: 1,
    });
    const parsed = parseInviteLink(inv.link);
    if (!parsed.ok) throw new Error(parsed.message);
    const f = await peerOf(fred);
    expect((await f.join(parsed.link, 0)).status).toBe('pending');
    await e.sync();
    expect((await f.sync(5_000)).joined).toHaveLength(1);
    expect(
      f
        .state(spaceId)
        .channels()
        .map((c) => c.name),
    ).toEqual(['lobby']);
    await expect(f.renameChannel(spaceId, channelId, 'mine')).rejects.toMatchObject({ code: 'refused' });

    const postId = new Uint8Array(16).fill(7) as PostId;
    const first = await f.post(spaceId, channelId, 'once', { postId });
    expect(first.postId).toEqual(postId);
    await expect(f.post(spaceId, channelId, 'once', { postId })).rejects.toMatchObject({ code: 'invalid' });
    await e.sync();
    expect(
      e
        .state(spaceId)
        .postsIn(channelId, null)
        .map((p) => p.text),
    ).toEqual(['once']);
  });

  it('refuses unknown ids with a typed error and changes nothing', async () => {
    const dave = await person('Dave');
    const d = await peerOf(dave, []);
    expect(() => d.state(new Uint8Array(16) as SpaceId)).toThrow(PeerError);
    await expect(d.sync()).rejects.toMatchObject({ code: 'offline' });
    const { spaceId } = await d.createSpace('Local');
    await expect(d.post(spaceId, new Uint8Array(16) as ChannelId, 'x')).rejects.toMatchObject({
      code: 'unknown',
    });
    expect(d.state(spaceId).allPosts()).toHaveLength(0);
  });
});
