/**
 * Membership flows across devices and relays (ARCHITECTURE.md section 6): committing with soft
 * sequencing, following a Space's commits, joining by invite, admitting, kicking and banning.
 * Every step saves what it needs before it speaks to a relay, so a process killed between any
 * two steps resumes the flow from storage.
 */
import type { SpaceReplica } from '../core/replica.js';
import type { Aead } from '../ports/aead.js';
import type { Clock, Rng } from '../ports/env.js';
import type { Mailbox } from '../ports/mailbox.js';
import { type CborValue, decode, encode } from '../protocol/cbor.js';
import type { DeviceIdentity } from '../protocol/identity.js';
import type { InviteId, SpaceId, UserId } from '../protocol/ids.js';
import { bytesKey, equalBytes, toHex } from '../protocol/ids.js';
import { StorageError } from '../ports/storage.js';
import type { MlsDevice } from './device.js';
import type { Change, GroupRejectReason, PendingCommit, ProcessOutcome, SpaceGroup } from './group.js';
import type { GroupMember } from './suite.js';
import { decodeMls } from './group.js';
import {
  type InviteLink,
  type JoinRefusal,
  type JoinRequest,
  inviteMailbox,
  openJoinAnswer,
  openJoinRequest,
  sealJoinAnswer,
  sealJoinRequest,
} from './invite.js';
import { commitContext } from './policy.js';
import { certOf } from './suite.js';

/** One device's view of one Space, with what it needs to talk to the Space's relays. */
export interface PeerContext {
  readonly space: SpaceId;
  readonly identity: DeviceIdentity;
  readonly device: MlsDevice;
  readonly replica: SpaceReplica;
  readonly mailbox: Mailbox;
  readonly aead: Aead;
  readonly rng: Rng;
  readonly clock: Clock;
}

const pendingName = (space: SpaceId) => `pending/${toHex(space)}`;
const joinName = (space: SpaceId) => `join/${toHex(space)}`;
const cursorName = (address: Uint8Array) => `cursor/${toHex(address)}`;
const admissionName = (replyTo: Uint8Array) => `admission/${toHex(replyTo)}`;
const welcomeName = (space: SpaceId) => `welcome/${toHex(space)}`;
/** A join request (by its reply address) this device answered: a copy of it is not answered again. */
const answeredName = (replyTo: Uint8Array) => `answered/${toHex(replyTo)}`;

function groupOf(ctx: PeerContext): SpaceGroup {
  const g = ctx.device.group(ctx.space);
  if (g === undefined) throw new Error('this device is not in that Space');
  return g;
}

async function loadCursor(ctx: PeerContext, address: Uint8Array): Promise<number> {
  const b = await ctx.device.loadRecord(cursorName(address));
  if (b === undefined) return 0;
  const v = decode(b);
  if (typeof v !== 'number') throw new StorageError('corrupt', 'saved cursor');
  return v;
}

function saveCursor(ctx: PeerContext, address: Uint8Array, seq: number): Promise<void> {
  return ctx.device.saveRecord(cursorName(address), encode(seq));
}

export type CommitResult =
  | { readonly kind: 'applied'; readonly commit: PendingCommit }
  | { readonly kind: 'refused'; readonly reason: GroupRejectReason; readonly detail: string }
  /** Another commit took the epoch first at the relay: follow the Space, then make the change again. */
  | { readonly kind: 'lost' };

/**
 * Commits `change` with soft sequencing (section 6.3): saved, sent to the Space's topic, and
 * applied only once the relay acknowledged it as the first commit on its epoch.
 *
 * @throws MailboxError when no relay is reachable (the commit stays saved; `follow` resumes it).
 */
export async function commitChange(
  ctx: PeerContext,
  change: Change,
  options: { keyHistory?: boolean } = {},
): Promise<CommitResult> {
  await settlePending(ctx);
  const g = groupOf(ctx);
  const r = await g.prepare(change, { ...options, context: commitContext(ctx.replica.currentHeads()) });
  if (r.kind === 'refused') return r;
  await ctx.device.saveRecord(pendingName(ctx.space), g.encodePending(r.commit));
  return send(ctx, g, r.commit);
}

async function send(ctx: PeerContext, g: SpaceGroup, p: PendingCommit): Promise<CommitResult> {
  const sent = await ctx.mailbox.append(g.topic, p.handshake, { commitEpoch: p.from.epoch });
  if (sent.kind === 'refused') {
    // Whatever took the epoch at the relay: if this device does not accept it (a commit its
    // author had no authority for), the relay's order cannot stand, so this commit goes in
    // anyway and members settle the two by fork choice. Otherwise this commit lost.
    await followTopic(ctx);
    const now = g.epoch;
    if (g.active && now.epoch === p.from.epoch && equalBytes(now.commitHash, p.from.commitHash)) {
      await ctx.mailbox.append(g.topic, p.handshake);
      return finish(ctx, g, p);
    }
    await ctx.device.deleteRecord(pendingName(ctx.space));
    return { kind: 'lost' };
  }
  return finish(ctx, g, p);
}

