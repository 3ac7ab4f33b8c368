import { describe, expect, it } from 'vitest';
import { newId, postBody } from '../core/scenario.js';
import { ManualClock, testEd25519, testSpaceId } from '../core/testkit.js';
import { webRng } from '../ports/env.js';
import { type AppendResult, MailboxError, MemoryMailbox } from '../ports/mailbox.js';
import { type ChannelId, type InviteId, type InviteRole, bytesKey, equalBytes } from '../protocol/index.js';
import {
  admitWaiting,
  commitChange,
  follow,
  pollJoin,
  removeUser,
  requestJoin,
  rotateIfDue,
} from './flows.js';
import {
  type InviteLink,
  formatInviteLink,
  inviteMailbox,
  parseInviteLink,
  sealJoinRequest,
} from './invite.js';
import { SpaceGroup } from './group.js';
import { MlsPeer, aead } from './mls.testkit.js';
import { commitContext } from './policy.js';

const SPACE = testSpaceId(77);
const DAY = 86_400_000;

/** Every op `from` has, offered to `to`, then its held ops retried. */
async function syncOps(from: MlsPeer, to: MlsPeer): Promise<void> {
  for await (const s of from.storage.listOps(SPACE)) await to.replica.accept(s.sealed);
  await to.replica.retryHeld();
}

async function world(names: readonly string[]) {
  const clock = new ManualClock();
  const mailbox = new MemoryMailbox();
  const peers = new Map<string, MlsPeer>();
  for (const n of names) peers.set(n, await MlsPeer.create(n, SPACE, clock));
  const p = (n: string) => peers.get(n) as MlsPeer;
  const admin = p(names[0] as string);
  await admin.device.createSpace(SPACE);
  await admin.write('CreateSpace', { name: 'Flows', description: '' });
  const chat = newId<ChannelId>();
  await admin.write('CreateChannel', { channel: chat, name: 'general', type: 'chat', topic: '' });

  const invite = async (by: string, options: { maxUses?: number; role?: InviteRole; ttl?: number } = {}) => {
    const secret = webRng.randomBytes(32);
    const inviteId = newId<InviteId>();
    const expiresAtMs = clock.now() + (options.ttl ?? DAY);
    await p(by).write('CreateInvite', {
      invite: inviteId,
      secret,
      expiresAtMs,
      maxUses: options.maxUses ?? 0,
      role: options.role ?? 'member',
    });
    const text = formatInviteLink({
      space: SPACE,
      secret,
      relays: ['/ip4/127.0.0.1/tcp/9090/ws'],
      expiresAtMs,
    });
    const parsed = parseInviteLink(text);
    if (!parsed.ok) throw new Error(parsed.message);
    return { link: parsed.link, inviteId };
  };
  /** Everyone in the group follows the topic and gets every op of everyone else. */
  const settle = async () => {
    for (const x of peers.values()) if (x.device.group(SPACE) !== undefined) await follow(x.ctx(mailbox));
    for (const a of peers.values()) for (const b of peers.values()) if (a !== b) await syncOps(a, b);
  };
  /** Each of `names` asks with `link`, the admin admits, and everyone catches up. */
  const admitAll = async (names: readonly string[], link: InviteLink) => {
    for (const n of names) {
      await requestJoin(p(n).ctx(mailbox), link);
      await admitWaiting(admin.ctx(mailbox));
      await pollJoin(p(n).ctx(mailbox), SPACE);
      await settle();
    }
  };
  return { clock, mailbox, p, peers, admin, chat, invite, settle, admitAll };
}

/** The state a refusal must leave alone: the admitter's epoch, members and canonical state. */
function snapshot(x: MlsPeer) {
  return { epoch: x.group.epoch, members: x.group.members().length, state: x.replica.state.canonicalState() };
}

