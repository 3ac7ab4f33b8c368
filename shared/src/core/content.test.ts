/**
 * Sealed content (section 6.2): the readable part of posts, threads and edits is sealed under
 * the epoch's content key, the rest of the op under its control key. A member without an
 * epoch's content key (it joined a Space that hides its history) accepts, places and checks
 * every op of that epoch exactly as the others do, and reads none of what it says.
 */
import { describe, expect, it } from 'vitest';
import { memoryStorage } from '../ports/storage.memory.js';
import { type PostId, type UserId, bytesKey } from '../protocol/index.js';
import { World, newId } from './scenario.js';
import { nodeAead } from '../crypto/aead.node.js';
import { TestGroup, testReplica } from './testkit.js';

/** Hands out a content key no member has. */
class WrongContentKey extends TestGroup {
  override contentKey(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(32).fill(9));
  }
}

/** A Space of alice and bob where epoch 2 adds dave, who has content keys from epoch 2 only. */
async function withLateJoiner() {
  const w = await World.create(['alice', 'bob', 'dave']);
  const users = (names: string[]): UserId[] => names.map((n) => w.person(n).user);
  // Epoch 1 is alice and bob; dave joins at epoch 2.
  w.group.setEpoch(1, users(['alice', 'bob']));
  w.group.setEpoch(2, users(['alice', 'bob', 'dave']));
  const daveKeys = new TestGroup();
  daveKeys.setEpoch(0, users(['alice']));
  daveKeys.setEpoch(1, users(['alice', 'bob']));
  daveKeys.setEpoch(2, users(['alice', 'bob', 'dave']));
  daveKeys.contentFrom = 2;
  const storage = memoryStorage();
  const dave = await testReplica(w.space, daveKeys, { clock: w.clock, storage });
  w.replicas.set('dave', dave);
  return { w, daveKeys, storage };
}

describe('content sealed apart from the op', () => {
  it('a member without the earlier content keys accepts every earlier op and reads none of it', async () => {
    const { w, daveKeys, storage } = await withLateJoiner();
    // The Space's genesis and channels reach dave too (setUp delivers them to everyone).
    const { chat, forum } = await w.setUp();
    const edited = await w.post('alice', chat, 'said before dave joined');
    const oldThread = await w.thread('bob', forum, 'a thread from before');
    const edit = await w.write('alice', 'EditPost', {
      post: edited.post,
      text: 'edited before',
      change: null,
    });
    await w.deliver('bob', edited, edit);
    await w.deliver('alice', oldThread);
    const reply = await w.post('bob', chat, 'a reply from before', { parent: edited.post });
    await w.deliver('alice', reply);
    const after = await w.post('alice', chat, 'said after dave joined', {}, 2);
    await w.deliver('bob', after);
    const replyAfter = await w.post('bob', chat, 'replying to the old post', { parent: edited.post }, 2);
    await w.deliver('alice', replyAfter);
    const all = [edited, oldThread, edit, reply, after, replyAfter];
    const outcomes = await w.deliver('dave', ...all);
    expect(outcomes.map((o) => o.kind)).toEqual(all.map(() => 'accepted'));
    const daveSays = await w.post('dave', chat, 'hello, I am new', {}, 2);
    await w.deliver('alice', daveSays);
    await w.deliver('bob', daveSays);

    const dave = w.replica('dave').state;
    // Everything placed: the same heads and the same channels as the others.
    expect(w.replica('dave').currentHeads()).toEqual(w.replica('alice').currentHeads());
    expect(dave.channels().map((c) => c.name)).toEqual(['general', 'ideas']);
    // Only what was said from epoch 2 on is readable; the older posts do not show.
    expect(dave.postsIn(chat, null).map((p) => p.text)).toEqual([
      'said after dave joined',
      'replying to the old post',
      'hello, I am new',
    ]);
    const old = dave.post(edited.post);
    expect(old).toMatchObject({ locked: true, text: '', attachments: [], history: [] });
    const thread = dave.threadsIn(forum)[0];
    expect(thread).toMatchObject({ locked: true, title: '' });
    // The others read everything, dave's post included.
    expect(
      w
        .replica('bob')
        .state.postsIn(chat, null)
        .map((p) => p.text),
    ).toEqual([
      'edited before',
      'a reply from before',
      'said after dave joined',
      'replying to the old post',
      'hello, I am new',
    ]);

    // Reopened from its store, dave's replica needs no keys at all and shows the same.
    const reopened = await testReplica(w.space, daveKeys, { clock: w.clock, storage });
    expect(reopened.state.postsIn(chat, null).map((p) => p.text)).toEqual(
      dave.postsIn(chat, null).map((p) => p.text),
    );
    expect(reopened.state.post(edited.post)?.locked).toBe(true);
  });

  it('content that does not open is accepted and shows to nobody, so readers and non-readers agree', async () => {
    const w = await World.create(['alice', 'bob']);
    const { chat, ops } = await w.setUp();
    // Alice's client seals her content under a key nobody has (a bug or a hostile client):
    // every member, and her own replica, accepts the op without its content.
    const ok = await w.post('alice', chat, 'readable');
    const post = newId<PostId>();
    const wrong = new WrongContentKey();
    wrong.setEpoch(0, [w.person('alice').user]);
    wrong.setEpoch(1, [w.person('alice').user, w.person('bob').user]);
    const forging = await testReplica(w.space, wrong, { clock: w.clock });
    for (const x of [...ops, ok]) await forging.accept(x.sealed);
    await w.deliver('bob', ok);
    const sealed = await forging.write(w.person('alice'), w.epoch(1), 'CreatePost', {
      post,
      channel: chat,
      thread: null,
      parent: null,
      text: 'under the wrong key',
      body: null,
      attachments: [],
      collab: null,
    });
    expect(sealed.kind).toBe('written');
    if (sealed.kind !== 'written') return;
    for (const name of ['alice', 'bob']) {
      const [outcome] = await w.deliver(name, {
        sealed: sealed.sealed,
        opId: sealed.opId,
        outcome: sealed.outcome,
      });
      expect(outcome?.kind, name).toBe('accepted');
      const view = w.replica(name).state;
      expect(view.post(post)?.locked).toBe(true);
      expect(view.postsIn(chat, null).map((p) => p.text)).toEqual(['readable']);
    }
    expect(bytesKey(ok.opId)).not.toBe(bytesKey(sealed.opId));

    // The same on a Node host, whose AES-GCM opens content synchronously.
    const onNode = await testReplica(w.space, w.group, { clock: w.clock, aead: nodeAead() });
    for (const x of [...ops, ok]) expect((await onNode.accept(x.sealed)).kind).toBe('accepted');
    expect((await onNode.accept(sealed.sealed)).kind).toBe('accepted');
    expect(onNode.state.post(post)?.locked).toBe(true);
    expect(onNode.state.postsIn(chat, null).map((p) => p.text)).toEqual(['readable']);
    expect(bytesKey(onNode.state.canonicalState())).toBe(bytesKey(w.replica('bob').state.canonicalState()));
  });
});