async function finish(ctx: PeerContext, g: SpaceGroup, p: PendingCommit): Promise<CommitResult> {
  const out = await g.confirm(p);
  if (out.kind !== 'applied') {
    await ctx.device.deleteRecord(pendingName(ctx.space));
    return { kind: 'lost' };
  }
  await ctx.device.save(g);
  // Kept until the admission that made it has sent it (section 6.1).
  if (p.welcome !== undefined) await ctx.device.saveRecord(welcomeName(ctx.space), p.welcome);
  await ctx.device.deleteRecord(pendingName(ctx.space));
  return { kind: 'applied', commit: p };
}

/**
 * Resolves a commit saved but not yet known to be acknowledged (after a restart): applied if
 * the relay holds it, sent again if the epoch is still free, dropped if another commit won.
 */
export async function settlePending(ctx: PeerContext): Promise<CommitResult | undefined> {
  const bytes = await ctx.device.loadRecord(pendingName(ctx.space));
  if (bytes === undefined) return undefined;
  const g = groupOf(ctx);
  const p = g.restorePending(bytes);
  if (p === undefined) {
    await ctx.device.deleteRecord(pendingName(ctx.space));
    return { kind: 'lost' };
  }
  const after = await loadCursor(ctx, g.topic);
  for (const m of await ctx.mailbox.read(g.topic, after)) {
    if (equalBytes(m.message, p.handshake)) return finish(ctx, g, p);
  }
  return send(ctx, g, p);
}

/**
 * Commits a self-update when the current epoch is older than the rotation policy allows or
 * this device sealed too many ops in it (section 6.1). `undefined` when none was due.
 */
export async function rotateIfDue(ctx: PeerContext): Promise<CommitResult | undefined> {
  const g = groupOf(ctx);
  return g.needsRotation() ? commitChange(ctx, { kind: 'update' }) : undefined;
}

/**
 * Follows the Space's commits and proposals on its topic, applying them in relay order and
 * saving after each. Stops at a commit for an epoch this device has not reached. When a fork
 * choice dropped a removal this device had committed, it commits it again (the loser
 * re-proposes, section 6.3); a dropped add is reported for the admitter to redo with a fresh
 * join request, since the joiner's Welcome was for the abandoned epoch.
 */
export async function follow(ctx: PeerContext): Promise<ProcessOutcome[]> {
  await settlePending(ctx);
  return followTopic(ctx);
}

async function followTopic(ctx: PeerContext): Promise<ProcessOutcome[]> {
  const g = groupOf(ctx);
  let cursor = await loadCursor(ctx, g.topic);
  const out: ProcessOutcome[] = [];
  const redo: GroupMember[] = [];
  // Past a commit this device cannot apply yet (an epoch it has not reached, ops it lacks), it
  // reads on — the group keeps such commits and applies them once it gets there — but the
  // saved cursor stays before the first one, so a restart reads them again.
  let blocked = false;
  for (const m of await ctx.mailbox.read(g.topic, cursor)) {
    const o = await g.process(m.message);
    out.push(o);
    if (o.kind === 'future' || o.kind === 'held') blocked = true;
    const moved = o.kind === 'applied' || o.kind === 'switched' || o.kind === 'removed-self';
    if (moved || o.kind === 'proposal-stored') await ctx.device.save(g);
    // A new epoch's key opens ops that were waiting for it (section 4 step 2).
    if (o.kind === 'applied' || o.kind === 'switched') await ctx.replica.retryHeld();
    if (o.kind === 'switched') redo.push(...o.lost.flatMap((l) => l.removed));
    if (!blocked) {
      cursor = m.seq;
      await saveCursor(ctx, g.topic, cursor);
    }
  }
  const still = redo.filter((r) => g.members().some((m) => equalBytes(m.device, r.device)));
  if (still.length > 0 && g.active)
    await commitChange(ctx, { kind: 'remove', devices: still.map((r) => r.device) });
  // A member's leave proposal waits for the next commit: a moderator or admin who sees one
  // commits at once (a self-update carries it), so the leaver is out of the next epoch.
  else if (
    g.active &&
    out.some((o) => o.kind === 'proposal-stored') &&
    ctx.replica.state.roleOf(ctx.identity.user) !== 'member'
  ) {
    await commitChange(ctx, { kind: 'update' });
  }
  return out;
}

