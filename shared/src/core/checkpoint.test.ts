/**
 * State checkpoints (checkpoint.ts, `SpaceReplica.checkpoint`): a replica opened from a
 * checkpoint and the ops stored after it holds the state a replay of the whole log gives, and
 * goes on deciding alike; a damaged, cut, old-format or foreign checkpoint is refused with its
 * typed reason and the log is replayed, changing nothing stored; no acknowledged op is lost,
 * whether or not a checkpoint covers it or its write failed. The convergence property test
 * (convergence.test.ts) checks the same over random histories.
 */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { idbStorage } from '../ports/storage.idb.js';
import { memoryStorage } from '../ports/storage.memory.js';
import { type Storage, StorageError } from '../ports/storage.js';
import {
  type ChannelId,
  type InviteId,
  type PostId,
  type SpaceId,
  encode,
  toHex,
} from '../protocol/index.js';
import { webRng } from '../ports/env.js';
import { CHECKPOINT_FORMAT, CheckpointError, crc32, decodeCheckpoint, list } from './checkpoint.js';
import { createCollab, editCollab, loadAutomerge } from './collab.js';
import { type Built, type SpaceReplica, checkpointKey } from './replica.js';
import { World, type Written, newId, postBody } from './scenario.js';
import { SpaceState } from './state.js';
import { testReplica, testSpaceId } from './testkit.js';

await loadAutomerge();

/** A Space with a bit of everything: roles, moderation, threads, edits, a collaborative post, deletes. */
async function history(): Promise<{ w: World; ops: Written[] }> {
  const w = await World.create(['alice', 'bob', 'carol']);
  const { chat, forum, ops } = await w.setUp();
  const all = [...ops];
  const share = async (x: Written): Promise<Written> => {
    all.push(x);
    for (const n of w.replicas.keys()) if (!w.replica(n).has(x.opId)) await w.deliver(n, x);
    return x;
  };
  const bob = w.person('bob').user;
  const carol = w.person('carol').user;
  await share(await w.write('alice', 'AssignRole', { user: bob, role: 'moderator' }));
  await share(await w.write('carol', 'SetProfile', { name: 'Carol' }));
  await share(
    await w.write('alice', 'CreateInvite', {
      invite: newId<InviteId>(),
      secret: webRng.randomBytes(32),
      expiresAtMs: w.clock.now() + 86_400_000,
      maxUses: 2,
      role: 'member',
    }),
  );
  const thread = await w.thread('carol', forum, 'A question');
  await share(thread);
  const posts: PostId[] = [];
  for (let i = 0; i < 9; i++) {
    const p = await w.post(['alice', 'bob', 'carol'][i % 3] as string, chat, `message ${i}`);
    await share(p);
    posts.push(p.post);
  }
  await share(await w.post('bob', forum, 'an answer', { thread: thread.thread }));
  const collab = await w.post('alice', chat, '', {
    collab: createCollab('shared notes\n', w.person('alice').device),
  });
  await share(collab);
  const doc = w.replica('bob').state.collabDoc(collab.post);
  if (doc === undefined) throw new Error('no collaborative document');
  const edit = editCollab(doc, 'shared notes, edited\n', w.person('bob').device);
  if (!edit.ok) throw new Error('no collaborative edit');
  await share(await w.write('bob', 'EditPost', { post: collab.post, text: null, change: edit.change }));
  await share(await w.write('carol', 'EditPost', { post: posts[2] as PostId, text: 'edited', change: null }));
  await share(await w.write('bob', 'DeletePost', { post: posts[0] as PostId, reason: 'spam' }));
  await share(await w.write('bob', 'Mute', { user: carol, untilMs: null, reason: 'loud' }));
  await share(await w.write('alice', 'Unmute', { user: carol }));
  // Concurrent branches: two posts on the same heads, then one that merges them.
  const x = await w.post('alice', chat, 'left');
  const y = await w.post('carol', chat, 'right');
  all.push(x, y);
  await w.deliver('alice', y);
  await w.deliver('carol', x);
  await w.deliver('bob', x, y);
  await share(await w.post('bob', chat, 'merged'));
  await share(await w.write('alice', 'RevokeRole', { user: bob, role: 'moderator' }));
  return { w, ops: all };
}

/** A copy of a Space's ops, heads and checkpoint in a store of its own. */
async function copyOf(from: Storage, space: SpaceId, withCheckpoint = true): Promise<Storage> {
  const to = memoryStorage();
  const ops = [];
  for await (const op of from.listOps(space)) ops.push(op);
  await to.putOps(space, ops, await from.getHeads(space));
  const ck = await from.getMeta(checkpointKey(space));
  if (withCheckpoint && ck !== undefined) await to.putMeta(checkpointKey(space), ck);
  return to;
}