describe('joining by invite', () => {
  it('the inviter is offline: a moderator admits, and the Space moves on together', async () => {
    const w = await world(['alice', 'bob', 'carol']);
    const { link: forBob } = await w.invite('alice');
    expect(await requestJoin(w.p('bob').ctx(w.mailbox), forBob)).toEqual({ status: 'pending' });
    expect(await pollJoin(w.p('bob').ctx(w.mailbox), SPACE)).toEqual({ status: 'pending' });
    const reports = await admitWaiting(w.admin.ctx(w.mailbox));
    expect(reports).toEqual([{ kind: 'admitted', user: w.p('bob').identity.user }]);
    expect((await pollJoin(w.p('bob').ctx(w.mailbox), SPACE)).status).toBe('joined');
    await w.settle();
    await w.admin.write('AssignRole', { user: w.p('bob').identity.user, role: 'moderator' });
    const { link: forCarol } = await w.invite('alice');
    await w.settle();

    // Alice goes offline. Carol asks; Bob, a moderator, admits her.
    expect(await requestJoin(w.p('carol').ctx(w.mailbox), forCarol)).toEqual({ status: 'pending' });
    const byBob = await admitWaiting(w.p('bob').ctx(w.mailbox));
    // Bob first sees his own request, answered by Alice already, in the first invite's mailbox.
    expect(byBob).toEqual([
      { kind: 'skipped', reason: 'already-member' },
      { kind: 'admitted', user: w.p('carol').identity.user },
    ]);
    expect((await pollJoin(w.p('carol').ctx(w.mailbox), SPACE)).status).toBe('joined');
    await w.settle();
    const carol = w.p('carol');
    expect(carol.group.epoch).toEqual(w.admin.group.epoch);
    expect(carol.group.epochKey(carol.group.epoch)).toEqual(w.admin.group.epochKey(w.admin.group.epoch));
    // The history was shown to her (the default): she has every op, and the invite counts two uses.
    expect(carol.replica.state.canonicalState()).toEqual(w.admin.replica.state.canonicalState());
    expect(w.admin.replica.state.invites().map((i) => i.uses)).toEqual([1, 1]);
    const hi = await carol.write('CreatePost', postBody(w.chat, 'hello everyone'));
    expect((await w.admin.replica.accept(hi)).kind).toBe('accepted');
  });

  it('expired, used-up, revoked, forged invites and a banned user are refused with their reason and change nothing', async () => {
    const w = await world(['alice', 'bob', 'carol', 'dave', 'erin', 'mallory']);
    const admin = w.admin;
    const ask = async (who: string, link: InviteLink) => requestJoin(w.p(who).ctx(w.mailbox), link);
    const poll = async (who: string) => pollJoin(w.p(who).ctx(w.mailbox), SPACE);

    // Used up: one use, two people.
    const { link: once } = await w.invite('alice', { maxUses: 1 });
    await ask('bob', once);
    await ask('carol', once);
    const first = await admitWaiting(admin.ctx(w.mailbox));
    expect(first.map((r) => (r.kind === 'refused' ? r.reason : r.kind))).toEqual(['admitted', 'used-up']);
    expect((await poll('bob')).status).toBe('joined');
    expect(await poll('carol')).toMatchObject({ status: 'refused', reason: 'used-up' });
    await w.settle();
    const before = snapshot(admin);

    // Expired: refused before sending, and by the admitter when it expired while waiting.
    const { link: short } = await w.invite('alice', { ttl: 60_000 });
    await ask('dave', short);
    w.clock.advance(120_000);
    expect(await ask('erin', short)).toMatchObject({ status: 'refused', reason: 'expired' });
    // Revoked.
    const { link: revoked, inviteId } = await w.invite('alice');
    await admin.write('RevokeInvite', { invite: inviteId });
    await ask('carol', revoked);
    // Forged: someone who knows the mailbox address (a relay) but not the secret.
    const { link: real } = await w.invite('alice');
    const junk = await sealJoinRequest(aead, webRng, webRng.randomBytes(32), {
      keyPackage: await w.p('erin').device.keyPackage(),
      replyTo: webRng.randomBytes(32),
      replyKey: webRng.randomBytes(32),
    });
    await w.mailbox.append(inviteMailbox(real.secret), junk);
    const second = snapshot(admin);
    const reports = await admitWaiting(admin.ctx(w.mailbox));
    expect(
      reports.map((r) => (r.kind === 'refused' ? r.reason : r.kind === 'dropped' ? r.reason : r.kind)),
    ).toEqual(['expired', 'revoked', 'forged']);
    expect(await poll('dave')).toMatchObject({ status: 'refused', reason: 'expired' });
    expect(await poll('carol')).toMatchObject({ status: 'refused', reason: 'revoked' });
    expect(snapshot(admin)).toEqual(second);
    expect(second.epoch).toEqual(before.epoch);
    for (const n of ['carol', 'dave', 'erin']) expect(w.p(n).device.group(SPACE)).toBeUndefined();

    // Banned: Mallory joins, is banned, and asks again with a fresh invite.
    const { link: m1 } = await w.invite('alice');
    await ask('mallory', m1);
    await admitWaiting(admin.ctx(w.mailbox));
    expect((await poll('mallory')).status).toBe('joined');
    await w.settle();
    const ban = await removeUser(admin.ctx(w.mailbox), w.p('mallory').identity.user, {
      ban: true,
      reason: 'abuse',
    });
    expect(ban.kind).toBe('removed');
    await w.settle();
    expect(w.p('mallory').group.active).toBe(false);
    const { link: m2 } = await w.invite('alice');
    // Same user, a new device (her old one still holds the closed group).
    const again = await w.p('mallory').newDevice('mallory-laptop');
    await requestJoin(again.ctx(w.mailbox), m2);
    const beforeBan = snapshot(admin);
    const banned = await admitWaiting(admin.ctx(w.mailbox));
    expect(banned.map((r) => (r.kind === 'refused' ? r.reason : r.kind))).toEqual(['banned']);
    expect(await pollJoin(again.ctx(w.mailbox), SPACE)).toMatchObject({
      status: 'refused',
      reason: 'banned',
    });
    expect(snapshot(admin)).toEqual(beforeBan);
  });
});

