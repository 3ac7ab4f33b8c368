/**
 * The API the page calls, served by the worker over Comlink (ARCHITECTURE.md sections 1 and 11).
 * This one file is its contract: every method, its arguments and what it answers.
 *
 * - Every command answers a `Result`: `{ok: true, value}` or `{ok: false, error: {code,
 *   message}}`. Comlink cannot carry error classes across the port, so nothing here throws for
 *   an expected failure; the codes are below.
 * - Ids are strings in their display form (multibase base58btc, starting with `z`), times ISO
 *   8601: the same values the command-line client prints (`shared/src/peer/views.ts`).
 * - Live updates arrive through `subscribe`: the page passes a listener (wrapped with
 *   `Comlink.proxy`) and gets events as they happen; it calls `unsubscribe` when the tab goes
 *   away (`pagehide`), since a callback into a closed tab never returns.
 */
import type { ChannelItem, MemberItem, PostItem } from '../../shared/src/peer/views.js';
import type { Notice } from './notify.js';

export type { ChannelItem, MemberItem, PostItem };

export type ErrorCode =
  /** No identity on this device yet: create or import one. */
  | 'no-identity'
  /** `createIdentity`/`importBackup` on a device that has one. */
  | 'identity-exists'
  /** No such Space, channel, thread, post, user or invite here. */
  | 'unknown'
  /** This device is no longer a member of that Space: it reads what it had, writes nothing. */
  | 'removed'
  /** The Space's rules refuse it (role, mute, ban). */
  | 'refused'
  /** The invite cannot be used: malformed, expired, revoked, used up, or refused by the admitter. */
  | 'invite'
  /** Input out of bounds (empty or too long names and texts, a bad display name). */
  | 'invalid'
  /** No relay reachable for something that needs one (kick, ban, join, attachments). */
  | 'offline'
  /** `importBackup`: wrong passphrase, or a damaged backup. */
  | 'wrong-passphrase'
  /** `importBackup`: not a Conclave backup. */
  | 'bad-backup'
  /** The browser's storage failed (quota, a damaged database). */
  | 'storage'
  /** A bug: the message says what happened. */
  | 'internal';

export interface ApiError {
  readonly code: ErrorCode;
  readonly message: string;
}

export type Result<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ApiError };

export interface IdentityItem {
  readonly userId: string;
  readonly deviceId: string;
  readonly name: string;
}

export interface SpaceItem {
  readonly spaceId: string;
  readonly name: string;
  readonly role: 'admin' | 'moderator' | 'member';
  /** `removed`: this device is out of the Space; `pending`: its join request waits for an answer. */
  readonly status: 'member' | 'removed' | 'pending';
  /** Others' posts in all its channels since each channel was last read (`markRead`). */
  readonly unread: number;
}

export interface ChannelInfo extends ChannelItem {
  /** Others' posts since the channel was last read (`markRead`); every one before the first read. */
  readonly unread: number;
}

export interface SpaceInfo extends SpaceItem {
  readonly description: string;
  readonly epoch: number;
  readonly memberCount: number;
  readonly channels: readonly ChannelInfo[];
  readonly historyVisibility: 'all' | 'sinceJoin';
}

/** A post as a timeline shows it, with the start of the post it replies to. */
export interface TimelineItem extends PostItem {
  /** The replied-to post's author and text (empty when deleted), null when not a reply. */
  readonly quote: { readonly authorName: string; readonly text: string } | null;
}

/**
 * One window of a channel's (or a thread's) posts, oldest first: what the page renders. Deleted
 * posts are left out; cursors are post ids and stay valid when the post is deleted.
 */
export interface TimelinePage {
  readonly posts: readonly TimelineItem[];
  /** Pass as `before` for the page before this one; null when this one starts the channel. */
  readonly older: string | null;
  /** Posts (not deleted) in the whole channel or thread. */
  readonly total: number;
  /** The first post of someone else since the channel was last read, null when all are read. */
  readonly firstUnread: string | null;
  /** Others' posts since the channel was last read. */
  readonly unread: number;
}

/** Where a timeline window is: the newest posts, the page before a post, or from a post on. */
export interface TimelineQuery {
  /** A thread of a forum channel; leave out for a chat channel's timeline. */
  readonly threadId?: string;
  /** The `limit` posts just before this one. */
  readonly before?: string;
  /** This post and every later one (the newest `limit` when there are more). */
  readonly from?: string;
  /**
   * The posts after this one, at most `limit` (the first ones): what arrived since the newest
   * post on screen. `total` tells whether any landed before it (then read the window again).
   */
  readonly after?: string;
  /** Posts at most: 1 to 500. */
  readonly limit: number;
}