/**
 * Leaves the Space: a proposal to remove this device, sent on the Space's topic, which the
 * next committer commits (section 6.1). Resolves once a relay has it; this device reads and
 * writes nothing in the Space after that.
 *
 * @throws MailboxError when no relay could be reached.
 */
export async function leaveSpace(ctx: PeerContext): Promise<void> {
  await settlePending(ctx);
  const g = groupOf(ctx);
  const proposal = await g.proposeLeave();
  await ctx.mailbox.append(g.topic, proposal);
}

// ---------- joining ----------

export type JoinStatus =
  | { readonly status: 'pending' }
  | { readonly status: 'joined'; readonly group: SpaceGroup }
  | {
      readonly status: 'refused';
      readonly reason: JoinRefusal | 'expired' | 'already-member' | 'invalid-welcome';
      readonly detail: string;
    };

function encodeJoin(link: InviteLink, req: JoinRequest): Uint8Array {
  return encode([
    link.space,
    link.secret,
    [...link.relays],
    link.expiresAtMs,
    req.keyPackage,
    req.replyTo,
    req.replyKey,
  ]);
}

function decodeJoin(bytes: Uint8Array): { link: InviteLink; request: JoinRequest } {
  const v = decode(bytes, { maxBytes: 1 << 24, maxArrayLength: 16, maxStringBytes: 1 << 24, maxDepth: 2 });
  if (!Array.isArray(v) || v.length !== 7) throw new StorageError('corrupt', 'saved join');
  const [space, secret, relays, expiresAtMs, keyPackage, replyTo, replyKey] = v as CborValue[];
  if (
    !(space instanceof Uint8Array) ||
    !(secret instanceof Uint8Array) ||
    !Array.isArray(relays) ||
    typeof expiresAtMs !== 'number' ||
    !(keyPackage instanceof Uint8Array) ||
    !(replyTo instanceof Uint8Array) ||
    !(replyKey instanceof Uint8Array)
  ) {
    throw new StorageError('corrupt', 'saved join');
  }
  return {
    link: { space: space as SpaceId, secret, relays: relays as string[], expiresAtMs },
    request: { keyPackage, replyTo, replyKey },
  };
}

/**
 * Asks to join the Space of `link`: a join request in the invite's mailbox, answered at a
 * fresh reply address. Saved first, so `pollJoin` completes it after a restart.
 *
 * @throws MailboxError when no relay is reachable (the request stays saved; call again).
 */
export async function requestJoin(ctx: PeerContext, link: InviteLink): Promise<JoinStatus> {
  if (ctx.device.group(link.space)?.active === true) {
    return { status: 'refused', reason: 'already-member', detail: 'this device is in that Space already' };
  }
  if (ctx.clock.now() > link.expiresAtMs)
    return { status: 'refused', reason: 'expired', detail: 'the invite has expired' };
  const saved = await ctx.device.loadRecord(joinName(link.space));
  const request =
    saved === undefined
      ? {
          keyPackage: await ctx.device.keyPackage(),
          replyTo: ctx.rng.randomBytes(32),
          replyKey: ctx.rng.randomBytes(32),
        }
      : decodeJoin(saved).request;
  if (saved === undefined) await ctx.device.saveRecord(joinName(link.space), encodeJoin(link, request));
  await ctx.mailbox.append(
    inviteMailbox(link.secret),
    await sealJoinRequest(ctx.aead, ctx.rng, link.secret, request),
  );
  return { status: 'pending' };
}

/** Looks for the answer to this device's join request for `space`. */
export async function pollJoin(ctx: PeerContext, space: SpaceId): Promise<JoinStatus> {
  const g = ctx.device.group(space);
  if (g?.active === true) return { status: 'joined', group: g };
  const saved = await ctx.device.loadRecord(joinName(space));
  if (saved === undefined)
    return { status: 'refused', reason: 'unknown-invite', detail: 'no join request was made' };
  const { request } = decodeJoin(saved);
  for (const m of await ctx.mailbox.read(request.replyTo, 0)) {
    const a = await openJoinAnswer(ctx.aead, request, m.message);
    if (a === undefined) continue;
    if (a.kind === 'refused') {
      await ctx.device.deleteRecord(joinName(space));
      return { status: 'refused', reason: a.reason, detail: a.detail };
    }
    const j = await ctx.device.join(a.welcome);
    if (j.kind === 'joined') {
      await ctx.device.deleteRecord(joinName(space));
      return { status: 'joined', group: j.group };
    }
    if (j.reason !== 'unknown-key-package') {
      return { status: 'refused', reason: 'invalid-welcome', detail: `${j.reason}: ${j.detail}` };
    }
  }
  return { status: 'pending' };
}