/** A mailbox whose next append is stored but whose acknowledgement is lost (a crash right after sending). */
class LosingAcks extends MemoryMailbox {
  loseNext = false;
  override async append(
    address: Uint8Array,
    message: Uint8Array,
    options?: { commitEpoch?: number },
  ): Promise<AppendResult> {
    const r = await super.append(address, message, options);
    if (this.loseNext) {
      this.loseNext = false;
      throw new MailboxError('connection lost before the acknowledgement');
    }
    return r;
  }
}

describe('restart in the middle of a flow', () => {
  it('a join completes though every process restarts between its steps and the admitter crashes after sending its commit', async () => {
    const w = await world(['alice', 'bob', 'carol']);
    const mailbox = new LosingAcks();
    const restartAll = async () => {
      for (const x of w.peers.values()) await x.reopen();
    };
    const { link } = await w.invite('alice');
    // Bob is in already, so a third party follows the commit.
    await requestJoin(w.p('bob').ctx(mailbox), link);
    await restartAll();
    await admitWaiting(w.admin.ctx(mailbox));
    await restartAll();
    expect((await pollJoin(w.p('bob').ctx(mailbox), SPACE)).status).toBe('joined');
    await restartAll();
    for (const a of w.peers.values()) for (const b of w.peers.values()) if (a !== b) await syncOps(a, b);

    await requestJoin(w.p('carol').ctx(mailbox), link);
    await restartAll();
    // Alice's commit reaches the relay but the acknowledgement is lost, and she restarts.
    mailbox.loseNext = true;
    await expect(admitWaiting(w.admin.ctx(mailbox))).rejects.toThrow(MailboxError);
    await restartAll();
    // Bob follows the commit meanwhile; Alice resumes: the relay holds her commit, so she applies it.
    await follow(w.p('bob').ctx(mailbox));
    await restartAll();
    const resumed = await admitWaiting(w.admin.ctx(mailbox));
    expect(resumed).toEqual([{ kind: 'admitted', user: w.p('carol').identity.user }]);
    await restartAll();
    expect((await pollJoin(w.p('carol').ctx(mailbox), SPACE)).status).toBe('joined');
    await restartAll();
    const epochs = [...w.peers.values()].map((x) => x.group.epoch);
    expect(epochs[1]).toEqual(epochs[0]);
    expect(epochs[2]).toEqual(epochs[0]);
    for (const x of w.peers.values()) {
      expect(x.group.epochKey(x.group.epoch)).toEqual(
        w.admin.group.epochKey(epochs[0] as (typeof epochs)[0]),
      );
    }
  });

  it('a kick completes though the kicker crashes between the Remove commit and the RemoveMember op', async () => {
    const w = await world(['alice', 'bob', 'john']);
    const mailbox = new LosingAcks();
    const { link } = await w.invite('alice');
    for (const n of ['bob', 'john']) {
      await requestJoin(w.p(n).ctx(mailbox), link);
      await admitWaiting(w.admin.ctx(mailbox));
      expect((await pollJoin(w.p(n).ctx(mailbox), SPACE)).status).toBe('joined');
      for (const a of w.peers.values()) for (const b of w.peers.values()) if (a !== b) await syncOps(a, b);
      for (const x of w.peers.values()) if (x.device.group(SPACE) !== undefined) await follow(x.ctx(mailbox));
    }
    for (const a of w.peers.values()) for (const b of w.peers.values()) if (a !== b) await syncOps(a, b);
    console.log(
      'EPOCHS',
      [...w.peers.values()].map((x) => x.group.epoch.epoch),
    );
    const john = w.p('john').identity.user;
    mailbox.loseNext = true;
    await expect(removeUser(w.admin.ctx(mailbox), john, { ban: false, reason: 'spam' })).rejects.toThrow(
      MailboxError,
    );
    for (const x of w.peers.values()) await x.reopen();
    const done = await removeUser(w.admin.ctx(mailbox), john, { ban: false, reason: 'spam' });
    expect(done.kind).toBe('removed');
    for (const x of w.peers.values()) await x.reopen();
    expect((await follow(w.p('bob').ctx(mailbox))).map((o) => o.kind)).toEqual(['applied']);
    for (const x of w.peers.values()) await x.reopen();
    expect((await follow(w.p('john').ctx(mailbox))).map((o) => o.kind)).toEqual(['removed-self']);
    for (const x of w.peers.values()) await x.reopen();
    expect(w.p('john').group.active).toBe(false);
    await syncOps(w.admin, w.p('bob'));
    for (const x of w.peers.values()) await x.reopen();
    const audit = w
      .p('bob')
      .replica.state.auditLog()
      .filter((e) => e.kind === 'RemoveMember');
    expect(audit).toHaveLength(1);
    expect(
      w
        .p('bob')
        .group.members()
        .map((m) => m.user),
    ).not.toContainEqual(john);
    expect(w.p('john').group.epochKey(w.admin.group.epoch)).toBeUndefined();
  });
});

