import { describe, expect, it } from 'vitest';
import { equalBytes } from '../protocol/index.js';
import type { AcceptOutcome } from './replica.js';
import { World, newId, postBody } from './scenario.js';

function kinds(outcomes: readonly AcceptOutcome[]): string[] {
  return outcomes.map((o) => (o.kind === 'rejected' ? `rejected:${o.reason}` : o.kind));
}

describe('a post while its author is being banned', () => {
  async function world() {
    const w = await World.create(['alice', 'bob', 'john']);
    const { chat, ops } = await w.setUp();
    const promote = await w.write('alice', 'AssignRole', { user: w.person('bob').user, role: 'moderator' });
    await w.deliver('bob', promote);
    await w.deliver('john', promote);
    // Epoch 2: John is removed from the MLS group.
    w.group.setEpoch(2, [w.person('alice').user, w.person('bob').user]);
    return { w, chat, setup: [...ops, promote] };
  }

  it('(A) a post the remover had seen stays, unmarked', async () => {
    const { w, chat } = await world();
    const post = await w.post('john', chat, 'hello before the ban');
    expect(kinds(await w.deliver('alice', post))).toEqual(['accepted']);
    const ban = await w.write('alice', 'Ban', { user: w.person('john').user, atEpoch: 2, reason: 'spam' }, 2);
    expect(ban.outcome.kind).toBe('accepted');
    expect(kinds(await w.deliver('bob', post, ban))).toEqual(['accepted', 'accepted']);
    for (const n of ['alice', 'bob']) {
      const p = w.replica(n).state.post(post.post);
      expect(p?.deleted).toBe(false);
      expect(p?.lateAfterRemoval).toBe(false);
      expect(w.replica(n).state.isBanned(w.person('john').user)).toBe(true);
    }
  });

  it('(B) a pre-removal post that arrives after the removal is accepted and marked lateAfterRemoval', async () => {
    const { w, chat } = await world();
    const post = await w.post('john', chat, 'written at epoch 1, delivered late');
    const ban = await w.write('alice', 'Ban', { user: w.person('john').user, atEpoch: 2, reason: 'spam' }, 2);
    const alice = await w.deliver('alice', post);
    expect(alice).toHaveLength(1);
    expect(alice[0]).toMatchObject({ kind: 'accepted', lateAfterRemoval: true });
    // Bob happens to get the post first: the mark is the same, since the ban did not see it.
    expect(kinds(await w.deliver('bob', post, ban))).toEqual(['accepted', 'accepted']);
    for (const n of ['alice', 'bob']) {
      expect(w.replica(n).state.post(post.post)).toMatchObject({ deleted: false, lateAfterRemoval: true });
    }
    expect(w.replica('alice').state.canonicalState()).toEqual(w.replica('bob').state.canonicalState());

    // Then a moderator deletes it, and it is hidden everywhere.
    const del = await w.write(
      'bob',
      'DeletePost',
      { post: post.post, reason: 'posted while being banned' },
      2,
    );
    expect(del.outcome.kind).toBe('accepted');
    await w.deliver('alice', del);
    for (const n of ['alice', 'bob']) {
      const st = w.replica(n).state;
      expect(st.post(post.post)).toMatchObject({ deleted: true, deletedBy: w.person('bob').user });
      expect(st.postsIn(chat).some((p) => equalBytes(p.postId, post.post))).toBe(false);
      expect(st.postsIn(chat, undefined, true).some((p) => equalBytes(p.postId, post.post))).toBe(true);
      expect(st.auditLog().map((e) => e.kind)).toEqual([
        'CreateSpace',
        'CreateChannel',
        'CreateChannel',
        'AssignRole',
        'Ban',
        'DeletePost',
      ]);
    }
  });

  it('(C) a post stamped with the removal epoch or later is rejected, and so is one that saw the ban', async () => {
    const { w, chat } = await world();
    const ban = await w.write('alice', 'Ban', { user: w.person('john').user, atEpoch: 2, reason: 'spam' }, 2);
    // John still holds the epoch 2 key in this double; the membership history refuses him.
    const atE2 = await w.write('john', 'CreatePost', postBody(chat, 'after the ban'), 2);
    expect(kinds(await w.deliver('alice', atE2))).toEqual(['rejected:not-member']);
    expect(kinds(await w.deliver('bob', ban, atE2))).toEqual(['accepted', 'rejected:not-member']);
    // John saw his ban and tries an older epoch stamp: his op depends on an epoch 2 op.
    await w.deliver('john', ban);
    const sneaky = await w.post('john', chat, 'pretending to be early');
    expect(sneaky.outcome).toMatchObject({ kind: 'rejected', reason: 'epoch-regression' });
    expect(kinds(await w.deliver('alice', sneaky))).toEqual(['rejected:epoch-regression']);
  });

  it('a member who saw its ban or removal (written before the commit) cannot write with an older epoch', async () => {
    const { w, chat } = await world();
    const ban = await w.write('alice', 'Ban', { user: w.person('john').user, atEpoch: 2, reason: '' }, 1);
    await w.deliver('john', ban);
    const banned = await w.post('john', chat, 'still here?');
    expect(banned.outcome).toMatchObject({ kind: 'rejected', reason: 'banned' });
    expect(kinds(await w.deliver('bob', ban, banned))).toEqual(['accepted', 'rejected:banned']);

    const w2 = await world();
    const kick = await w2.w.write(
      'alice',
      'RemoveMember',
      { user: w2.w.person('john').user, atEpoch: 2, reason: '' },
      1,
    );
    await w2.w.deliver('john', kick);
    const kicked = await w2.w.post('john', w2.chat, 'still here?');
    expect(kicked.outcome).toMatchObject({ kind: 'rejected', reason: 'not-member' });
  });
});

