import { describe, expect, it } from 'vitest';
import type { SpaceReplica } from '../core/replica.js';
import { ManualClock, TestGroup, makeIdentities, testReplica, testSpaceId } from '../core/testkit.js';
import { topicId } from '../crypto/sha256.js';
import { memoryStorage } from '../ports/storage.memory.js';
import type { ChannelId, PostId } from '../protocol/ids.js';
import { toHex } from '../protocol/ids.js';
import { MemoryConnector, MemoryRelay } from './memory.js';
import { RelayPool } from './pool.js';
import { SpaceSync, isSealedOp } from './space-sync.js';

async function world() {
  const space = testSpaceId(4);
  const group = new TestGroup();
  const [alice, bob] = await makeIdentities(2);
  if (alice === undefined || bob === undefined) throw new Error('identities');
  const e0 = group.setEpoch(0, [alice.user, bob.user]);
  const clock = new ManualClock(1_700_000_100_000);
  const relays = [new MemoryRelay('r1'), new MemoryRelay('r2')];
  const connector = new MemoryConnector(relays);
  return { space, group, alice, bob, e0, clock, relays, connector };
}

type World = Awaited<ReturnType<typeof world>>;

async function peer(w: World) {
  const storage = memoryStorage();
  const pool = new RelayPool({ connector: w.connector, relays: w.relays.map((r) => r.address), storage });
  await pool.start();
  const sync = new SpaceSync({ pool, topic: topicId(w.space) });
  const replica = await testReplica(w.space, w.group, {
    clock: w.clock,
    storage,
    fetchMissing: sync.fetchMissing,
  });
  return { pool, replica, sync, storage };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function postTexts(r: SpaceReplica): string[] {
  return r.state
    .allPosts()
    .map((p) => p.text)
    .sort();
}

describe('SpaceSync', () => {
  it('a second member receives every op another member sent through the relays, into its pipeline', async () => {
    const w = await world();
    const a = await peer(w);
    const b = await peer(w);
    b.sync.start(b.replica);
    const chat = new Uint8Array(16).fill(3) as ChannelId;
    const sent = [
      await a.replica.write(w.alice, w.e0, 'CreateSpace', { name: 'S', description: '' }),
      await a.replica.write(w.alice, w.e0, 'CreateChannel', {
        channel: chat,
        name: 'c',
        type: 'chat',
        topic: '',
      }),
    ];
    for (let i = 0; i < 40; i++) {
      sent.push(
        await a.replica.write(w.alice, w.e0, 'CreatePost', {
          post: new Uint8Array(16).fill(i + 10) as PostId,
          channel: chat,
          thread: null,
          parent: null,
          text: `hello ${i}`,
          body: null,
          attachments: [],
          collab: null,
        }),
      );
    }
    for (const s of sent) {
      if (s.kind !== 'written') throw new Error('not written');
      expect(await a.sync.send(s.sealed)).toBe('sent');
    }
    await until(() => b.replica.state.allPosts().length === 40, 'Bob to have 40 posts');
    await b.sync.idle();
    expect(postTexts(b.replica)).toEqual(postTexts(a.replica));
    expect(postTexts(b.replica)).toContain('hello 39');
    expect(b.replica.currentHeads().map(toHex)).toEqual(a.replica.currentHeads().map(toHex));
    await a.pool.close();
    await b.pool.close();
  });

  it('asks the relays for missing deps by OpId and accepts them before the op that needs them', async () => {
    const w = await world();
    const a = await peer(w);
    const b = await peer(w);
    const chat = new Uint8Array(16).fill(5) as ChannelId;
    const first = await a.replica.write(w.alice, w.e0, 'CreateSpace', { name: 'S', description: '' });
    const second = await a.replica.write(w.alice, w.e0, 'CreateChannel', {
      channel: chat,
      name: 'c',
      type: 'chat',
      topic: '',
    });
    if (first.kind !== 'written' || second.kind !== 'written') throw new Error('not written');
    // The first op is held by a relay under another address only: Bob's mailbox lacks it.
    const elsewhere = new Uint8Array(32).fill(9);
    for (const r of w.relays) r.inject(elsewhere, first.sealed);
    expect(await a.sync.send(second.sealed)).toBe('sent');
    b.sync.start(b.replica);
    await until(() => b.replica.has(first.opId) && b.replica.has(second.opId), 'Bob to have both ops');
    expect(b.replica.state.channels().map((c) => c.name)).toEqual(['c']);
    await a.pool.close();
    await b.pool.close();
  });
});

describe('isSealedOp', () => {
  it('tells a sealed op of the Space from one of another Space, a handshake and other bytes', async () => {
    const w = await world();
    const a = await peer(w);
    const written = await a.replica.write(w.alice, w.e0, 'CreateSpace', { name: 'S', description: '' });
    if (written.kind !== 'written') throw new Error('not written');
    const topic = topicId(w.space);
    expect(isSealedOp(written.sealed, topic)).toBe(true);
    expect(isSealedOp(written.sealed, topicId(testSpaceId(99)))).toBe(false);
    expect(isSealedOp(written.sealed.subarray(1), topic)).toBe(false);
    const handshake = new Uint8Array(written.sealed);
    handshake[0] = 0x85;
    expect(isSealedOp(handshake, topic)).toBe(false);
    expect(isSealedOp(new Uint8Array(written.sealed.length), topic)).toBe(false);
    await a.pool.close();
  });
});
