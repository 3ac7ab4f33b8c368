/**
 * The one object a host creates (ARCHITECTURE.md section 1): it wires the host's ports
 * (storage, relay connector, crypto, clock) to the core (replicas, the MLS device, the
 * membership flows, the relay pool, blobs) and offers what people do in a Space as methods.
 * The CLI and the browser worker are thin faces over it.
 *
 * Every method that changes a Space writes its op locally first (accepted by this device's own
 * pipeline, stored), then hands it to the outbox, which keeps it until a relay acknowledged it:
 * `sent` means a relay holds it, `queued` that it waits for one. Errors are `PeerError`s with a
 * code a face can map to its own terms.
 */
import { type BlobRef, downloadBlob, pinBlob, uploadBlob } from '../blob/blob.js';
import type { BlobCache } from '../blob/cache.js';
import type { AcceptOutcome, AcceptedEvent } from '../core/replica.js';
import { SpaceReplica } from '../core/replica.js';
import { type AuditEntry, SpaceState } from '../core/state.js';
import { verifyAuditBundle } from '../core/audit.js';
import { handshakeTopicId, topicId } from '../crypto/sha256.js';
import { MlsDevice } from '../mls/device.js';
import {
  type AdmissionReport,
  type PeerContext,
  admitWaiting,
  follow,
  leaveSpace,
  pollJoin,
  removeUser,
  requestJoin,
} from '../mls/flows.js';
import type { ProcessOutcome } from '../mls/group.js';
import { type InviteLink, formatInviteLink, inviteMailbox } from '../mls/invite.js';
import { stateCommitPolicy } from '../mls/policy.js';
import { relayBlobTransport } from '../net/blob-transport.js';
import { type Follow, type PoolState, RelayPool } from '../net/pool.js';
import { SpaceSync } from '../net/space-sync.js';
import type { Aead } from '../ports/aead.js';
import type { Ed25519 } from '../ports/crypto.js';
import type { Clock, Rng } from '../ports/env.js';
import { MailboxError } from '../ports/mailbox.js';
import type { RelayConnector } from '../ports/network.js';
import type { Storage } from '../ports/storage.js';
import { type CborValue, decode, encode } from '../protocol/cbor.js';
import type { DeviceIdentity } from '../protocol/identity.js';
import type {
  Bodies,
  Drafts,
  ChannelId,
  ChannelType,
  InviteId,
  InviteRole,
  OpId,
  OpKind,
  PostId,
  Role,
  SpaceId,
  ThreadId,
  UserId,
} from '../protocol/index.js';
import { bytesKey, equalBytes } from '../protocol/ids.js';
import { MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES, MAX_POST_TEXT_BYTES } from '../protocol/limits.js';
import { type IdentitySecrets, unlock } from './identity.js';

export type PeerErrorCode =
  /** No such Space, channel, thread, post, user, invite or attachment here. */
  | 'unknown'
  /** This device was removed from the Space (or never admitted): it can read what it had. */
  | 'removed'
  /** The Space's rules refuse it (role, mute, ban), or the op was rejected. */
  | 'refused'
  /** The invite cannot be used (expired, revoked, used up, malformed, for a Space joined already). */
  | 'invite'
  /** Input out of bounds (a name too long, a file too large). */
  | 'invalid'
  /** No relay could be reached for something that needs one. */
  | 'offline';