describe('unban', () => {
  it('a banned user is refused until unbanned, then admitted again', async () => {
    const w = await world(['alice', 'mallory']);
    const { link } = await w.invite('alice');
    await requestJoin(w.p('mallory').ctx(w.mailbox), link);
    await admitWaiting(w.admin.ctx(w.mailbox));
    expect((await pollJoin(w.p('mallory').ctx(w.mailbox), SPACE)).status).toBe('joined');
    await w.settle();
    const user = w.p('mallory').identity.user;
    expect((await removeUser(w.admin.ctx(w.mailbox), user, { ban: true, reason: 'spam' })).kind).toBe(
      'removed',
    );
    const laptop = await w.p('mallory').newDevice('mallory-laptop');
    await requestJoin(laptop.ctx(w.mailbox), link);
    expect((await admitWaiting(w.admin.ctx(w.mailbox))).map((r) => r.kind)).toEqual(['refused']);
    expect(await pollJoin(laptop.ctx(w.mailbox), SPACE)).toMatchObject({
      status: 'refused',
      reason: 'banned',
    });
    await w.admin.write('Unban', { user });
    // Her first device, removed with the ban, comes back in place of its closed group.
    const phone = w.p('mallory');
    expect((await follow(phone.ctx(w.mailbox))).map((o) => o.kind)).toEqual(['removed-self']);
    expect(phone.group.active).toBe(false);
    await requestJoin(phone.ctx(w.mailbox), link);
    expect(await admitWaiting(w.admin.ctx(w.mailbox))).toEqual([{ kind: 'admitted', user }]);
    expect((await pollJoin(phone.ctx(w.mailbox), SPACE)).status).toBe('joined');
    expect(phone.group.active).toBe(true);
    expect(phone.group.epoch).toEqual(w.admin.group.epoch);
  });
});

describe('a join request sent twice', () => {
  it('is answered once: a stale copy admits nobody, also after the user was removed and unbanned', async () => {
    const w = await world(['alice', 'bob', 'carol']);
    const { link } = await w.invite('alice');
    await w.admitAll(['bob'], link);
    await w.settle();
    await w.admin.write('AssignRole', { user: w.p('bob').identity.user, role: 'moderator' });
    await w.settle();
    // Carol's client sends its request again (a retry): two copies in the invite's mailbox.
    const carol = w.p('carol');
    await requestJoin(carol.ctx(w.mailbox), link);
    await requestJoin(carol.ctx(w.mailbox), link);
    expect(await admitWaiting(w.admin.ctx(w.mailbox))).toEqual([
      { kind: 'admitted', user: carol.identity.user },
      { kind: 'skipped', reason: 'already-member' },
    ]);
    expect((await pollJoin(carol.ctx(w.mailbox), SPACE)).status).toBe('joined');
    await w.settle();
    const user = carol.identity.user;
    expect((await removeUser(w.admin.ctx(w.mailbox), user, { ban: true, reason: 'spam' })).kind).toBe(
      'removed',
    );
    await w.admin.write('Unban', { user });
    await w.settle();
    // Bob, who never answered it himself, sees both copies: the answer at its reply address tells him.
    const byBob = await admitWaiting(w.p('bob').ctx(w.mailbox));
    expect(byBob.filter((r) => r.kind === 'admitted')).toEqual([]);
    expect(byBob).toContainEqual({ kind: 'skipped', reason: 'answered' });
    expect(w.admin.group.members().some((m) => equalBytes(m.user, user))).toBe(false);
  });
});

