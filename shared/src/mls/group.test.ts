import { describe, expect, it } from 'vitest';
import type { AcceptOutcome } from '../core/replica.js';
import { newId, postBody } from '../core/scenario.js';
import { ManualClock, testEd25519, testSpaceId } from '../core/testkit.js';
import { topicId } from '../crypto/sha256.js';
import { webRng } from '../ports/env.js';
import {
  type ChannelId,
  type ContentKind,
  type Drafts,
  type EpochRef,
  type OpId,
  type OpKind,
  type UnsignedOp,
  OP_VERSION,
  canonicalDeps,
  contentAd,
  encodeContent,
  encodeOp,
  encodeUnsigned,
  equalBytes,
  isContentKind,
  sealContent,
  sealWith,
  splitDraft,
} from '../protocol/index.js';
import { type Change, type PendingCommit, type ProcessOutcome, SpaceGroup } from './group.js';
import { MlsPeer, aead } from './mls.testkit.js';
import { commitContext, stateCommitPolicy } from './policy.js';

const SPACE = testSpaceId(42);

function kinds(outcomes: readonly AcceptOutcome[]): string[] {
  return outcomes.map((o) =>
    o.kind === 'rejected' ? `rejected:${o.reason}` : o.kind === 'buffered' ? `buffered:${o.why}` : o.kind,
  );
}

/** A Space whose first peer created it (epoch 0) and wrote CreateSpace and a chat channel. */
async function founded(names: readonly string[]) {
  const clock = new ManualClock();
  const peers = [];
  for (const n of names) peers.push(await MlsPeer.create(n, SPACE, clock));
  const admin = peers[0] as MlsPeer;
  await admin.device.createSpace(SPACE);
  const log: Uint8Array[] = [];
  log.push(await admin.write('CreateSpace', { name: 'Test Space', description: '' }));
  const chat = newId<ChannelId>();
  log.push(await admin.write('CreateChannel', { channel: chat, name: 'general', type: 'chat', topic: '' }));
  return { clock, peers, admin, chat, log };
}

/** Commits `change` by `by` (applied after the "relay ack"), processed by `others`. */
async function commit(
  by: MlsPeer,
  change: Change,
  others: readonly MlsPeer[],
  options: { keyHistory?: boolean } = {},
): Promise<{ pending: PendingCommit; outcomes: ProcessOutcome[] }> {
  const r = await by.group.prepare(change, { ...options, context: contextOf(by) });
  if (r.kind !== 'ready') throw new Error(`commit refused: ${r.reason} ${r.detail}`);
  const mine = await by.group.confirm(r.commit);
  expect(mine.kind).toBe('applied');
  await by.device.save(by.group);
  const outcomes: ProcessOutcome[] = [];
  for (const o of others) {
    outcomes.push(await o.group.process(r.commit.handshake));
    await o.device.save(o.group);
  }
  return { pending: r.commit, outcomes };
}

/** The commit context of `p`: its op-log heads, by which receivers judge its authority. */
function contextOf(p: MlsPeer): Uint8Array {
  return commitContext(p.replica.currentHeads());
}

/** Adds `joiner` by `by`; `others` process the commit; the joiner joins from the Welcome. */
async function admit(by: MlsPeer, joiner: MlsPeer, others: readonly MlsPeer[], keyHistory: boolean) {
  const kp = await joiner.device.keyPackage();
  const { pending, outcomes } = await commit(by, { kind: 'add', keyPackages: [kp] }, others, { keyHistory });
  expect(outcomes.map((o) => o.kind)).toEqual(others.map(() => 'applied'));
  const j = await joiner.device.join(pending.welcome as Uint8Array);
  if (j.kind !== 'joined') throw new Error(`join failed: ${j.reason} ${j.detail}`);
  return pending;
}

async function deliver(to: MlsPeer, sealed: readonly Uint8Array[]): Promise<string[]> {
  const out: AcceptOutcome[] = [];
  for (const s of sealed) out.push(await to.replica.accept(s));
  const again = await to.replica.retryHeld();
  return [...kinds(out), ...(again.length > 0 ? ['retry', ...kinds(again)] : [])];
}