export class PeerError extends Error {
  override readonly name = 'PeerError';
  constructor(
    readonly code: PeerErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface PeerOptions {
  readonly secrets: IdentitySecrets;
  readonly storage: Storage;
  /** Connects to relays; only asked when `relays` is not empty and the peer goes online. */
  readonly connector: RelayConnector;
  /** Relay multiaddrs (with `/p2p/<peer id>`), in order of preference. */
  readonly relays: readonly string[];
  readonly ed25519: Ed25519;
  readonly aead: Aead;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly sha256?: (data: Uint8Array) => Uint8Array;
  /** The device's chunk cache (attachments this device sent, fetched or pinned). */
  readonly blobs?: BlobCache;
  /** Told of what happens (ops accepted or rejected, admissions, removals), for logs and UIs. */
  readonly onEvent?: (event: PeerEvent) => void;
}

export type PeerEvent =
  | {
      readonly kind: 'accepted';
      readonly space: SpaceId;
      readonly op: OpKind;
      readonly opId: OpId;
      readonly own: boolean;
    }
  | { readonly kind: 'rejected'; readonly space: SpaceId; readonly reason: string; readonly opId: OpId }
  | { readonly kind: 'admission'; readonly space: SpaceId; readonly report: AdmissionReport }
  | { readonly kind: 'joined'; readonly space: SpaceId }
  | { readonly kind: 'join-refused'; readonly space: SpaceId; readonly reason: string }
  | {
      readonly kind: 'membership';
      readonly space: SpaceId;
      readonly outcome: ProcessOutcome['kind'];
      readonly epoch: number;
    }
  | { readonly kind: 'removed'; readonly space: SpaceId }
  /** An attachment is now kept in the device's cache whatever its quota. */
  | { readonly kind: 'pinned'; readonly space: SpaceId; readonly blob: Uint8Array; readonly size: number }
  | { readonly kind: 'error'; readonly space: SpaceId | undefined; readonly message: string };

export interface SyncReport {
  /** Ops accepted from others during this call. */
  readonly accepted: number;
  /** Ops refused by this device's pipeline during this call. */
  readonly rejected: number;
  /** Join requests this device admitted. */
  readonly admitted: number;
  /** Ops still waiting in the outbox for a relay. */
  readonly outboxLeft: number;
  /** Pending joins that completed. */
  readonly joined: readonly SpaceId[];
  /** Pending joins the admitter refused (the request is dropped), with the reason it gave. */
  readonly refused: readonly { readonly space: SpaceId; readonly reason: string }[];
}

export interface SpaceSummary {
  readonly spaceId: SpaceId;
  readonly name: string;
  readonly role: 'admin' | 'moderator' | 'member';
  /** `removed`: this device is out of the Space; `pending`: a join request waits for an answer. */
  readonly status: 'member' | 'removed' | 'pending';
}

export interface MemberView {
  readonly userId: UserId;
  readonly name: string | null;
  readonly roles: readonly ('admin' | 'moderator' | 'member')[];
  readonly status: 'member' | 'removed' | 'banned';
  readonly mutedUntil: number | 'forever' | null;
}

export type WriteStatus = 'sent' | 'queued';

interface Host {
  readonly space: SpaceId;
  readonly replica: SpaceReplica;
  readonly ctx: PeerContext;
  readonly sync: SpaceSync;
  following: Follow | undefined;
  /** The live follow of the Space's handshake address (commits and proposals). */
  handshakes: Follow | undefined;
  /** The MLS follow that handshakes bring: not running, running, or to run again when done. */
  mlsFollow: 'idle' | 'running' | 'again';
  /**
   * A commit waits for ops its committer had (they travel apart from handshakes): the follow
   * runs again as ops arrive, at most every {@link HELD_RETRY_MS}.
   */
  mlsHeld: boolean;
  heldRetry: ReturnType<typeof setTimeout> | undefined;
  /** Own ops on their way into the outbox. */
  readonly sending: Set<Promise<WriteStatus>>;
  /** The status of each own op handed to the outbox (for the write that made it). */
  readonly statusOf: Map<string, Promise<WriteStatus>>;
  readonly caughtUpWaiters: (() => void)[];
  mlsBusy: Promise<unknown>;
  /** The Space's op count when `pinAttachments` last found every attachment pinned. */
  pinnedAtSize: number;
  /** Writes the replica's checkpoint once the Space is quiet (see `checkpointSoon`). */
  checkpointTimer: ReturnType<typeof setTimeout> | undefined;
  /** A checkpoint being written. */
  checkpointing: Promise<void> | undefined;
}

const JOINS_META = 'peer/joins';
/** Milliseconds between retries of a commit that waits for ops (see `Host.mlsHeld`). */
const HELD_RETRY_MS = 200;
const EMPTY_STATE = new SpaceState();
/**
 * A Space's state checkpoint (`SpaceReplica.checkpoint`) is written once no op was accepted for
 * {@link CHECKPOINT_QUIET_MS} and at least {@link CHECKPOINT_MIN_OPS} arrived since the last one,
 * and during a long stream of ops every max({@link CHECKPOINT_STREAM_OPS}, an eighth of the
 * Space's ops). Writing one costs about as much as its size (some 190 bytes an op); opening
 * applies the ops after it, so this keeps that tail short without rewriting a large state for
 * every few messages.
 */
const CHECKPOINT_QUIET_MS = 1_000;
const CHECKPOINT_MIN_OPS = 64;
const CHECKPOINT_STREAM_OPS = 1_000;
/** Milliseconds a sync waits for the relays to deliver a Space's backlog. */
export const CATCH_UP_TIMEOUT_MS = 60_000;

interface PendingJoin {
  readonly space: SpaceId;
  readonly link: InviteLink;
}

export class Peer {
  private readonly hosts = new Map<string, Host>();
  private joins: PendingJoin[] = [];
  private counts = { accepted: 0, rejected: 0, admitted: 0 };
  private started = false;
  private starting: Promise<void> | undefined;
  private closed = false;
  readonly pool: RelayPool;

  private constructor(
    private readonly o: PeerOptions,
    readonly identity: DeviceIdentity,
    readonly device: MlsDevice,
  ) {
    this.pool = new RelayPool({
      connector: o.connector,
      relays: o.relays,
      storage: o.storage,
      ...(o.sha256 === undefined ? {} : { sha256: o.sha256 }),
    });
  }

  /**
   * Opens the peer on its storage: the device's MLS state and every Space's replica as last
   * saved. Does not touch the network until `goOnline`.
   *
   * @throws IdentityError when the secrets do not hold together; StorageError when the
   * storage cannot be read or was damaged (or the at-rest key is not the one it was saved with).
   */
  static async open(o: PeerOptions): Promise<Peer> {
    const { identity } = await unlock(o.ed25519, o.secrets);
    const ref: { peer?: Peer } = {};
    const device = await MlsDevice.open({
      user: identity.user,
      device: identity.device,
      cert: identity.cert,
      seed: o.secrets.deviceSeed,
      storage: o.storage,
      atRestKey: o.secrets.atRestKey,
      ed25519: o.ed25519,
      aead: o.aead,
      clock: o.clock,
      rng: o.rng,
      policy: (space) =>
        stateCommitPolicy(() => ref.peer?.hosts.get(bytesKey(space))?.replica.state ?? EMPTY_STATE),
    });
    const peer = new Peer(o, identity, device);
    ref.peer = peer;
    peer.joins = decodeJoins(await o.storage.getMeta(JOINS_META));
    for (const space of device.spaces()) await peer.host(space);
    for (const j of peer.joins) await peer.host(j.space);
    return peer;
  }

  get userId(): UserId {
    return this.identity.user;
  }

  get name(): string {
    return this.o.secrets.name;
  }

  /** The network as the UI shows it. */
  get network(): PoolState {
    return this.pool.state;
  }

  /**
   * Connects to the configured relays and follows every Space. Resolves once each relay was
   * tried once; `true` if at least one is connected.
   */
  async goOnline(): Promise<boolean> {
    this.starting ??= (async () => {
      this.started = true;
      await this.pool.start();
      for (const h of this.hosts.values()) this.startFollowing(h);
    })();
    await this.starting;
    return this.isOnline();
  }

  isOnline(): boolean {
    return this.pool.state.relays.some((r) => r.status === 'connected');
  }

  private async requireOnline(): Promise<void> {
    if (this.o.relays.length === 0) throw new PeerError('offline', 'no relay is configured');
    if (!(await this.goOnline())) throw new PeerError('offline', 'no relay could be reached');
  }

  // ---------- Spaces ----------

  /** The Spaces of this device, with those it asked to join. */
  spaces(): SpaceSummary[] {
    const out: SpaceSummary[] = [];
    for (const h of this.hosts.values()) {
      const g = this.device.group(h.space);
      const pending = this.joins.some((j) => equalBytes(j.space, h.space));
      const status = g?.active === true ? 'member' : pending && g === undefined ? 'pending' : 'removed';
      const state = h.replica.state;
      out.push({ spaceId: h.space, name: state.settings().name, role: state.roleOf(this.userId), status });
    }
    return out;
  }

  /** The state of `space` as this device knows it. */
  state(space: SpaceId): SpaceState {
    return this.hostOf(space).replica.state;
  }

  /** The Space's current MLS epoch, and its members' user ids (each once). */
  group(space: SpaceId): { epoch: number; users: UserId[]; active: boolean } {
    const g = this.device.group(space);
    if (g === undefined) return { epoch: 0, users: [], active: false };
    const seen = new Map<string, UserId>();
    for (const m of g.members()) seen.set(bytesKey(m.user), m.user);
    return { epoch: g.epoch.epoch, users: [...seen.values()], active: g.active };
  }

  /** Creates a Space with this device as its first member and admin. */
  async createSpace(name: string, description = ''): Promise<{ spaceId: SpaceId; status: WriteStatus }> {
    checkText(name, MAX_NAME_BYTES, 'a Space name', 1);
    checkText(description, MAX_DESCRIPTION_BYTES, 'a description', 0);
    const space = this.o.rng.randomBytes(16) as SpaceId;
    await this.device.createSpace(space);
    const h = await this.host(space);
    if (this.started) this.startFollowing(h);
    const status = await this.write(space, 'CreateSpace', { name, description });
    await this.write(space, 'SetProfile', { name: this.name });
    return { spaceId: space, status: status.status };
  }

  /** This device's display name in every Space it is in. */
  async setName(name: string): Promise<void> {
    for (const s of this.spaces())
      if (s.status === 'member') await this.write(s.spaceId, 'SetProfile', { name });
  }

  /**
   * Writes an op of this device in `space` at the current epoch and hands it to the outbox.
   *
   * @throws PeerError `unknown` (no such Space), `removed` (this device is out of it),
   * `refused` (the Space's rules refuse the op: role, mute, unknown target).
   */
  async write<K extends OpKind>(
    space: SpaceId,
    kind: K,
    body: Drafts[K],
  ): Promise<{ opId: OpId; status: WriteStatus }> {
    const h = this.hostOf(space);
    const g = this.device.group(space);
    if (g?.active !== true) throw new PeerError('removed', 'you are not a member of this Space any more');
    const w = await h.replica.write(this.identity, g.epoch, kind, body);
    if (w.kind === 'no-epoch-key')
      throw new PeerError('removed', 'this device has no key for the current epoch');
    const o = w.outcome;
    if (o.kind === 'rejected') throw new PeerError('refused', `${kind} refused: ${o.reason} (${o.detail})`);
    if (o.kind === 'failed') throw o.error;
    if (o.kind !== 'accepted') throw new PeerError('refused', `${kind} not accepted: ${o.kind}`);
    g.noteSent();
    const status = (await h.statusOf.get(bytesKey(w.opId))) ?? 'queued';
    h.statusOf.delete(bytesKey(w.opId));
    return { opId: w.opId, status };
  }

  // ---------- channels, threads, posts ----------

  async createChannel(space: SpaceId, name: string, type: ChannelType, topic = '') {
    checkText(name, MAX_NAME_BYTES, 'a channel name', 1);
    checkText(topic, MAX_DESCRIPTION_BYTES, 'a channel topic', 0);
    const channel = this.o.rng.randomBytes(16) as ChannelId;
    const w = await this.write(space, 'CreateChannel', { channel, name, type, topic });
    return { channelId: channel, ...w };
  }

  /** Renames a channel (admins only: the Space's rules refuse others). */
  async renameChannel(space: SpaceId, channel: ChannelId, name: string) {
    checkText(name, MAX_NAME_BYTES, 'a channel name', 1);
    if (
      !this.state(space)
        .channels()
        .some((c) => equalBytes(c.channelId, channel))
    )
      throw new PeerError('unknown', 'no such channel in this Space');
    return this.write(space, 'EditChannel', { channel, name, topic: null, archived: null });
  }

  /**
   * Posts `text` in a channel: at the top of a chat channel, in a thread, as a reply to a post,
   * or as the first post of a new forum thread when `title` is given. Attachments are encrypted
   * and stored on the relays first (they need one).
   */
  async post(
    space: SpaceId,
    channel: ChannelId,
    text: string,
    options: {
      title?: string;
      thread?: ThreadId;
      reply?: PostId;
      files?: readonly { bytes: Uint8Array; name: string; mime: string }[];
      /**
       * The new post's id, chosen by the caller so that a retried send of the same message
       * (after a crash or a closed tab) is recognised: a post with this id refuses it.
       */
      postId?: PostId;
    } = {},
  ): Promise<{ postId: PostId; threadId: ThreadId | null; status: WriteStatus }> {
    checkText(text, MAX_POST_TEXT_BYTES, 'a post', 0);
    if (options.title !== undefined) checkText(options.title, MAX_NAME_BYTES, 'a thread title', 1);
    if (text === '' && (options.files ?? []).length === 0)
      throw new PeerError('invalid', 'a post needs text or a file');
    const state = this.state(space);
    if (options.postId !== undefined && state.post(options.postId) !== undefined)
      throw new PeerError('invalid', 'a post with that id exists already');
    const ch = state.channels().find((c) => equalBytes(c.channelId, channel));
    if (ch === undefined) throw new PeerError('unknown', 'no such channel in this Space');
    let thread: ThreadId | null = options.thread ?? null;
    const parent: PostId | null = options.reply ?? null;
    if (parent !== null) {
      const p = state.post(parent);
      if (p === undefined || p.deleted || !equalBytes(p.channel, channel))
        throw new PeerError('unknown', 'no such post to reply to in this channel');
      if (thread === null) thread = p.thread as ThreadId | null;
    }
    if (thread !== null && !state.threadsIn(channel).some((t) => equalBytes(t.threadId, thread as ThreadId)))
      throw new PeerError('unknown', 'no such thread in this channel');
    if (options.title !== undefined && thread !== null)
      throw new PeerError('invalid', 'a title starts a new thread; it cannot go with --thread or --reply');
    if (ch.type === 'forum' && thread === null && options.title === undefined)
      throw new PeerError('invalid', 'a forum post starts a thread (give a title) or goes in one');
    const attachments: Drafts['CreatePost']['attachments'][number][] = [];
    if (options.files !== undefined && options.files.length > 0) {
      await this.requireOnline();
      for (const f of options.files) {
        const ref = await uploadBlob(f.bytes, f.mime, relayBlobTransport(this.pool), {
          aead: this.o.aead,
          rng: this.o.rng,
          ...(this.o.blobs === undefined ? {} : { cache: this.o.blobs }),
        });
        attachments.push({ ...ref, name: f.name });
      }
    }
    if (options.title !== undefined) {
      thread = this.o.rng.randomBytes(16) as ThreadId;
      await this.write(space, 'CreateThread', { thread, channel, title: options.title, root: null });
    }
    const post = options.postId ?? (this.o.rng.randomBytes(16) as PostId);
    const w = await this.write(space, 'CreatePost', {
      post,
      channel,
      thread,
      parent,
      text,
      body: null,
      attachments,
      collab: null,
    });
    return { postId: post, threadId: thread, status: w.status };
  }

  async editPost(space: SpaceId, post: PostId, text: string) {
    checkText(text, MAX_POST_TEXT_BYTES, 'a post', 1);
    const p = this.state(space).post(post);
    if (p === undefined || p.deleted) throw new PeerError('unknown', 'no such post');
    if (!equalBytes(p.author, this.userId)) throw new PeerError('refused', 'only the author edits a post');
    return this.write(space, 'EditPost', { post, text, change: null });
  }

  async deletePost(space: SpaceId, post: PostId, reason = '') {
    checkText(reason, MAX_DESCRIPTION_BYTES, 'a reason', 0);
    const p = this.state(space).post(post);
    if (p === undefined || p.deleted) throw new PeerError('unknown', 'no such post');
    return this.write(space, 'DeletePost', { post, reason });
  }

  /** The attachment `hash` of a post in `space`, fetched from the cache or the relays and decrypted. */
  async attachment(
    space: SpaceId,
    hash: Uint8Array,
  ): Promise<{ ref: BlobRef & { name: string }; bytes: Uint8Array }> {
    const ref = this.findAttachment(space, hash);
    if (ref === undefined) throw new PeerError('unknown', 'no such attachment in this Space');
    const cached = this.o.blobs?.has(ref.hash) === true;
    if (!cached) await this.requireOnline();
    const bytes = await downloadBlob(ref, relayBlobTransport(this.pool), {
      aead: this.o.aead,
      ...(this.o.blobs === undefined ? {} : { cache: this.o.blobs }),
    });
    return { ref, bytes };
  }

  private findAttachment(space: SpaceId, hash: Uint8Array) {
    for (const p of this.state(space).allPosts()) {
      for (const a of p.attachments) if (equalBytes(a.hash, hash)) return a;
    }
    return undefined;
  }

  // ---------- invites and joining ----------

  async createInvite(
    space: SpaceId,
    options: { role: InviteRole; expiresAtMs: number; maxUses: number; webOrigin?: string },
  ): Promise<{ inviteId: InviteId; link: string; status: WriteStatus }> {
    const invite = this.o.rng.randomBytes(16) as InviteId;
    const secret = this.o.rng.randomBytes(32);
    const w = await this.write(space, 'CreateInvite', {
      invite,
      secret,
      expiresAtMs: options.expiresAtMs,
      maxUses: options.maxUses,
      role: options.role,
    });
    const link = formatInviteLink(
      { space, secret, relays: this.o.relays.slice(0, 8), expiresAtMs: options.expiresAtMs },
      options.webOrigin,
    );
    if (this.started) this.watchInvite(this.hostOf(space), secret);
    return { inviteId: invite, link, status: w.status };
  }

  async revokeInvite(space: SpaceId, invite: InviteId) {
    const found = this.state(space)
      .invites()
      .find((i) => equalBytes(i.invite, invite));
    if (found === undefined) throw new PeerError('unknown', 'no such invite in this Space');
    return this.write(space, 'RevokeInvite', { invite });
  }

  /**
   * Asks to join the Space of `link` and waits up to `waitMs` for an admin, moderator or the
   * inviter to answer. `pending`: the request waits in the invite's mailbox; `sync` completes it.
   *
   * @throws PeerError `invite` (expired, refused by the admitter, a Space joined already),
   * `offline` (no relay reachable: nothing is saved).
   */
  async join(link: InviteLink, waitMs: number): Promise<{ spaceId: SpaceId; status: 'joined' | 'pending' }> {
    if (this.device.group(link.space)?.active === true)
      throw new PeerError('invite', 'you are in that Space already');
    if (this.o.clock.now() > link.expiresAtMs) throw new PeerError('invite', 'the invite has expired');
    // The link's relays come first: they carry the invite's mailbox.
    await this.requireOnline();
    const h = await this.host(link.space);
    const r = await requestJoin(h.ctx, link);
    if (r.status === 'refused') throw new PeerError('invite', `the join was refused: ${r.detail}`);
    if (!this.joins.some((j) => equalBytes(j.space, link.space))) {
      this.joins.push({ space: link.space, link });
      await this.saveJoins();
    }
    const deadline = this.o.clock.now() + waitMs;
    for (;;) {
      const s = await this.pollJoin(link.space);
      if (s === 'joined') return { spaceId: link.space, status: 'joined' };
      if (this.o.clock.now() >= deadline) return { spaceId: link.space, status: 'pending' };
      await sleep(Math.min(250, deadline - this.o.clock.now()));
    }
  }

  /** Checks for the answer to a pending join; `refused` answers throw `PeerError('invite')`. */
  private async pollJoin(space: SpaceId): Promise<'joined' | 'pending'> {
    const h = this.hostOf(space);
    const s = await pollJoin(h.ctx, space);
    if (s.status === 'pending') return 'pending';
    this.joins = this.joins.filter((j) => !equalBytes(j.space, space));
    await this.saveJoins();
    if (s.status === 'refused') {
      this.emit({ kind: 'join-refused', space, reason: s.reason });
      if (this.device.group(space) === undefined) await this.forget(space);
      throw new PeerError('invite', `the join was refused: ${s.detail}`);
    }
    this.emit({ kind: 'joined', space });
    // The Space's history first: the profile op must build on it.
    await this.caughtUp(h);
    await this.mls(h, () => follow(h.ctx));
    await h.sync.idle();
    await this.write(space, 'SetProfile', { name: this.name });
    return 'joined';
  }

  private async forget(space: SpaceId): Promise<void> {
    const h = this.hosts.get(bytesKey(space));
    if (h === undefined) return;
    this.hosts.delete(bytesKey(space));
    clearTimeout(h.heldRetry);
    await h.handshakes?.close();
    await h.sync.stop();
  }

  private async saveJoins(): Promise<void> {
    await this.o.storage.putMeta(
      JOINS_META,
      encode(this.joins.map((j) => [j.space, j.link.secret, [...j.link.relays], j.link.expiresAtMs])),
    );
  }

  // ---------- roles and moderation ----------

  async assignRole(space: SpaceId, user: UserId, role: Role) {
    return this.write(space, 'AssignRole', { user, role });
  }

  async revokeRole(space: SpaceId, user: UserId, role: Role) {
    return this.write(space, 'RevokeRole', { user, role });
  }

  /**
   * Removes `user` from the Space: an MLS commit that removes every device of theirs (they get
   * no key from then on), then the signed RemoveMember — or Ban — op. Needs a relay (the commit
   * is sequenced there).
   */
  async remove(space: SpaceId, user: UserId, options: { ban: boolean; reason?: string }) {
    const h = this.hostOf(space);
    this.requireMember(space);
    if (equalBytes(user, this.userId)) throw new PeerError('invalid', 'you cannot remove yourself');
    const state = h.replica.state;
    const rank = { member: 0, moderator: 1, admin: 2 } as const;
    if (rank[state.roleOf(this.userId)] < 1)
      throw new PeerError('refused', 'removing members needs a moderator or an admin');
    if (rank[state.roleOf(user)] >= rank[state.roleOf(this.userId)])
      throw new PeerError('refused', 'you cannot remove a member of equal or higher role');
    const inGroup = this.group(space).users.some((u) => equalBytes(u, user));
    if (!inGroup && !options.ban) throw new PeerError('unknown', 'that user is not a member of this Space');
    await this.requireOnline();
    checkText(options.reason ?? '', MAX_DESCRIPTION_BYTES, 'a reason', 0);
    const r = await this.mls(h, () =>
      removeUser(h.ctx, user, { ban: options.ban, reason: options.reason ?? '' }),
    );
    if (r.kind === 'refused') throw new PeerError('refused', `the removal was refused: ${r.detail}`);
    await this.settled(h);
    return { atEpoch: r.atEpoch };
  }

  /**
   * Leaves a Space: this device proposes its own removal (a moderator or admin online commits
   * it), stops following the Space and forgets its keys. The creator of a Space cannot leave
   * it, as on other community platforms: there would be no owner left.
   */
  async leave(space: SpaceId): Promise<void> {
    const h = this.hostOf(space);
    this.requireMember(space);
    const creator = h.replica.state.creator();
    if (creator !== undefined && equalBytes(creator, this.userId))
      throw new PeerError('refused', 'the creator of a Space cannot leave it');
    await this.requireOnline();
    await this.mls(h, () => leaveSpace(h.ctx));
    await this.forget(space);
    await this.device.forget(space);
  }

  async unban(space: SpaceId, user: UserId) {
    if (!this.state(space).isBanned(user)) throw new PeerError('unknown', 'that user is not banned');
    return this.write(space, 'Unban', { user });
  }

  async mute(space: SpaceId, user: UserId, untilMs: number | null, reason = '') {
    checkText(reason, MAX_DESCRIPTION_BYTES, 'a reason', 0);
    return this.write(space, 'Mute', { user, untilMs, reason });
  }

  async unmute(space: SpaceId, user: UserId) {
    return this.write(space, 'Unmute', { user });
  }

  /**
   * Changes the Space's settings. With `historyVisibility: 'sinceJoin'`, members admitted from
   * then on get the control keys of earlier epochs (they place and check every op) but not
   * their content keys: they read what is said from their join on.
   */
  async setSettings(space: SpaceId, s: Bodies['SetSpaceSettings']) {
    if (s.name !== null) checkText(s.name, MAX_NAME_BYTES, 'a Space name', 1);
    if (s.description !== null) checkText(s.description, MAX_DESCRIPTION_BYTES, 'a description', 0);
    return this.write(space, 'SetSpaceSettings', s);
  }

  /** Who is in the Space, who was removed or banned, with names, roles and mutes. */
  members(space: SpaceId): MemberView[] {
    const state = this.state(space);
    const now = this.o.clock.now();
    const out = new Map<string, MemberView>();
    const roles = new Map(state.roles().map((r) => [bytesKey(r.user), r.roles]));
    const mod = new Map(state.moderation(now).map((m) => [bytesKey(m.user), m]));
    const view = (user: UserId, status: MemberView['status']): MemberView => {
      const k = bytesKey(user);
      const m = mod.get(k)?.muted;
      const creator = state.creator();
      const rs: ('admin' | 'moderator' | 'member')[] = [...(roles.get(k) ?? [])];
      if (creator !== undefined && equalBytes(creator, user) && !rs.includes('admin')) rs.unshift('admin');
      if (!rs.includes('member')) rs.push('member');
      return {
        userId: user,
        name: state.nameOf(user) ?? null,
        roles: rs,
        status,
        mutedUntil: m === null || m === undefined ? null : (m.untilMs ?? 'forever'),
      };
    };
    for (const u of this.group(space).users) out.set(bytesKey(u), view(u, 'member'));
    for (const e of state.auditLog()) {
      if (e.target === null || out.has(bytesKey(e.target))) continue;
      if (e.kind === 'RemoveMember' || e.kind === 'Ban')
        out.set(bytesKey(e.target), view(e.target, state.isBanned(e.target) ? 'banned' : 'removed'));
    }
    for (const m of state.moderation(now)) {
      if (m.banned && !out.has(bytesKey(m.user))) out.set(bytesKey(m.user), view(m.user, 'banned'));
    }
    return [...out.values()];
  }

  /**
   * The audit log, each entry with whether its signed op verifies (device certificate and
   * signature), and the bundle of signed ops that lets anyone check it offline.
   */
  async audit(
    space: SpaceId,
  ): Promise<{ entries: (AuditEntry & { signatureValid: boolean })[]; bundle: Uint8Array[] }> {
    const entries: (AuditEntry & { signatureValid: boolean })[] = [];
    const bundle: Uint8Array[] = [];
    for (const e of this.state(space).auditLog()) {
      const stored = await this.o.storage.getOp(space, e.opId as OpId);
      const check =
        stored === undefined ? undefined : await verifyAuditBundle(this.o.ed25519, space, [stored.op]);
      // An invite op holds the invite's secret: whoever reads the bundle could join with it.
      if (stored !== undefined && e.kind !== 'CreateInvite') bundle.push(stored.op);
      entries.push({ ...e, signatureValid: check?.ok === true });
    }
    return { entries, bundle };
  }

  // ---------- the network ----------

  /**
   * Pulls every Space's mailbox until caught up, completes pending joins, admits the join
   * requests this device may admit, flushes the outbox; then stays up to `waitMs` more for
   * answers still missing (pending joins).
   *
   * @throws PeerError `offline` when no relay can be reached.
   */
  async sync(waitMs = 0): Promise<SyncReport> {
    await this.requireOnline();
    const before = { ...this.counts };
    const joined: SpaceId[] = [];
    const refused: { space: SpaceId; reason: string }[] = [];
    const deadline = this.o.clock.now() + waitMs;
    for (;;) {
      for (const j of [...this.joins]) {
        try {
          if ((await this.pollJoin(j.space)) === 'joined') joined.push(j.space);
        } catch (e) {
          if (!(e instanceof PeerError) || e.code !== 'invite') throw e;
          refused.push({ space: j.space, reason: e.message });
        }
      }
      for (const h of this.hosts.values()) {
        if (this.device.group(h.space) === undefined) continue;
        await this.caughtUp(h);
        await this.mls(h, () => follow(h.ctx));
        await h.sync.idle();
        if (this.device.group(h.space)?.active === true) await this.admit(h);
      }
      if (this.joins.length === 0 || this.o.clock.now() >= deadline) break;
      await sleep(Math.min(250, Math.max(0, deadline - this.o.clock.now())));
    }
    for (const h of this.hosts.values()) await this.settled(h);
    const outboxLeft = await this.pool.flush();
    return {
      accepted: this.counts.accepted - before.accepted,
      rejected: this.counts.rejected - before.rejected,
      admitted: this.counts.admitted - before.admitted,
      outboxLeft,
      joined,
      refused,
    };
  }

  /**
   * Brings `space` (or every Space) up to date from the relays: the backlog of its mailbox and
   * its membership changes. `false` when no relay is connected (the local state stands).
   */
  async catchUp(space?: SpaceId): Promise<boolean> {
    if (this.o.relays.length === 0 || !(await this.goOnline())) return false;
    const hosts = space === undefined ? [...this.hosts.values()] : [this.hostOf(space)];
    for (const h of hosts) {
      if (this.device.group(h.space) === undefined) continue;
      await this.caughtUp(h);
      await this.mls(h, () => follow(h.ctx));
      await h.sync.idle();
    }
    return true;
  }

  /** Answers the join requests of `space` that this device may admit. */
  async admit(h: Host): Promise<AdmissionReport[]> {
    const reports = await this.mls(h, () => admitWaiting(h.ctx));
    for (const r of reports) {
      if (r.kind === 'admitted') this.counts.admitted++;
      this.emit({ kind: 'admission', space: h.space, report: r });
    }
    await this.settled(h);
    return reports;
  }

  /** Admits waiting join requests in every Space (what `serve` runs when a request arrives). */
  async admitAll(): Promise<number> {
    let n = 0;
    for (const h of this.hosts.values()) {
      if (this.device.group(h.space)?.active !== true) continue;
      n += (await this.admit(h)).filter((r) => r.kind === 'admitted').length;
    }
    return n;
  }

  /**
   * Pins every attachment of every Space in the device's cache (fetched and verified once, then
   * kept whatever the quota): what a device that stays online (`serve`) keeps for the others.
   * Resolves with the number newly pinned; a blob the relays lack is skipped and tried again
   * on the next call.
   */
  async pinAttachments(): Promise<number> {
    const cache = this.o.blobs;
    if (cache === undefined || !this.isOnline()) return 0;
    let n = 0;
    for (const h of this.hosts.values()) {
      const state = h.replica.state;
      const size = state.size;
      // Listing builds a view of every post: a Space unchanged since all its attachments were pinned is skipped.
      if (h.pinnedAtSize === size) continue;
      let missed = false;
      for (const post of state.allPosts()) {
        for (const ref of post.attachments) {
          if (post.deleted || cache.isPinned(ref.hash)) continue;
          try {
            await pinBlob(ref, relayBlobTransport(this.pool), { aead: this.o.aead, cache });
            n++;
            this.emit({ kind: 'pinned', space: h.space, blob: ref.hash, size: ref.size });
          } catch (e) {
            missed = true;
            this.emit({ kind: 'error', space: h.space, message: `attachment not pinned: ${String(e)}` });
          }
        }
      }
      if (!missed) h.pinnedAtSize = size;
    }
    return n;
  }

  /** What a device that stays online does now and then: admit, send, retry held ops, pin. */
  async serveTick(): Promise<void> {
    if (!this.isOnline()) return;
    for (const j of [...this.joins]) {
      try {
        await this.pollJoin(j.space);
      } catch (e) {
        if (!(e instanceof PeerError) || e.code !== 'invite') throw e;
      }
    }
    await this.admitAll();
    for (const h of this.hosts.values()) await h.replica.retryHeld();
    await this.pool.flush();
    await this.pinAttachments();
  }

  /** Keeps an eye on every invite's mailbox of every Space: a request arriving runs `admit`. */
  watchInvites(): void {
    for (const h of this.hosts.values()) {
      for (const inv of h.replica.state.invites()) this.watchInvite(h, inv.secret);
    }
  }

  private readonly watched = new Map<string, Follow>();

  private watchInvite(h: Host, secret: Uint8Array): void {
    const address = inviteMailbox(secret);
    const k = bytesKey(address);
    if (this.watched.has(k)) return;
    this.watched.set(
      k,
      this.pool.follow(address, {
        onMessage: async () => {
          if (this.device.group(h.space)?.active === true) await this.admit(h);
        },
        onError: (e) => {
          this.emit({ kind: 'error', space: h.space, message: String(e) });
        },
      }),
    );
  }

  /** Resolves once every own op written so far is in the outbox (or at a relay). */
  private async settled(h: Host): Promise<void> {
    while (h.sending.size > 0) await Promise.all([...h.sending]);
  }

  /** Resolves once every connected relay delivered the Space's backlog and the pipeline took it. */
  private async caughtUp(h: Host, timeoutMs = CATCH_UP_TIMEOUT_MS): Promise<void> {
    const following = this.startFollowing(h) ?? (h.following = h.sync.start(h.replica));
    if (!following.live) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const live = new Promise<boolean>((resolve) => {
        h.caughtUpWaiters.push(() => {
          resolve(true);
        });
        timer = setTimeout(() => {
          resolve(false);
        }, timeoutMs);
      });
      const ok = await live;
      clearTimeout(timer);
      if (!ok) throw new PeerError('offline', 'the relays did not deliver the Space in time');
    }
    await h.sync.idle();
  }

  /** MLS flows of one Space run one at a time (they share the group state and cursors). */
  private mls<T>(h: Host, fn: () => Promise<T>): Promise<T> {
    const run = h.mlsBusy.then(fn, fn);
    h.mlsBusy = run.catch(() => undefined);
    return run.catch((e: unknown) => {
      if (e instanceof MailboxError)
        throw new PeerError('offline', 'no relay could be reached', { cause: e });
      throw e;
    });
  }

  private requireMember(space: SpaceId): void {
    if (this.device.group(space)?.active !== true)
      throw new PeerError('removed', 'you are not a member of this Space any more');
  }

  private hostOf(space: SpaceId): Host {
    const h = this.hosts.get(bytesKey(space));
    if (h === undefined) throw new PeerError('unknown', 'no such Space on this device');
    return h;
  }

  private async host(space: SpaceId): Promise<Host> {
    const k = bytesKey(space);
    const had = this.hosts.get(k);
    if (had !== undefined) return had;
    const ref: { host?: Host } = {};
    const topic = topicId(space);
    const sync = new SpaceSync({
      pool: this.pool,
      topic,
      onOutcome: (o: AcceptOutcome) => {
        if (o.kind === 'rejected') {
          this.counts.rejected++;
          this.emit({ kind: 'rejected', space, reason: o.reason, opId: o.opId });
        }
      },
      onCaughtUp: () => {
        for (const w of ref.host?.caughtUpWaiters.splice(0) ?? []) w();
        if (ref.host !== undefined) this.retryHeldCommit(ref.host);
      },
      onError: (e) => {
        this.emit({ kind: 'error', space, message: String(e) });
      },
    });
    const replica = await SpaceReplica.open({
      space,
      storage: this.o.storage,
      keys: this.device,
      membership: this.device,
      ed25519: this.o.ed25519,
      clock: this.o.clock,
      rng: this.o.rng,
      aead: this.o.aead,
      ...(this.o.sha256 === undefined ? {} : { sha256: this.o.sha256 }),
      fetchMissing: sync.fetchMissing,
      onAccepted: (ev) => {
        if (ref.host !== undefined) this.accepted(ref.host, ev);
      },
    });
    const host: Host = {
      space,
      replica,
      sync,
      ctx: {
        space,
        identity: this.identity,
        device: this.device,
        replica,
        mailbox: this.pool,
        aead: this.o.aead,
        rng: this.o.rng,
        clock: this.o.clock,
      },
      following: undefined,
      handshakes: undefined,
      mlsFollow: 'idle',
      mlsHeld: false,
      heldRetry: undefined,
      sending: new Set(),
      statusOf: new Map(),
      caughtUpWaiters: [],
      mlsBusy: Promise.resolve(),
      pinnedAtSize: -1,
      checkpointTimer: undefined,
      checkpointing: undefined,
    };
    ref.host = host;
    this.hosts.set(k, host);
    // Opened from the whole log, or from an old checkpoint and many ops: a new one, once quiet.
    this.checkpointSoon(host, false);
    return host;
  }

  /** Follows the Space's ops and its handshakes, once this device is in its group. */
  private startFollowing(h: Host): Follow | undefined {
    if (this.device.group(h.space) === undefined) return h.following;
    h.following ??= h.sync.start(h.replica);
    h.handshakes ??= this.pool.follow(handshakeTopicId(h.space), {
      onMessage: () => {
        this.handshakeArrived(h);
      },
      onError: (e) => {
        this.emit({ kind: 'error', space: h.space, message: String(e) });
      },
    });
    return h.following;
  }

  /** Runs the MLS follow again soon when a commit waits for ops (one timer at a time). */
  private retryHeldCommit(h: Host): void {
    if (!h.mlsHeld || h.heldRetry !== undefined || this.closed) return;
    h.heldRetry = setTimeout(() => {
      h.heldRetry = undefined;
      this.handshakeArrived(h);
    }, HELD_RETRY_MS);
  }

  /**
   * A commit or proposal arrived on the Space's handshake address: the MLS follow reads and
   * applies what is new. Arrivals while it runs make it run once more, not once each (a replayed
   * backlog of handshakes is read in one go).
   */
  private handshakeArrived(h: Host): void {
    if (h.mlsFollow !== 'idle') {
      h.mlsFollow = 'again';
      return;
    }
    h.mlsFollow = 'running';
    void (async () => {
      for (;;) {
        await h.sync.idle();
        if (this.device.group(h.space) !== undefined) {
          try {
            const outcomes = await this.mls(h, () => follow(h.ctx));
            h.mlsHeld = outcomes.some((o) => o.kind === 'held');
            for (const o of outcomes) {
              if (o.kind === 'removed-self') this.emit({ kind: 'removed', space: h.space });
              else if (o.kind === 'applied' || o.kind === 'switched')
                this.emit({
                  kind: 'membership',
                  space: h.space,
                  outcome: o.kind,
                  epoch: this.device.group(h.space)?.epoch.epoch ?? 0,
                });
            }
          } catch (e) {
            this.emit({ kind: 'error', space: h.space, message: String(e) });
          }
        }
        if (h.mlsFollow === 'running') break;
        h.mlsFollow = 'running';
      }
      h.mlsFollow = 'idle';
    })();
  }

  /**
   * Writes the Space's checkpoint now during a long stream of ops (when `streaming`), else once
   * the Space is quiet (see {@link CHECKPOINT_QUIET_MS}).
   */
  private checkpointSoon(h: Host, streaming = true): void {
    if (this.closed) return;
    const since = h.replica.sinceCheckpoint;
    if (streaming && since >= Math.max(CHECKPOINT_STREAM_OPS, h.replica.state.size / 8)) {
      this.writeCheckpoint(h);
      return;
    }
    clearTimeout(h.checkpointTimer);
    h.checkpointTimer = undefined;
    if (since < CHECKPOINT_MIN_OPS) return;
    h.checkpointTimer = setTimeout(() => {
      h.checkpointTimer = undefined;
      this.writeCheckpoint(h);
    }, CHECKPOINT_QUIET_MS);
  }

  /**
   * Writes the checkpoint of every Space that took in ops since its last one (the app goes to
   * the background and may be killed: the next open then applies none of them again). Never
   * rejects: a failure is reported as an `error` event and the previous checkpoint stays.
   */
  async saveCheckpoints(): Promise<void> {
    for (const h of this.hosts.values()) if (h.replica.sinceCheckpoint > 0) this.writeCheckpoint(h);
    for (const h of this.hosts.values()) await h.checkpointing;
  }

  private writeCheckpoint(h: Host): void {
    clearTimeout(h.checkpointTimer);
    h.checkpointTimer = undefined;
    if (h.checkpointing !== undefined) return;
    h.checkpointing = h.replica.checkpoint().then(
      () => {
        h.checkpointing = undefined;
        // Ops accepted while it was written.
        this.checkpointSoon(h, false);
      },
      // The previous checkpoint stays in use; the next op accepted tries again.
      (e: unknown) => {
        h.checkpointing = undefined;
        this.emit({ kind: 'error', space: h.space, message: `a checkpoint was not written: ${String(e)}` });
      },
    );
  }

  private accepted(h: Host, ev: AcceptedEvent): void {
    this.checkpointSoon(h);
    const own = equalBytes(ev.op.author, this.identity.device);
    this.emit({ kind: 'accepted', space: h.space, op: ev.op.kind, opId: ev.opId, own });
    if (!own) {
      this.counts.accepted++;
      // While the MLS follow runs it has not yet said whether a commit waits for ops: this op
      // may be the one it waits for, so the follow runs once more when done (else a commit held
      // for this op would wait for the next op or handshake to arrive, perhaps never).
      if (h.mlsFollow !== 'idle') h.mlsFollow = 'again';
      else this.retryHeldCommit(h);
      return;
    }
    // Own op: into the outbox (persisted there before `send` resolves), then to the relays.
    const p = (async (): Promise<WriteStatus> => {
      await this.goOnline();
      const sealed = await h.replica.sealedOf(ev.opId);
      if (sealed === undefined) return 'queued';
      return this.pool.send(h.replica.topic, sealed);
    })();
    h.sending.add(p);
    h.statusOf.set(bytesKey(ev.opId), p);
    void p.then(
      () => h.sending.delete(p),
      (e: unknown) => {
        h.sending.delete(p);
        this.emit({ kind: 'error', space: h.space, message: `an op could not be queued: ${String(e)}` });
      },
    );
  }

  private emit(e: PeerEvent): void {
    this.o.onEvent?.(e);
  }

  /** Stops following, waits for own ops to reach the outbox, closes the pool. Storage stays open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.hosts.values()) {
      await this.settled(h);
      clearTimeout(h.heldRetry);
      clearTimeout(h.checkpointTimer);
      await h.checkpointing;
      // What arrived since the last checkpoint, so the next open applies none of it again.
      if (h.replica.sinceCheckpoint > 0) await h.replica.checkpoint().catch(() => undefined);
      await h.handshakes?.close();
      await h.sync.stop();
    }
    for (const w of this.watched.values()) await w.close();
    await this.pool.close();
  }
}

const utf8 = new TextEncoder();

/** Text within the op format's bounds, refused here (`invalid`) rather than by the codec. */
function checkText(text: string, maxBytes: number, what: string, minChars: number): void {
  if (text.trim().length < minChars) throw new PeerError('invalid', `${what} cannot be empty`);
  const n = utf8.encode(text).length;
  if (n > maxBytes) throw new PeerError('invalid', `${what} is ${n} bytes; at most ${maxBytes}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

function decodeJoins(bytes: Uint8Array | undefined): PendingJoin[] {
  if (bytes === undefined) return [];
  const v = decode(bytes);
  if (!Array.isArray(v)) return [];
  const out: PendingJoin[] = [];
  for (const j of v as CborValue[]) {
    if (!Array.isArray(j) || j.length !== 4) continue;
    const [space, secret, relays, expiresAtMs] = j as CborValue[];
    if (!(space instanceof Uint8Array) || !(secret instanceof Uint8Array) || typeof expiresAtMs !== 'number')
      continue;
    if (!Array.isArray(relays) || !relays.every((r) => typeof r === 'string')) continue;
    out.push({ space: space as SpaceId, link: { space: space as SpaceId, secret, relays, expiresAtMs } });
  }
  return out;
}