export interface ThreadItem {
  readonly threadId: string;
  readonly title: string;
  readonly author: string;
  readonly authorName: string;
  readonly at: string;
  readonly replies: number;
  /** When the last post of the thread was written (or the thread, when it has none). */
  readonly lastActivity: string;
}

export interface AuditItem {
  readonly kind: string;
  readonly actor: string;
  readonly actorName: string;
  readonly target: string | null;
  readonly reason: string;
  readonly opId: string;
  readonly epoch: number;
  readonly at: string;
  readonly signatureValid: boolean;
}

export interface NetworkItem {
  readonly relays: readonly {
    readonly address: string;
    readonly status: 'connecting' | 'connected' | 'offline';
  }[];
  /** Own ops waiting for a relay to take them. */
  readonly outbox: number;
  /** A catch-up is in progress: the relays are delivering what arrived while this device was away. */
  readonly syncing: boolean;
}

export interface SyncItem {
  readonly accepted: number;
  readonly rejected: number;
  readonly admitted: number;
  readonly outboxLeft: number;
  readonly joined: readonly string[];
}

export type WriteStatus = 'sent' | 'queued';

/** Milliseconds: a Space's `changed` events come at most this often (one per display frame). */
export const CHANGED_EVERY_MS = 16;

export type LiveEvent =
  /**
   * Something in the Space changed (ops were accepted): re-read what is on screen. Ops accepted
   * close together (a catch-up takes in hundreds a second) are told as one event, at most one
   * per Space every {@link CHANGED_EVERY_MS}. `op` is their kind when they were all of one kind
   * (`CreatePost`: new posts, which `timeline` with `after` fetches alone), else a kind other
   * than `CreatePost` among them.
   */
  | { readonly kind: 'changed'; readonly spaceId: string; readonly op: string }
  /** The connections or the outbox changed. */
  | { readonly kind: 'network'; readonly network: NetworkItem }
  | { readonly kind: 'joined'; readonly spaceId: string }
  | { readonly kind: 'join-refused'; readonly spaceId: string; readonly reason: string }
  /** This device was removed from the Space. */
  | { readonly kind: 'removed'; readonly spaceId: string }
  /** This device left the Space (`leave`, in any tab): it is gone from the list. */
  | { readonly kind: 'left'; readonly spaceId: string }
  /** A channel of the Space was read (in any tab): unread counts changed. */
  | { readonly kind: 'read'; readonly spaceId: string }
  /** A join request was handled by this device (as an admin or moderator online). */
  | { readonly kind: 'admission'; readonly spaceId: string; readonly result: string };

export interface HostInfo {
  /** `shared`: one SharedWorker serves every tab; `dedicated`: this tab's own worker. */
  readonly kind: 'shared' | 'dedicated';
  /** Tabs connected to this host since it started. */
  readonly tabs: number;
  /** `dedicated`: whether this tab's worker is the elected writer (the one running the peer). */
  readonly writer?: boolean;
}

export interface ConclaveApi {
  /** How the host runs. */
  hostInfo(): Promise<Result<HostInfo>>;
  /** Relays to use (multiaddrs with `/p2p/<peer id>`), kept on the device. Reconnects. */
  setRelays(relays: readonly string[]): Promise<Result<NetworkItem>>;
  /**
   * The browser says the device went offline (`false`) or is back (`true`): offline, the host
   * drops its relay connections (a browser's offline mode may spare a worker's open WebSockets,
   * and a dead link can look alive for minutes), so the status says offline and posts wait in
   * the outbox; back, it reconnects and catches up. No-op when nothing changes.
   */
  setOnline(online: boolean): Promise<Result<NetworkItem>>;
  /** This device's identity, or null before the first run's `createIdentity`/`importBackup`. */
  identity(): Promise<Result<IdentityItem | null>>;
  createIdentity(name: string): Promise<Result<IdentityItem>>;
  /** The identity (user key and name) encrypted under `passphrase`, to save as a file. */
  exportBackup(passphrase: string): Promise<Result<Uint8Array>>;
  /** Restores a backup on this (empty) device as a new device of the same user. */
  importBackup(backup: Uint8Array, passphrase: string): Promise<Result<IdentityItem>>;