describe('a commit without authority that reached the relay first', () => {
  it('does not block the Space: honest members refuse it, and the next honest commit goes in anyway', async () => {
    const w = await world(['alice', 'bob', 'mallory']);
    const { link } = await w.invite('alice');
    await w.admitAll(['bob', 'mallory'], link);
    const mallory = w.p('mallory');
    // A modified client: the same keys, no policy of its own; it removes Bob and wins the relay.
    const rogue = SpaceGroup.decode(mallory.group.encode(), {
      ed25519: testEd25519(),
      aead,
      clock: w.clock,
      rng: webRng,
    });
    const r = await rogue.prepare(
      { kind: 'remove', devices: [w.p('bob').identity.device] },
      { context: commitContext(mallory.replica.currentHeads()) },
    );
    if (r.kind !== 'ready') throw new Error('no commit');
    expect(
      (await w.mailbox.append(rogue.topic, r.commit.handshake, { commitEpoch: r.commit.from.epoch })).kind,
    ).toBe('appended');
    const epoch = w.admin.group.epoch;
    expect((await commitChange(w.admin.ctx(w.mailbox), { kind: 'update' })).kind).toBe('applied');
    expect(w.admin.group.epoch.epoch).toBe(epoch.epoch + 1);
    const bobSaw = await follow(w.p('bob').ctx(w.mailbox));
    expect(bobSaw.map((o) => (o.kind === 'rejected' ? `rejected:${o.reason}` : o.kind))).toEqual([
      'rejected:unauthorized',
      'applied',
    ]);
    expect(w.p('bob').group.epoch).toEqual(w.admin.group.epoch);
    expect(w.p('bob').group.active).toBe(true);
  });
});

describe('rotation and re-proposal', () => {
  it('a device rotates its keys when the epoch is due, and not before', async () => {
    const clock = new ManualClock();
    const mailbox = new MemoryMailbox();
    const p = await MlsPeer.create('alice', SPACE, clock, {
      rotation: { maxAgeMs: 3_600_000, maxMessages: 1000 },
    });
    await p.device.createSpace(SPACE);
    await p.write('CreateSpace', { name: 'r', description: '' });
    expect(await rotateIfDue(p.ctx(mailbox))).toBeUndefined();
    clock.advance(3_600_000);
    const before = p.group.epoch;
    expect((await rotateIfDue(p.ctx(mailbox)))?.kind).toBe('applied');
    expect(p.group.epoch.epoch).toBe(before.epoch + 1);
    expect(await rotateIfDue(p.ctx(mailbox))).toBeUndefined();
  });

  it('a removal that lost the fork choice is committed again on the winning epoch', async () => {
    const w = await world(['alice', 'bob', 'john']);
    const { link } = await w.invite('alice');
    await w.admitAll(['bob', 'john'], link);
    await w.admin.write('AssignRole', { user: w.p('bob').identity.user, role: 'moderator' });
    await w.settle();
    // Bob removes John through another relay while Alice (an admin) commits an update through the first.
    const other = new MemoryMailbox();
    const bob = w.p('bob');
    expect(
      (await commitChange(bob.ctx(other), { kind: 'remove', devices: [w.p('john').identity.device] })).kind,
    ).toBe('applied');
    expect((await commitChange(w.admin.ctx(w.mailbox), { kind: 'update' })).kind).toBe('applied');
    // Bob hears Alice's: it wins (higher role); Bob rolls back and removes John again on top of it.
    const seen = await follow(bob.ctx(w.mailbox));
    expect(seen.map((o) => o.kind)).toEqual(['switched']);
    expect(bob.group.members().map((m) => bytesKey(m.device))).not.toContain(
      bytesKey(w.p('john').identity.device),
    );
    expect((await follow(w.admin.ctx(w.mailbox))).map((o) => o.kind)).toEqual(['duplicate', 'applied']);
    expect(w.admin.group.epoch).toEqual(bob.group.epoch);
    expect((await follow(w.p('john').ctx(w.mailbox))).map((o) => o.kind)).toEqual([
      'applied',
      'removed-self',
    ]);
  });
});