// ---------- admitting ----------

export type AdmissionReport =
  | { readonly kind: 'admitted'; readonly user: UserId }
  | { readonly kind: 'refused'; readonly reason: JoinRefusal; readonly user: UserId | undefined }
  /** Not sealed with the invite's secret, or not a join request: dropped unanswered. */
  | { readonly kind: 'dropped'; readonly reason: 'forged' | 'malformed' }
  /** Its device is a member already: another admitter answered it. */
  | { readonly kind: 'skipped'; readonly reason: 'already-member' }
  /**
   * A copy of a request this device answered already (the joiner sent it again): a stale copy
   * must not admit again someone who was removed since.
   */
  | { readonly kind: 'skipped'; readonly reason: 'answered' }
  /** The commit lost its epoch to another; the request is retried on the next call. */
  | { readonly kind: 'retry' };

/**
 * Answers the join requests waiting in the mailboxes of the Space's invites that this device
 * may admit for (admins and moderators: all; members: their own invites). Checks each request
 * against its invite op, commits the Add (with the key history when the Space shows its
 * history to new members), writes the Admit op and sends the Welcome.
 */
export async function admitWaiting(ctx: PeerContext): Promise<AdmissionReport[]> {
  await follow(ctx);
  const state = ctx.replica.state;
  const me = ctx.identity.user;
  const rank = state.roleOf(me);
  const reports: AdmissionReport[] = [];
  for (const inv of state.invites()) {
    if (rank === 'member' && !equalBytes(inv.creator, me)) continue;
    const address = inviteMailbox(inv.secret);
    let cursor = await loadCursor(ctx, address);
    for (const m of await ctx.mailbox.read(address, cursor)) {
      const r = await answer(ctx, inv.invite, m.message);
      if (r.kind === 'retry') return [...reports, r];
      reports.push(r);
      cursor = m.seq;
      await saveCursor(ctx, address, cursor);
    }
  }
  return reports;
}

async function answer(ctx: PeerContext, inviteId: InviteId, bytes: Uint8Array): Promise<AdmissionReport> {
  const found = ctx.replica.state.invites().find((i) => equalBytes(i.invite, inviteId));
  if (found === undefined) return { kind: 'dropped', reason: 'malformed' };
  const opened = await openJoinRequest(ctx.aead, found.secret, bytes);
  if (!opened.ok) return { kind: 'dropped', reason: opened.reason };
  const request = opened.request;
  const kp = decodeMls(request.keyPackage);
  const leaf = kp?.wireformat === 'mls_key_package' ? kp.keyPackage.leafNode : undefined;
  const user = leaf === undefined ? undefined : certOf(leaf.credential)?.user;
  const g = groupOf(ctx);
  const record = admissionName(request.replyTo);
  const progress = await ctx.device.loadRecord(record);
  const isMember =
    leaf !== undefined && g.members().some((m) => equalBytes(m.device, leaf.signaturePublicKey));
  if (isMember && user !== undefined) {
    // Our own admission, interrupted after its commit took: finish it. Anyone else's: done already.
    if (progress === undefined) return { kind: 'skipped', reason: 'already-member' };
    return complete(ctx, found.invite, request, user, progress);
  }
  if (progress !== undefined) await ctx.device.deleteRecord(record);
  // A request is answered once: by this device (its record) or by another admitter (an answer
  // waits at the reply address). A copy sent again must not add its device a second time.
  {
    if ((await ctx.device.loadRecord(answeredName(request.replyTo))) !== undefined)
      return { kind: 'skipped', reason: 'answered' };
    if ((await ctx.mailbox.read(request.replyTo, 0)).length > 0)
      return { kind: 'skipped', reason: 'answered' };
  }

  const refuse = async (reason: JoinRefusal, detail: string): Promise<AdmissionReport> => {
    const sealed = await sealJoinAnswer(ctx.aead, ctx.rng, request, { kind: 'refused', reason, detail });
    await ctx.mailbox.append(request.replyTo, sealed);
    await ctx.device.saveRecord(answeredName(request.replyTo), encode(ctx.clock.now()));
    return { kind: 'refused', reason, user };
  };
  const state = ctx.replica.state;
  if (user === undefined) return refuse('invalid-key-package', 'not a Conclave key package');
  if (found.revoked) return refuse('revoked', 'the invite was revoked');
  if (ctx.clock.now() > found.expiresAtMs) return refuse('expired', 'the invite has expired');
  if (found.maxUses !== 0 && found.uses >= found.maxUses)
    return refuse('used-up', 'the invite has been used up');
  if (state.isBanned(user)) return refuse('banned', 'this user is banned from the Space');
  const keyHistory = state.settings().historyVisibility === 'all';
  await ctx.device.saveRecord(record, encode([0]));
  const c = await commitChange(ctx, { kind: 'add', keyPackages: [request.keyPackage] }, { keyHistory });
  if (c.kind !== 'applied') await ctx.device.deleteRecord(record);
  if (c.kind === 'lost') return { kind: 'retry' };
  if (c.kind === 'refused') return refuse(c.reason === 'banned' ? 'banned' : 'invalid-key-package', c.detail);
  return complete(ctx, found.invite, request, user, encode([0]));
}