  spaces(): Promise<Result<SpaceItem[]>>;
  space(spaceId: string): Promise<Result<SpaceInfo>>;
  createSpace(name: string): Promise<Result<{ spaceId: string; status: WriteStatus }>>;
  /**
   * Leaves a Space: this device asks to be removed (a moderator or admin online commits it),
   * stops following it and forgets it. Refused (`refused`) for the Space's creator; needs a
   * relay (`offline`).
   */
  leave(spaceId: string): Promise<Result<{ spaceId: string }>>;
  /** Asks to join by invite link (`conclave://join/…` or `https://…#join=…`), waiting up to `waitMs`. */
  join(link: string, waitMs: number): Promise<Result<{ spaceId: string; status: 'joined' | 'pending' }>>;
  createInvite(
    spaceId: string,
    options: { role: 'member' | 'moderator'; expiresInMs: number; maxUses: number; webOrigin?: string },
  ): Promise<Result<{ inviteId: string; link: string }>>;

  createChannel(
    spaceId: string,
    name: string,
    type: 'chat' | 'forum',
  ): Promise<Result<{ channelId: string; status: WriteStatus }>>;
  /** Renames a channel (admins). */
  renameChannel(spaceId: string, channelId: string, name: string): Promise<Result<{ status: WriteStatus }>>;
  /** Every post of a channel in display order: a chat channel's top level, or one thread. */
  posts(spaceId: string, channelId: string, threadId?: string): Promise<Result<PostItem[]>>;
  /**
   * One window of a channel's timeline (or a thread's): what the page shows, never the whole
   * channel. The newest `limit` without a cursor; older pages with `before`; a live refresh of
   * what is on screen with `from` (the oldest post shown).
   */
  timeline(spaceId: string, channelId: string, query: TimelineQuery): Promise<Result<TimelinePage>>;
  /**
   * Marks a channel read up to `postId` (kept on the device, for every tab; never moves back).
   * Tabs get a `read` event.
   */
  markRead(spaceId: string, channelId: string, postId: string): Promise<Result<{ unread: number }>>;
  threads(spaceId: string, channelId: string): Promise<Result<ThreadItem[]>>;
  post(
    spaceId: string,
    channelId: string,
    text: string,
    options?: {
      title?: string;
      threadId?: string;
      replyTo?: string;
      files?: readonly { bytes: Uint8Array; name: string; mime: string }[];
      /**
       * A random string the page chose for this message (e.g. `crypto.randomUUID()`): the same
       * send made again (after a closed tab) answers the post made the first time, with status
       * `queued`, instead of posting it twice.
       */
      sendId?: string;
    },
  ): Promise<Result<{ postId: string; threadId: string | null; status: WriteStatus }>>;
  editPost(spaceId: string, postId: string, text: string): Promise<Result<{ status: WriteStatus }>>;
  deletePost(spaceId: string, postId: string): Promise<Result<{ status: WriteStatus }>>;
  /** An attachment's bytes (from the device's cache, else the relays). */
  attachment(
    spaceId: string,
    blobId: string,
  ): Promise<Result<{ name: string; mime: string; bytes: Uint8Array }>>;

  members(spaceId: string): Promise<Result<MemberItem[]>>;
  kick(spaceId: string, userId: string): Promise<Result<{ atEpoch: number }>>;
  ban(spaceId: string, userId: string): Promise<Result<{ atEpoch: number }>>;
  /** `forMs` null: until unmuted. */
  mute(spaceId: string, userId: string, forMs: number | null): Promise<Result<{ status: WriteStatus }>>;
  unmute(spaceId: string, userId: string): Promise<Result<{ status: WriteStatus }>>;
  audit(spaceId: string): Promise<Result<AuditItem[]>>;

  network(): Promise<Result<NetworkItem>>;
  /** Pulls every Space, completes pending joins, admits join requests, flushes the outbox. */
  sync(): Promise<Result<SyncItem>>;
  subscribe(listener: (event: LiveEvent) => void): Promise<number>;
  unsubscribe(id: number): Promise<void>;

  /**
   * The app goes to the background (hidden, or paused by the phone, which may then suspend or
   * kill it): offers the outbox to the relays now, and saves each Space's state checkpoint that
   * is behind. Mailbox cursors are saved as each message is handled (a message whose cursor was
   * not saved comes again and is a no-op).
   */
  suspend(): Promise<Result<{ outboxLeft: number }>>;
  /**
   * The app is back (visible, resumed, or online again): reconnects to the relays at once when
   * no link survived, pulls every Space's mailbox until caught up, flushes the outbox. Answers
   * how many ops arrived, whether a relay was reached, and the arrived posts that call for this
   * person (a mention of their name, a reply to their post: notify.ts). `online`: whether the
   * page's browser is online now (its `setOnline` call for the same event may come after this).
   */
  resume(
    online: boolean,
  ): Promise<Result<{ online: boolean; accepted: number; outboxLeft: number; notices: readonly Notice[] }>>;
}