describe('moderation precedence', () => {
  it('a delete wins over a concurrent edit, on every replica', async () => {
    const w = await World.create(['alice', 'bob', 'carol']);
    const { chat } = await w.setUp();
    const promote = await w.write('alice', 'AssignRole', { user: w.person('bob').user, role: 'moderator' });
    await w.deliver('bob', promote);
    await w.deliver('carol', promote);
    const post = await w.post('carol', chat, 'original');
    await w.deliver('alice', post);
    await w.deliver('bob', post);
    const edit = await w.write('carol', 'EditPost', { post: post.post, text: 'edited', change: null });
    const del = await w.write('bob', 'DeletePost', { post: post.post, reason: 'off topic' });
    await w.deliver('carol', del);
    await w.deliver('bob', edit);
    await w.deliver('alice', del, edit);
    for (const n of ['alice', 'bob', 'carol']) {
      const p = w.replica(n).state.post(post.post);
      expect(p).toMatchObject({ deleted: true, text: 'edited', edited: true });
      expect(p?.history.map((h) => h.text)).toEqual(['original', 'edited']);
    }
    const a = w.replica('alice').state.canonicalState();
    expect(w.replica('bob').state.canonicalState()).toEqual(a);
    expect(w.replica('carol').state.canonicalState()).toEqual(a);
  });

  async function muteWorld() {
    const w = await World.create(['alice', 'bob', 'carol']);
    const { chat } = await w.setUp();
    const promote = await w.write('alice', 'AssignRole', { user: w.person('bob').user, role: 'moderator' });
    await w.deliver('bob', promote);
    await w.deliver('carol', promote);
    return { w, chat, carol: w.person('carol').user };
  }

  it('concurrent mute by a moderator and unmute by an admin: the admin wins', async () => {
    const { w, carol, chat } = await muteWorld();
    const mute = await w.write('bob', 'Mute', { user: carol, untilMs: null, reason: 'heated' });
    const unmute = await w.write('alice', 'Unmute', { user: carol });
    await w.deliver('alice', mute);
    await w.deliver('bob', unmute);
    await w.deliver('carol', unmute, mute);
    for (const n of ['alice', 'bob', 'carol']) {
      expect(w.replica(n).state.isMutedAt(carol, w.clock.now())).toBe(false);
    }
    // Carol, having seen both, can post.
    expect((await w.post('carol', chat, 'thanks')).outcome.kind).toBe('accepted');
  });

  it('concurrent mute by an admin and unmute by a moderator: the admin wins', async () => {
    const { w, carol, chat } = await muteWorld();
    const unmute = await w.write('bob', 'Unmute', { user: carol });
    const mute = await w.write('alice', 'Mute', { user: carol, untilMs: null, reason: 'heated' });
    await w.deliver('alice', unmute);
    await w.deliver('bob', mute);
    await w.deliver('carol', mute, unmute);
    for (const n of ['alice', 'bob', 'carol']) {
      expect(w.replica(n).state.isMutedAt(carol, w.clock.now())).toBe(true);
    }
    const attempt = await w.post('carol', chat, 'let me talk');
    expect(attempt.outcome).toMatchObject({ kind: 'rejected', reason: 'muted' });
    expect(kinds(await w.deliver('alice', attempt))).toEqual(['rejected:muted']);
  });

  it('a timeout expires: posts after its end are accepted', async () => {
    const { w, carol, chat } = await muteWorld();
    const t = await w.write('bob', 'Timeout', {
      user: carol,
      untilMs: w.clock.now() + 60_000,
      reason: 'cool down',
    });
    await w.deliver('carol', t);
    expect((await w.post('carol', chat, 'during')).outcome).toMatchObject({
      kind: 'rejected',
      reason: 'muted',
    });
    w.clock.advance(61_000);
    expect((await w.post('carol', chat, 'after')).outcome.kind).toBe('accepted');
  });

  it("a demoted moderator's later delete is refused; one concurrent with the demotion stands", async () => {
    const w = await World.create(['alice', 'bob', 'carol']);
    const { chat } = await w.setUp();
    const promote = await w.write('alice', 'AssignRole', { user: w.person('bob').user, role: 'moderator' });
    const p1 = await w.post('carol', chat, 'one');
    const p2 = await w.post('carol', chat, 'two');
    await w.deliver('bob', promote, p1, p2);
    await w.deliver('alice', p1, p2);
    const demote = await w.write('alice', 'RevokeRole', { user: w.person('bob').user, role: 'moderator' });
    const concurrent = await w.write('bob', 'DeletePost', { post: p1.post, reason: '' });
    expect(concurrent.outcome.kind).toBe('accepted');
    await w.deliver('bob', demote);
    const later = await w.write('bob', 'DeletePost', { post: p2.post, reason: '' });
    expect(later.outcome).toMatchObject({ kind: 'rejected', reason: 'unauthorized' });
    expect(kinds(await w.deliver('alice', concurrent, later))).toEqual(['accepted', 'rejected:unauthorized']);
    expect(w.replica('alice').state.post(p1.post)?.deleted).toBe(true);
    expect(w.replica('alice').state.post(p2.post)?.deleted).toBe(false);
    expect(w.replica('alice').state.roleOf(w.person('bob').user)).toBe('member');
  });

  it('a member cannot delete, mute or assign roles', async () => {
    const w = await World.create(['alice', 'carol', 'dave']);
    const { chat } = await w.setUp();
    const p = await w.post('alice', chat, 'admin post');
    await w.deliver('carol', p);
    const tries = [
      await w.write('carol', 'DeletePost', { post: p.post, reason: '' }),
      await w.write('carol', 'Mute', { user: w.person('dave').user, untilMs: null, reason: '' }),
      await w.write('carol', 'AssignRole', { user: w.person('carol').user, role: 'admin' }),
      await w.write('carol', 'CreateChannel', { channel: newId(), name: 'x', type: 'chat', topic: '' }),
    ];
    expect(tries.map((t) => (t.outcome.kind === 'rejected' ? t.outcome.reason : t.outcome.kind))).toEqual([
      'unauthorized',
      'unauthorized',
      'unauthorized',
      'unauthorized',
    ]);
  });

  it('a re-created PostId is refused', async () => {
    const w = await World.create(['alice', 'carol']);
    const { chat } = await w.setUp();
    const p = await w.post('carol', chat, 'first');
    const again = await w.post('carol', chat, 'second', { post: p.post });
    expect(again.outcome).toMatchObject({ kind: 'rejected', reason: 'duplicate-id' });
    expect(kinds(await w.deliver('alice', p, again))).toEqual(['accepted', 'rejected:duplicate-id']);
    expect(w.replica('alice').state.post(p.post)?.text).toBe('first');
  });

  it('an op depending on a later-epoch op is refused', async () => {
    const w = await World.create(['alice', 'bob']);
    const { chat } = await w.setUp();
    w.group.setEpoch(2, [w.person('alice').user, w.person('bob').user]);
    const first = await w.post('alice', chat, 'at epoch 1');
    const e2 = await w.write('alice', 'CreatePost', postBody(chat, 'epoch 2'), 2);
    expect(e2.outcome.kind).toBe('accepted');
    const back = await w.post('alice', chat, 'back to epoch 1');
    expect(back.outcome).toMatchObject({ kind: 'rejected', reason: 'epoch-regression' });
    await w.deliver('bob', first, e2);
    expect(kinds(await w.deliver('bob', back))).toEqual(['rejected:epoch-regression']);
  });

  it('an edit by someone other than the author is refused; the author’s edits keep a history', async () => {
    const w = await World.create(['alice', 'carol']);
    const { chat } = await w.setUp();
    const p = await w.post('carol', chat, 'v1');
    await w.deliver('alice', p);
    const foreign = await w.write('alice', 'EditPost', { post: p.post, text: 'hijacked', change: null });
    expect(foreign.outcome).toMatchObject({ kind: 'rejected', reason: 'unauthorized' });
    await w.write('carol', 'EditPost', { post: p.post, text: 'v2', change: null });
    await w.write('carol', 'EditPost', { post: p.post, text: 'v3', change: null });
    const view = w.replica('carol').state.post(p.post);
    expect(view?.text).toBe('v3');
    expect(view?.history.map((h) => h.text)).toEqual(['v1', 'v2', 'v3']);
  });
});