/**
 * The steps after the Add commit: the Admit op, then the Welcome (saved by `finish`) sealed to
 * the reply address. `progress` records how far a previous run got.
 */
async function complete(
  ctx: PeerContext,
  invite: InviteId,
  request: JoinRequest,
  user: UserId,
  progress: Uint8Array,
): Promise<AdmissionReport> {
  const record = admissionName(request.replyTo);
  const v = decode(progress);
  if (!Array.isArray(v)) throw new StorageError('corrupt', 'saved admission');
  let sealed = v[1] instanceof Uint8Array ? v[1] : undefined;
  if (sealed === undefined) {
    const g = groupOf(ctx);
    const welcome = await ctx.device.loadRecord(welcomeName(ctx.space));
    if (welcome === undefined) throw new StorageError('corrupt', 'the Welcome of an admission is missing');
    const w = await ctx.replica.write(ctx.identity, g.epoch, 'Admit', { invite, user });
    if (w.kind !== 'written' || w.outcome.kind !== 'accepted') {
      throw new Error(`the Admit op was not accepted: ${w.kind === 'written' ? w.outcome.kind : w.kind}`);
    }
    sealed = await sealJoinAnswer(ctx.aead, ctx.rng, request, { kind: 'welcome', welcome });
    await ctx.device.saveRecord(record, encode([1, sealed]));
  }
  await ctx.mailbox.append(request.replyTo, sealed);
  await ctx.device.saveRecord(answeredName(request.replyTo), encode(ctx.clock.now()));
  await ctx.device.deleteRecord(record);
  return { kind: 'admitted', user };
}

// ---------- kicking and banning ----------

export type KickResult =
  | { readonly kind: 'removed'; readonly atEpoch: number }
  | { readonly kind: 'refused'; readonly reason: GroupRejectReason | 'not-member'; readonly detail: string };

/**
 * Removes every device of `user` with one commit, then writes the signed RemoveMember (or Ban)
 * op at the new epoch (section 6.1). Retries once when another commit took the epoch.
 */
export async function removeUser(
  ctx: PeerContext,
  user: UserId,
  options: { ban: boolean; reason: string },
): Promise<KickResult> {
  for (let attempt = 0; attempt < 3; attempt++) {
    await follow(ctx);
    const g = groupOf(ctx);
    const devices = g
      .members()
      .filter((m) => equalBytes(m.user, user))
      .map((m) => m.device);
    if (devices.length === 0) {
      // Already out of the group (a restart after the commit): write the op if it is missing.
      return writeRemoval(ctx, user, options);
    }
    const c = await commitChange(ctx, { kind: 'remove', devices });
    if (c.kind === 'refused') return c;
    if (c.kind === 'applied') return writeRemoval(ctx, user, options);
  }
  return { kind: 'refused', reason: 'invalid', detail: 'other commits kept taking the epoch' };
}

async function writeRemoval(
  ctx: PeerContext,
  user: UserId,
  options: { ban: boolean; reason: string },
): Promise<KickResult> {
  const g = groupOf(ctx);
  const state = ctx.replica.state;
  const u = bytesKey(user);
  const done = options.ban
    ? state.isBanned(user)
    : state
        .auditLog()
        .some((e) => e.kind === 'RemoveMember' && e.target !== null && bytesKey(e.target) === u);
  const atEpoch = g.epoch.epoch;
  if (!done) {
    const body = { user, atEpoch, reason: options.reason };
    const w = await ctx.replica.write(ctx.identity, g.epoch, options.ban ? 'Ban' : 'RemoveMember', body);
    if (w.kind !== 'written' || w.outcome.kind !== 'accepted') {
      return { kind: 'refused', reason: 'unauthorized', detail: 'the removal op was not accepted' };
    }
  }
  return { kind: 'removed', atEpoch };
}