/** An op signed by `by` and sealed with an arbitrary key and epoch: what a removed member could forge. */
async function forge<K extends OpKind>(
  by: MlsPeer,
  epoch: EpochRef,
  key: Uint8Array,
  kind: K,
  body: Drafts[K],
  deps: readonly OpId[],
): Promise<Uint8Array> {
  const split = splitDraft(kind, body);
  const content =
    split.content === undefined || !isContentKind(kind)
      ? undefined
      : await sealContent(
          aead,
          key,
          contentAd(SPACE, epoch, kind, by.identity.device),
          encodeContent<ContentKind>(kind, split.content),
          webRng.randomBytes(12),
        );
  const unsigned = {
    v: OP_VERSION,
    space: SPACE,
    kind,
    body: content === undefined ? split.body : { ...split.body, content },
    deps: canonicalDeps(deps),
    epoch,
    hlc: { wallMs: by.clock.now() + 1000, counter: 0 },
    author: by.identity.device,
    cert: by.identity.cert,
  } as UnsignedOp;
  const sig = await by.identity.deviceKey.sign(encodeUnsigned(unsigned));
  return sealWith(aead, encodeOp({ ...unsigned, sig }), topicId(SPACE), epoch, key, webRng.randomBytes(12));
}

describe('a Space as an MLS group', () => {
  it('members added by one commit share the epoch, its content key and the member list', async () => {
    const { peers, admin } = await founded(['alice', 'bob', 'carol']);
    const [, bob, carol] = peers as [MlsPeer, MlsPeer, MlsPeer];
    const kps = [await bob.device.keyPackage(), await carol.device.keyPackage()];
    const { pending } = await commit(admin, { kind: 'add', keyPackages: kps }, []);
    for (const p of [bob, carol])
      expect((await p.device.join(pending.welcome as Uint8Array)).kind).toBe('joined');
    const e = admin.group.epoch;
    expect(e.epoch).toBe(1);
    for (const p of [bob, carol]) {
      expect(p.group.epoch).toEqual(e);
      expect(p.group.epochKey(e)).toEqual(admin.group.epochKey(e));
      expect(p.group.members().map((m) => m.user)).toEqual(admin.group.members().map((m) => m.user));
    }
    expect(admin.group.members()).toHaveLength(3);
    // Each request gets a different key package; the stock of fresh ones stays topped up.
    expect(bob.device.stockSize).toBe(5);
    const [k1, k2] = [await bob.device.keyPackage(), await bob.device.keyPackage()];
    expect(k1).not.toEqual(k2);
    expect(bob.device.stockSize).toBe(5);
    await bob.reopen();
    expect(await bob.device.keyPackage()).not.toEqual(k2);
  });

  it('a self-update moves everyone to a new epoch with a new content key', async () => {
    const { peers, admin } = await founded(['alice', 'bob']);
    const bob = peers[1] as MlsPeer;
    await admit(admin, bob, [], false);
    const before = admin.group.epoch;
    const { outcomes } = await commit(bob, { kind: 'update' }, [admin]);
    expect(outcomes[0]?.kind).toBe('applied');
    expect(admin.group.epoch.epoch).toBe(before.epoch + 1);
    expect(admin.group.epoch).toEqual(bob.group.epoch);
    expect(admin.group.epochKey(admin.group.epoch)).toEqual(bob.group.epochKey(bob.group.epoch));
    expect(admin.group.epochKey(admin.group.epoch)).not.toEqual(admin.group.epochKey(before));
  });

  it('rotates when an epoch has sealed too many ops or grown too old', async () => {
    const clock = new ManualClock();
    const p = await MlsPeer.create('alice', SPACE, clock, { rotation: { maxAgeMs: 60_000, maxMessages: 3 } });
    await p.device.createSpace(SPACE);
    expect(p.group.needsRotation()).toBe(false);
    await p.write('CreateSpace', { name: 'x', description: '' });
    p.group.noteSent(2);
    expect(p.group.needsRotation()).toBe(true);
    await commit(p, { kind: 'update' }, []);
    expect(p.group.needsRotation()).toBe(false);
    clock.advance(60_000);
    expect(p.group.needsRotation()).toBe(true);
  });
});