describe('roles', () => {
  it('a role assigned concurrently with its revocation stays (add wins); a revoke that saw it removes it', async () => {
    const w = await World.create(['alice', 'dan', 'carol']);
    await w.setUp();
    const makeDanAdmin = await w.write('alice', 'AssignRole', { user: w.person('dan').user, role: 'admin' });
    await w.deliver('dan', makeDanAdmin);
    await w.deliver('carol', makeDanAdmin);
    const carol = w.person('carol').user;
    // Alice promotes Carol while Dan, who has not seen that, revokes Carol's moderator role.
    const assign = await w.write('alice', 'AssignRole', { user: carol, role: 'moderator' });
    const revoke = await w.write('dan', 'RevokeRole', { user: carol, role: 'moderator' });
    await w.deliver('alice', revoke);
    await w.deliver('dan', assign);
    for (const n of ['alice', 'dan']) expect(w.replica(n).state.roleOf(carol)).toBe('moderator');
    // Dan, now having seen the assignment, revokes again: that one removes it.
    const revoke2 = await w.write('dan', 'RevokeRole', { user: carol, role: 'moderator' });
    await w.deliver('alice', revoke2);
    for (const n of ['alice', 'dan']) expect(w.replica(n).state.roleOf(carol)).toBe('member');
    expect(w.replica('alice').state.canonicalState()).toEqual(w.replica('dan').state.canonicalState());
  });
});