async function opened(w: World, storage: Storage): Promise<SpaceReplica> {
  return testReplica(w.space, w.group, { clock: w.clock, storage });
}

function same(a: SpaceReplica, b: SpaceReplica): void {
  expect(toHex(a.state.canonicalState(1))).toBe(toHex(b.state.canonicalState(1)));
  expect(a.state.opIds().map(toHex)).toEqual(b.state.opIds().map(toHex));
  expect(a.currentHeads().map(toHex)).toEqual(b.currentHeads().map(toHex));
}

function unusable(b: Built): CheckpointError | undefined {
  return b.from === 'log' ? b.unusable : undefined;
}

describe('state checkpoints', () => {
  it('reopen from a checkpoint at every point of a history as a full replay does, and go on alike', async () => {
    const { w, ops } = await history();
    const storage = memoryStorage();
    const live = await opened(w, storage);
    // Written after the whole history: every replica holding it decides on this alike.
    const chat = w.replica('carol').state.channels()[0]?.channelId as ChannelId;
    const next = await w.post('carol', chat, 'after it all');
    for (const [i, op] of ops.entries()) {
      expect((await live.accept(op.sealed)).kind).toBe('accepted');
      const at = await copyOf(storage, w.space, false);
      const r = await opened(w, at);
      expect(await r.checkpoint()).toBe(true);
      expect(await r.checkpoint()).toBe(false);
      // The rest arrives, and is stored after the checkpoint.
      for (const later of ops.slice(i + 1)) expect((await r.accept(later.sealed)).kind).toBe('accepted');
      const fromCheckpoint = await opened(w, await copyOf(at, w.space));
      expect(fromCheckpoint.built).toEqual({ from: 'checkpoint', covered: i + 1, ops: ops.length });
      const fromLog = await opened(w, await copyOf(at, w.space, false));
      expect(fromLog.built).toEqual({ from: 'log', ops: ops.length });
      same(fromCheckpoint, fromLog);
      same(fromCheckpoint, w.replica('bob'));
      // Both go on alike: a duplicate, then a new op.
      for (const r2 of [fromCheckpoint, fromLog]) {
        expect((await r2.accept(op.sealed)).kind).toBe('duplicate');
        expect((await r2.accept(next.sealed)).kind).toBe('accepted');
      }
      same(fromCheckpoint, fromLog);
    }
  });

  it('restores the exact state it saved (snapshot, restore, snapshot give equal bytes)', async () => {
    const { w } = await history();
    for (const name of ['alice', 'bob', 'carol']) {
      const s = w.replica(name).state;
      const saved = encode(s.snapshot());
      const { state, collab } = SpaceState.restore(s.snapshot());
      expect(collab).toBe(true);
      expect(toHex(encode(state.snapshot()))).toBe(toHex(saved));
      expect(toHex(state.canonicalState(5))).toBe(toHex(s.canonicalState(5)));
    }
  });

  it('a damaged, cut, old-format or foreign checkpoint is refused with its reason; the log is replayed and nothing stored changes', async () => {
    const { w, ops } = await history();
    const storage = memoryStorage();
    const r = await opened(w, storage);
    for (const op of ops) await r.accept(op.sealed);
    await r.checkpoint();
    const good = (await storage.getMeta(checkpointKey(w.space))) as Uint8Array;
    expect(decodeCheckpoint(good).count).toBe(ops.length);

    const flipped = good.slice();
    const mid = Math.floor(flipped.length / 2);
    flipped[mid] = (flipped[mid] as number) ^ 0x10;
    const cut = good.slice(0, good.length - 100);
    const oldFormat = good.slice();
    new DataView(oldFormat.buffer).setUint32(4, CHECKPOINT_FORMAT - 1);
    // Well-formed, with its checksum, but saying it covers one op fewer than it holds.
    const body = decodeCheckpoint(good);
    const lying = (() => {
      const b = good.slice();
      const v = new DataView(b.buffer);
      // The count follows the space (0x50 + 16 bytes) in the body's array: rewrite it and re-sum.
      const at = 8 + 1 + 1 + 16;
      expect(b[at]).toBe(0x18); // a one-byte count
      b[at + 1] = body.count - 1;
      v.setUint32(b.length - 4, crc32(b.subarray(0, b.length - 4)));
      return b;
    })();
    // Another store's checkpoint of the same Space: the same first ops, then others.
    const other = memoryStorage();
    const o = await opened(w, other);
    for (const op of ops.slice(0, 10)) await o.accept(op.sealed);
    const chat = w.replica('alice').state.channels()[0]?.channelId as ChannelId;
    const x = await o.write(w.person('alice'), w.epoch(1), 'CreatePost', postBody(chat, 'elsewhere'));
    expect(x.kind === 'written' && x.outcome.kind).toBe('accepted');
    await o.checkpoint();
    const foreign = (await other.getMeta(checkpointKey(w.space))) as Uint8Array;

    const cases: [string, Uint8Array, CheckpointError['code']][] = [
      ['flipped', flipped, 'corrupt'],
      ['cut', cut, 'corrupt'],
      ['empty', new Uint8Array(0), 'corrupt'],
      ['old format', oldFormat, 'version'],
      ['lying count', lying, 'corrupt'],
      ['foreign', foreign, 'mismatch'],
    ];
    for (const [what, bytes, code] of cases) {
      const store = await copyOf(storage, w.space, false);
      await store.putMeta(checkpointKey(w.space), bytes);
      const reopened = await opened(w, store);
      expect(reopened.built.from, what).toBe('log');
      expect(unusable(reopened.built)?.code, what).toBe(code);
      expect(unusable(reopened.built)).toBeInstanceOf(CheckpointError);
      same(reopened, r);
      expect(await store.getMeta(checkpointKey(w.space)), what).toEqual(bytes);
      expect(await store.countOps(w.space)).toBe(ops.length);
    }

    // A checkpoint of another Space in this Space's key.
    const elsewhere = await copyOf(storage, w.space, false);
    const otherSpace = testSpaceId(99);
    const moved = good.slice();
    moved.set(otherSpace, 8 + 2);
    new DataView(moved.buffer).setUint32(moved.length - 4, crc32(moved.subarray(0, moved.length - 4)));
    await elsewhere.putMeta(checkpointKey(w.space), moved);
    expect(unusable((await opened(w, elsewhere)).built)?.code).toBe('mismatch');

    // A store that lost its last ops (heads no longer those the checkpoint and its tail give).
    const shorter = memoryStorage();
    const s = await opened(w, shorter);
    for (const op of ops.slice(0, 20)) await s.accept(op.sealed);
    await shorter.putMeta(checkpointKey(w.space), good);
    const short = await opened(w, shorter);
    expect(unusable(short.built)?.code).toBe('mismatch');
    expect(short.state.size).toBe(20);
  });

  it('never loses an acknowledged op: not after the last checkpoint, nor when a checkpoint write fails', async () => {
    const { w, ops } = await history();
    const storage = memoryStorage();
    let refuse = false;
    const flaky: Storage = {
      ...storage,
      putMeta: (key, value) =>
        refuse ? Promise.reject(new StorageError('quota', 'full')) : storage.putMeta(key, value),
    };
    const r = await opened(w, flaky);
    for (const op of ops.slice(0, 15)) await r.accept(op.sealed);
    expect(await r.checkpoint()).toBe(true);
    for (const op of ops.slice(15, 25)) expect((await r.accept(op.sealed)).kind).toBe('accepted');
    refuse = true;
    await expect(r.checkpoint()).rejects.toThrow(StorageError);
    expect(r.sinceCheckpoint).toBe(10);
    for (const op of ops.slice(25)) expect((await r.accept(op.sealed)).kind).toBe('accepted');
    // The device stops here (no checkpoint on the way out).
    const reopened = await opened(w, storage);
    expect(reopened.built).toEqual({ from: 'checkpoint', covered: 15, ops: ops.length });
    same(reopened, r);
    expect(reopened.sinceCheckpoint).toBe(ops.length - 15);
  });

  it('holds a checkpoint in IndexedDB, and a reopened replica starts from it', async () => {
    const { w, ops } = await history();
    const factory = new IDBFactory();
    const store = await idbStorage('conclave-checkpoint-test', factory);
    const r = await opened(w, store);
    for (const op of ops) await r.accept(op.sealed);
    await r.checkpoint();
    const more = await w.post(
      'bob',
      w.replica('bob').state.channels()[0]?.channelId as ChannelId,
      'one more',
    );
    await r.accept(more.sealed);
    await store.close();
    const again = await idbStorage('conclave-checkpoint-test', factory);
    const reopened = await opened(w, again);
    expect(reopened.built).toEqual({ from: 'checkpoint', covered: ops.length, ops: ops.length + 1 });
    same(reopened, r);
    const body = decodeCheckpoint((await again.getMeta(checkpointKey(w.space))) as Uint8Array);
    expect(list(body.state, 3)).toHaveLength(3);
    await again.close();
  });
});