describe('removal: the post while being banned, with real MLS keys', () => {
  it('a removed member opens nothing after its removal; its later-epoch ops are refused; its late post is marked', async () => {
    const { peers, admin, chat, log } = await founded(['alice', 'bob', 'john']);
    const [, bob, john] = peers as [MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    expect(await deliver(bob, log)).toEqual(['accepted', 'accepted']);
    await admit(admin, john, [bob], true);
    expect(await deliver(john, log)).toEqual(['accepted', 'accepted']);
    const e2 = admin.group.epoch;
    // John posts at e2; nobody has it yet.
    const late = await john.write('CreatePost', postBody(chat, 'written before the ban'));
    // Alice removes John: a Remove commit and the signed RemoveMember op at the new epoch.
    const { outcomes } = await commit(admin, { kind: 'remove', devices: [john.identity.device] }, [
      bob,
      john,
    ]);
    expect(outcomes.map((o) => o.kind)).toEqual(['applied', 'removed-self']);
    const e3 = admin.group.epoch;
    expect(bob.group.epoch).toEqual(e3);
    expect(john.group.active).toBe(false);
    const removal = await admin.write('RemoveMember', {
      user: john.identity.user,
      atEpoch: e3.epoch,
      reason: 'spam',
    });
    const after = await admin.write('CreatePost', postBody(chat, 'john is gone'));

    // John has no key for e3: everything sealed after his removal stays closed to him.
    expect(john.group.epochKey(e3)).toBeUndefined();
    expect(await john.device.epochKey(SPACE, e3)).toBeUndefined();
    expect(await deliver(john, [removal, after])).toEqual([
      'buffered:awaiting-epoch',
      'buffered:awaiting-epoch',
      'retry',
      'buffered:awaiting-epoch',
      'buffered:awaiting-epoch',
    ]);

    // Bob gets the removal first, then John's post from before it: accepted, marked late.
    expect(await deliver(bob, [removal, after, late])).toEqual(['accepted', 'accepted', 'accepted']);
    const view = bob.replica.state.postsIn(chat).find((p) => p.text === 'written before the ban');
    expect(view?.lateAfterRemoval).toBe(true);

    expect(await deliver(admin, [late])).toEqual(['accepted']);
    // John stamps e3: without its key the seal fails; with the key (leaked) he is no member.
    const deps = bob.replica.currentHeads();
    const guessed = await forge(john, e3, webRng.randomBytes(32), 'CreatePost', postBody(chat, 'x'), deps);
    const leaked = admin.group.epochKey(e3) as Uint8Array;
    const stamped = await forge(john, e3, leaked, 'CreatePost', postBody(chat, 'y'), deps);
    const state = bob.replica.state.canonicalState();
    for (const p of [admin, bob]) {
      expect(await deliver(p, [guessed, stamped])).toEqual(['rejected:bad-seal', 'rejected:not-member']);
    }
    expect(bob.replica.state.canonicalState()).toEqual(state);
    // And no member commits a change proposed on John's behalf: his handshakes no longer open.
    expect(e2.epoch).toBeLessThan(e3.epoch);
  });
});

describe('history visibility for new members', () => {
  it('with "all" the Welcome carries every past key and membership; with "sinceJoin" no earlier post opens, yet every op is placed', async () => {
    const { peers, admin, chat, log } = await founded(['alice', 'bob', 'carol', 'dave']);
    const [, bob, carol, dave] = peers as [MlsPeer, MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    log.push(await admin.write('CreatePost', postBody(chat, 'hello bob')));
    expect(await deliver(bob, log)).toEqual(['accepted', 'accepted', 'accepted']);
    log.push(await bob.write('CreatePost', postBody(chat, 'hi alice')));
    await commit(bob, { kind: 'update' }, [admin]);
    log.push(await admin.write('CreatePost', postBody(chat, 'after an update')));
    await deliver(bob, log.slice(-1));

    // Carol joins with the history shown to new members: she reads everything.
    await admit(admin, carol, [bob], true);
    const all = await deliver(carol, log);
    expect(all.every((k) => k === 'accepted')).toBe(true);
    expect(carol.replica.state.canonicalState()).toEqual(bob.replica.state.canonicalState());
    expect(
      carol.replica.state
        .postsIn(chat)
        .map((p) => p.text)
        .sort(),
    ).toEqual(['after an update', 'hello bob', 'hi alice']);

    // Dave joins after the admins chose "since join": no key of an earlier epoch reaches him.
    const setting = await admin.write('SetSpaceSettings', {
      name: null,
      description: null,
      historyVisibility: 'sinceJoin',
    });
    await deliver(bob, [setting]);
    await deliver(carol, [setting]);
    await admit(admin, dave, [bob, carol], admin.replica.state.settings().historyVisibility === 'all');
    const joinedAt = dave.group.epoch;
    expect(dave.group.epochs()).toEqual(admin.group.epochs());
    const earlier = admin.group.epochs().filter((e) => e.epoch < joinedAt.epoch);
    expect(earlier).toHaveLength(joinedAt.epoch);
    for (const e of earlier) {
      // The control keys (to place and check every op) reach him; the content keys do not.
      expect(await dave.device.epochKey(SPACE, e)).toEqual(admin.group.epochKey(e));
      expect(await dave.device.contentKey(SPACE, e)).toBeUndefined();
      expect(admin.group.contentKey(e)).toBeDefined();
    }
    expect(carol.group.epochs()).toEqual(admin.group.epochs().slice(0, carol.group.epochs().length));
    const before = await deliver(dave, [...log, setting]);
    expect(before.every((k) => k === 'accepted')).toBe(true);
    expect(dave.replica.currentHeads()).toEqual(carol.replica.currentHeads());
    expect(dave.replica.state.postsIn(chat)).toEqual([]);
    expect(dave.replica.state.settings().historyVisibility).toBe('sinceJoin');
    // What is sealed after his join opens for him, and what he writes opens for everyone.
    const welcome = await admin.write('CreatePost', postBody(chat, 'welcome dave'));
    expect(await dave.device.contentKey(SPACE, joinedAt)).toEqual(admin.group.contentKey(joinedAt));
    expect(await deliver(dave, [welcome])).toEqual(['accepted']);
    const thanks = await dave.write('CreatePost', postBody(chat, 'thanks!'));
    expect(await deliver(carol, [welcome, thanks])).toEqual(['accepted', 'accepted']);
    expect(dave.replica.state.postsIn(chat).map((p) => p.text)).toEqual(['welcome dave', 'thanks!']);
    expect(carol.replica.state.postsIn(chat).map((p) => p.text)).toEqual([
      ...carol.replica.state
        .postsIn(chat)
        .map((p) => p.text)
        .filter((t) => t !== 'welcome dave' && t !== 'thanks!'),
      'welcome dave',
      'thanks!',
    ]);
  });
});

describe('commit authority and bad input', () => {
  it('a member without a role cannot remove anyone; nobody adds a banned user', async () => {
    const { peers, admin, log } = await founded(['alice', 'bob', 'mallory']);
    const [, bob, mallory] = peers as [MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    await admit(admin, mallory, [bob], true);
    await deliver(mallory, log);
    // Mallory's own device refuses; a patched client's commit is refused by every receiver.
    const refused = await mallory.group.prepare(
      { kind: 'remove', devices: [bob.identity.device] },
      { context: contextOf(mallory) },
    );
    expect(refused.kind === 'refused' && refused.reason).toBe('unauthorized');
    const epoch = bob.group.epoch;
    const raw = await bypassPolicy(mallory, { kind: 'remove', devices: [bob.identity.device] });
    for (const p of [admin, bob]) {
      const out = await p.group.process(raw);
      expect(out.kind === 'rejected' && out.reason).toBe('unauthorized');
      expect(p.group.epoch).toEqual(epoch);
    }
    // Alice bans Mallory (kick + Ban op); then no one adds her again.
    const kick = await commit(admin, { kind: 'remove', devices: [mallory.identity.device] }, [bob]);
    expect(kick.outcomes[0]?.kind).toBe('applied');
    const ban = await admin.write('Ban', {
      user: mallory.identity.user,
      atEpoch: admin.group.epoch.epoch,
      reason: 'abuse',
    });
    await deliver(bob, [ban]);
    const again = await admin.group.prepare(
      { kind: 'add', keyPackages: [await mallory.device.keyPackage()] },
      { context: contextOf(admin) },
    );
    expect(again.kind === 'refused' && again.reason).toBe('banned');
  });

  it('a commit is judged by the ops its committer had: held until the receiver has them', async () => {
    const { peers, admin, log } = await founded(['alice', 'bob', 'carol', 'dave']);
    const [, bob, carol, dave] = peers as [MlsPeer, MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    await admit(admin, carol, [bob], true);
    await deliver(carol, log);
    // Alice makes Bob a moderator; Carol has not seen that op when Bob adds Dave.
    const promote = await admin.write('AssignRole', { user: bob.identity.user, role: 'moderator' });
    await deliver(bob, [promote]);
    const { pending } = await commit(bob, { kind: 'add', keyPackages: [await dave.device.keyPackage()] }, [
      admin,
    ]);
    const epoch = carol.group.epoch;
    expect(await carol.group.process(pending.handshake)).toEqual({ kind: 'held', epoch: epoch.epoch });
    expect(carol.group.epoch).toEqual(epoch);
    await deliver(carol, [promote]);
    expect((await carol.group.process(pending.handshake)).kind).toBe('applied');
    expect(carol.group.epoch).toEqual(bob.group.epoch);

    // Judged by the committer's past, not the receiver's present: a later demotion does not undo it.
    const policy = stateCommitPolicy(() => carol.replica.state);
    const bobM = { user: bob.identity.user, device: bob.identity.device };
    const change = { added: [{ user: dave.identity.user, device: dave.identity.device }], removed: [] };
    const demote = await admin.write('RevokeRole', { user: bob.identity.user, role: 'moderator' });
    expect(await deliver(carol, [demote])).toEqual(['accepted']);
    expect(policy.check(bobM, change, contextOf(bob))).toBe('ok');
    expect(policy.check(bobM, change, contextOf(carol))).toBe('unauthorized');
    expect(policy.check(bobM, change, webRng.randomBytes(40))).toBe('unauthorized');
  });

  it('garbage, foreign and replayed handshakes change nothing', async () => {
    const { peers, admin } = await founded(['alice', 'bob']);
    const bob = peers[1] as MlsPeer;
    await admit(admin, bob, [], true);
    const epoch = bob.group.epoch;
    const saved = bob.group.encode();
    const { pending } = await commit(admin, { kind: 'update' }, []);
    const cases: [Uint8Array, string][] = [
      [webRng.randomBytes(200), 'malformed'],
      [new Uint8Array(0), 'malformed'],
      [pending.handshake.subarray(0, pending.handshake.length - 1), 'malformed'],
    ];
    // A flipped ciphertext byte: the seal fails.
    const flipped = pending.handshake.slice();
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 1;
    cases.push([flipped, 'bad-seal']);
    for (const [bytes, reason] of cases) {
      const out = await bob.group.process(bytes);
      expect(out.kind === 'rejected' && out.reason).toBe(reason);
      expect(bob.group.epoch).toEqual(epoch);
    }
    // A handshake of another Space's topic.
    const other = await MlsPeer.create('zed', testSpaceId(9), new ManualClock());
    await other.device.createSpace(testSpaceId(9));
    const foreign = await other.group.prepare({ kind: 'update' });
    if (foreign.kind !== 'ready') throw new Error('no commit');
    const out = await bob.group.process(foreign.commit.handshake);
    expect(out.kind === 'rejected' && out.reason).toBe('malformed');
    expect(bob.group.encode()).toEqual(saved);
    // The real one applies once; a replay of it, and the committer's own echo, are duplicates.
    expect((await bob.group.process(pending.handshake)).kind).toBe('applied');
    expect((await bob.group.process(pending.handshake)).kind).toBe('duplicate');
    expect((await admin.group.process(pending.handshake)).kind).toBe('duplicate');
  });

  it('a Welcome that is garbage or for someone else is refused', async () => {
    const { peers, admin } = await founded(['alice', 'bob', 'carol']);
    const [, bob, carol] = peers as [MlsPeer, MlsPeer, MlsPeer];
    const { pending } = await commit(
      admin,
      { kind: 'add', keyPackages: [await bob.device.keyPackage()] },
      [],
    );
    const garbage = await carol.device.join(webRng.randomBytes(300));
    expect(garbage.kind === 'rejected' && garbage.reason).toBe('malformed');
    const notMine = await carol.device.join(pending.welcome as Uint8Array);
    expect(notMine.kind === 'rejected' && notMine.reason).toBe('unknown-key-package');
    expect(carol.device.spaces()).toEqual([]);
    const bad = await admin.group.prepare(
      { kind: 'add', keyPackages: [webRng.randomBytes(100)] },
      { context: contextOf(admin) },
    );
    expect(bad.kind === 'refused' && bad.reason).toBe('malformed');
  });
});

describe('leaving and concurrent commits', () => {
  it('a leave proposal is committed by the next committer', async () => {
    const { peers, admin, log } = await founded(['alice', 'bob', 'carol']);
    const [, bob, carol] = peers as [MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    await admit(admin, carol, [bob], true);
    const leave = await carol.group.proposeLeave();
    for (const p of [admin, bob]) expect((await p.group.process(leave)).kind).toBe('proposal-stored');
    // Bob (no role) commits a self-update; it carries Carol's leave, which needs no authority.
    const { outcomes } = await commit(bob, { kind: 'update' }, [admin, carol]);
    expect(outcomes.map((o) => o.kind)).toEqual(['applied', 'removed-self']);
    expect(admin.group.members()).toHaveLength(2);
    expect(admin.group.memberAt(admin.group.epoch, carol.identity.user, carol.identity.device)).toBe(
      'not-member',
    );
  });

  it('a commit that lost the race is stale and is made again on the new epoch', async () => {
    const { peers, admin, log } = await founded(['alice', 'bob']);
    const bob = peers[1] as MlsPeer;
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    const a = await admin.group.prepare({ kind: 'update' }, { context: contextOf(admin) });
    const b = await bob.group.prepare({ kind: 'update' }, { context: contextOf(bob) });
    if (a.kind !== 'ready' || b.kind !== 'ready') throw new Error('no commit');
    // The relay acknowledged Alice's first: Bob applies it, and his own is then stale.
    expect((await bob.group.process(a.commit.handshake)).kind).toBe('applied');
    expect((await bob.group.confirm(b.commit)).kind).toBe('stale');
    expect((await admin.group.confirm(a.commit)).kind).toBe('applied');
    // Had a second relay carried Bob's too, Alice's (an admin's) still wins the fork choice.
    expect((await admin.group.process(b.commit.handshake)).kind).toBe('stale');
    const again = await commit(bob, { kind: 'update' }, [admin]);
    expect(again.outcomes[0]?.kind).toBe('applied');
    expect(bob.group.epoch).toEqual(admin.group.epoch);
    expect(
      equalBytes(
        bob.group.epochKey(bob.group.epoch) as Uint8Array,
        admin.group.epochKey(admin.group.epoch) as Uint8Array,
      ),
    ).toBe(true);
  });

  it('two commits on one epoch through two relays: everyone settles on the same winner, keeping the loser’s key', async () => {
    const { peers, admin, chat, log } = await founded(['alice', 'bob', 'carol']);
    const [, bob, carol] = peers as [MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    await admit(admin, carol, [bob], true);
    await deliver(carol, log);
    // Bob and Carol (equal rank) each commit an update through a different relay and apply it.
    const b = await bob.group.prepare({ kind: 'update' }, { context: contextOf(bob) });
    const c = await carol.group.prepare({ kind: 'update' }, { context: contextOf(carol) });
    if (b.kind !== 'ready' || c.kind !== 'ready') throw new Error('no commit');
    await bob.group.confirm(b.commit);
    await carol.group.confirm(c.commit);
    const onBob = await bob.write('CreatePost', postBody(chat, 'sealed on the losing side?'));
    // Alice hears Carol's first, then Bob's; Bob and Carol hear each other's.
    const seen = [
      (await admin.group.process(c.commit.handshake)).kind,
      (await admin.group.process(b.commit.handshake)).kind,
      (await bob.group.process(c.commit.handshake)).kind,
      (await carol.group.process(b.commit.handshake)).kind,
    ];
    expect(admin.group.epoch).toEqual(bob.group.epoch);
    expect(carol.group.epoch).toEqual(bob.group.epoch);
    expect(admin.group.epochKey(admin.group.epoch)).toEqual(carol.group.epochKey(carol.group.epoch));
    // Exactly one of Bob and Carol switched; Alice switched only if Bob's won.
    const bobWon = equalBytes(admin.group.epoch.commitHash, b.commit.to.commitHash);
    expect(seen).toEqual(
      bobWon ? ['applied', 'switched', 'stale', 'switched'] : ['applied', 'stale', 'switched', 'stale'],
    );
    // Bob's post stays readable to Bob whichever side won: he keeps the key it was sealed with.
    expect(await bob.device.epochKey(SPACE, b.commit.to)).toBeDefined();
    expect((await bob.replica.accept(onBob)).kind).toBe('duplicate');
  });
});

describe('persistence', () => {
  it('fork choice survives a restart: both sides reloaded mid-fork settle on the same winner and keep the loser’s key', async () => {
    const { peers, admin, chat, log } = await founded(['alice', 'bob', 'carol']);
    const [, bob, carol] = peers as [MlsPeer, MlsPeer, MlsPeer];
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    await admit(admin, carol, [bob], true);
    await deliver(carol, log);
    const b = await bob.group.prepare({ kind: 'update' }, { context: contextOf(bob) });
    const c = await carol.group.prepare({ kind: 'update' }, { context: contextOf(carol) });
    if (b.kind !== 'ready' || c.kind !== 'ready') throw new Error('no commit');
    for (const [p, commit] of [
      [bob, b.commit],
      [carol, c.commit],
    ] as const) {
      await p.group.confirm(commit);
      await p.device.save(p.group);
    }
    const onBob = await bob.write('CreatePost', postBody(chat, 'sealed before the restart'));
    // Both devices restart before hearing of the other's commit.
    await bob.reopen();
    await carol.reopen();
    const seen = [
      (await bob.group.process(c.commit.handshake)).kind,
      (await carol.group.process(b.commit.handshake)).kind,
    ];
    expect(seen.sort()).toEqual(['stale', 'switched']);
    expect(bob.group.epoch).toEqual(carol.group.epoch);
    expect(bob.group.epochKey(bob.group.epoch)).toEqual(carol.group.epochKey(carol.group.epoch));
    // The loser's epoch key is still there after the switch, and survives another restart.
    await bob.device.save(bob.group);
    await bob.reopen();
    expect(await bob.device.epochKey(SPACE, b.commit.to)).toBeDefined();
    expect((await bob.replica.accept(onBob)).kind).toBe('duplicate');
  });

  it('a device reloaded from storage continues: keys, members, the next commit', async () => {
    const { peers, admin, chat, log } = await founded(['alice', 'bob']);
    const bob = peers[1] as MlsPeer;
    await admit(admin, bob, [], true);
    await deliver(bob, log);
    const epoch = bob.group.epoch;
    await bob.reopen();
    expect(bob.group.epoch).toEqual(epoch);
    expect(bob.group.epochKey(epoch)).toEqual(admin.group.epochKey(epoch));
    expect(bob.replica.state.canonicalState()).toEqual(admin.replica.state.canonicalState());
    await admin.reopen();
    const { outcomes } = await commit(admin, { kind: 'update' }, [bob]);
    expect(outcomes[0]?.kind).toBe('applied');
    const post = await admin.write('CreatePost', postBody(chat, 'after restarts'));
    expect(await deliver(bob, [post])).toEqual(['accepted']);
  });

  it('the saved state is encrypted: the wrong key or damaged bytes are refused as corrupt', async () => {
    const { admin } = await founded(['alice']);
    const saved = await admin.storage.getMeta(`mls/group/${Buffer.from(SPACE).toString('hex')}`);
    expect(saved).toBeDefined();
    // The private signature key (the device seed) is not in the clear.
    expect(Buffer.from(saved as Uint8Array).includes(Buffer.from(admin.seed))).toBe(false);
    await expect(admin.reopen(webRng.randomBytes(32))).rejects.toMatchObject({
      name: 'StorageError',
      code: 'corrupt',
    });
    const damaged = (saved as Uint8Array).slice();
    damaged[40] = (damaged[40] as number) ^ 0xff;
    await admin.storage.putMeta(`mls/group/${Buffer.from(SPACE).toString('hex')}`, damaged);
    await expect(admin.reopen()).rejects.toMatchObject({ name: 'StorageError', code: 'corrupt' });
  });
});

/** A commit made by a modified client: the same keys, no policy check of its own. */
async function bypassPolicy(by: MlsPeer, change: Change): Promise<Uint8Array> {
  const rogue = SpaceGroup.decode(by.group.encode(), {
    ed25519: testEd25519(),
    aead,
    clock: by.clock,
    rng: webRng,
  });
  const r = await rogue.prepare(change, { context: contextOf(by) });
  if (r.kind !== 'ready') throw new Error(`refused: ${r.detail}`);
  return r.commit.handshake;
}
