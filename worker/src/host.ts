/**
 * The browser host of the peer core: the `ConclaveApi` (api.ts) over one `Peer` on IndexedDB
 * storage and libp2p WebSockets to the relays (relay-only). It runs in the worker; every tab of
 * the origin talks to the same host. While it runs with relays it stays online as `conclave
 * serve` does: it follows every Space live, admits join requests it may admit, sends the outbox.
 */
import { openBlobCache, type BlobCache } from '../../shared/src/blob/cache.js';
import { idbChunkStore } from '../../shared/src/blob/chunkstore.idb.js';
import { BlobError } from '../../shared/src/blob/errors.js';
import { webCryptoEd25519 } from '../../shared/src/crypto/ed25519-webcrypto.js';
import { parseInviteLink } from '../../shared/src/mls/invite.js';
import { webCryptoAead } from '../../shared/src/ports/aead.js';
import { systemClock, webRng } from '../../shared/src/ports/env.js';
import { MailboxError } from '../../shared/src/ports/mailbox.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { NetworkError } from '../../shared/src/ports/network.js';
import { type Storage, StorageError } from '../../shared/src/ports/storage.js';
import { idbStorage } from '../../shared/src/ports/storage.idb.js';
import {
  IdentityError,
  createSecrets,
  decodeSecrets,
  encodeBackup,
  encodeSecrets,
  restoreBackup,
} from '../../shared/src/peer/identity.js';
import { Peer, PeerError, type PeerEvent } from '../../shared/src/peer/peer.js';
import type { PostView, SpaceState } from '../../shared/src/core/state.js';
import { sha256 } from '../../shared/src/crypto/sha256.js';
import {
  SecretsError,
  openWithPassphrase,
  sealWithPassphrase,
} from '../../shared/src/peer/sealed-secrets.js';
import {
  channelItems,
  idText,
  memberItems,
  nameIn,
  postItems,
  timeText,
} from '../../shared/src/peer/views.js';
import type { ChannelId, PostId, SpaceId, ThreadId, UserId } from '../../shared/src/protocol/index.js';
import { bytesKey, equalBytes } from '../../shared/src/protocol/ids.js';
import { fromMultibase } from '../../shared/src/protocol/multibase.js';
import {
  type ApiError,
  CHANGED_EVERY_MS,
  type ChannelInfo,
  type ConclaveApi,
  type ErrorCode,
  type IdentityItem,
  type LiveEvent,
  type NetworkItem,
  type Result,
  type ThreadItem,
  type TimelineItem,
  type TimelinePage,
  type TimelineQuery,
} from './api.js';
import { loadSecrets, saveSecrets } from './keystore.js';
import { notable } from './notify.js';
import { RESUME_DIAL_MS, arrivedSince, postKeys, settled, whenConnected } from './resume.js';

const DB_NAME = 'conclave';
const RELAYS_META = 'host/relays';
/** Per Space: each channel's read position, `{[channelId]: {postId, atMs}}` as JSON. */
const READS_META = 'host/read/';
/** Posts a timeline window holds at most. */
const MAX_WINDOW = 500;
/** Bytes of attachments the device keeps cached. */
const BLOB_CACHE_BYTES = 128 * 1024 * 1024;
/** Milliseconds a dial to a relay may take. */
const DIAL_TIMEOUT_MS = 10_000;
/** Milliseconds between the background rounds (admit, retry, send). */
const TICK_MS = 3_000;

const ed25519 = webCryptoEd25519();
const aead = webCryptoAead();
/** For passphrase work: its own instance, so a derived key never sits in the shared key cache. */
const backupAead = webCryptoAead();

/** A failure of the host itself, with its API code. */
export class HostError extends Error {
  override readonly name = 'HostError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function fail(code: ErrorCode, message: string): { ok: false; error: ApiError } {
  return { ok: false, error: { code, message } };
}

/** Any failure as a Result error with its code. */
function asError(e: unknown): { ok: false; error: ApiError } {
  if (e instanceof HostError) return fail(e.code, e.message);
  if (e instanceof PeerError) {
    const map: Record<PeerError['code'], ErrorCode> = {
      unknown: 'unknown',
      removed: 'removed',
      refused: 'refused',
      invite: 'invite',
      invalid: 'invalid',
      offline: 'offline',
    };
    return fail(map[e.code], e.message);
  }
  if (e instanceof MailboxError || e instanceof NetworkError) return fail('offline', e.message);
  if (e instanceof BlobError)
    return fail(e.code === 'transport' || e.code === 'missing' ? 'offline' : 'invalid', e.message);
  if (e instanceof StorageError) return fail('storage', e.message);
  if (e instanceof IdentityError) return fail(e.code === 'bad-name' ? 'invalid' : 'storage', e.message);
  return fail('internal', e instanceof Error ? `${e.name}: ${e.message}` : String(e));
}

async function run<T>(fn: () => Promise<T> | T): Promise<Result<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return asError(e);
  }
}

/** Where a channel was last read: the post, and its time for when that post is not found. */
interface ReadMark {
  readonly postId: string;
  readonly atMs: number;
}

/**
 * A channel's (or thread's) posts in display order, deleted ones included so that cursors stay
 * valid; rebuilt only when the Space's state changed (its op count moved).
 */
interface PostIndex {
  readonly state: SpaceState;
  readonly size: number;
  /** By `channel/*` (all of a channel), `channel/-` (a chat's top level), `channel/thread`. */
  readonly lists: ReadonlyMap<string, readonly PostView[]>;
}

const NO_POSTS: readonly PostView[] = [];

/**
 * libp2p and its transports: a chunk of their own, loaded when the worker first needs the network,
 * so the worker starts (and opens the device's Spaces) without compiling them first.
 */
const libp2pModule = () => import('../../shared/src/net/libp2p.js');

/**
 * A connector over a libp2p node made at the first dial, or at once when `early`: while the peer
 * opens, the worker mostly waits for IndexedDB to hand over the Spaces' ops, and loading libp2p
 * and making the node (its key, its start) fill that wait instead of delaying the first reads.
 */
function libp2pConnectorOf(options: { dialTimeoutMs: number }, early: boolean): RelayConnector {
  let node: Promise<RelayConnector> | undefined;
  const made = () => (node ??= libp2pModule().then((m) => m.libp2pConnector(options)));
  // A failure reaches whoever dials; none is left unhandled meanwhile.
  if (early) made().catch(() => undefined);
  return {
    connect: async (address) => (await made()).connect(address),
    stop: async () => {
      if (node !== undefined) await (await node.catch(() => undefined))?.stop();
    },
  };
}

function idOf<T extends Uint8Array>(text: string, bytes: number, what: string): T {
  const b = text.length <= 64 ? fromMultibase(text) : undefined;
  if (b?.length !== bytes) throw new PeerError('unknown', `no ${what} "${text}"`);
  return b as T;
}

export class Host implements ConclaveApi {
  /** Set by the entry (worker.ts): how this host is reached, and how many tabs connected. */
  kind: 'shared' | 'dedicated' = 'dedicated';
  tabs = 0;
  private storage: Storage | undefined;
  private blobs: BlobCache | undefined;
  private peer: Peer | undefined;
  private connector: RelayConnector | undefined;
  private opening: Promise<Peer | undefined> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly listeners = new Map<number, (e: LiveEvent) => void>();
  private nextListener = 1;
  /** Catch-ups in progress (the status says "syncing"). */
  private syncing = 0;
  private wasConnected = false;
  private online = false;
  /** The browser said the device is offline (`setOnline(false)`). */
  private browserOffline = false;
  private readonly indexes = new Map<string, PostIndex>();
  private readonly reads = new Map<string, Record<string, ReadMark>>();
  /** Spaces with accepted ops not yet told to the tabs, and the kind to tell (see `changed`). */
  private readonly unsaid = new Map<string, string>();
  private sayTimer: ReturnType<typeof setTimeout> | undefined;
  private saidAt = -Infinity;
  private restarting: Promise<void> = Promise.resolve();

  private async store(): Promise<Storage> {
    this.storage ??= await idbStorage(DB_NAME);
    return this.storage;
  }

  private async relays(): Promise<string[]> {
    const b = await (await this.store()).getMeta(RELAYS_META);
    if (b === undefined) return [];
    const v = JSON.parse(new TextDecoder().decode(b)) as unknown;
    return Array.isArray(v) ? v.filter((r): r is string => typeof r === 'string') : [];
  }

  /** The peer, opened once from the saved identity; undefined before there is one. */
  private async open(): Promise<Peer | undefined> {
    await this.restarting;
    if (this.peer !== undefined) return this.peer;
    this.opening ??= (async () => {
      const payload = await loadSecrets();
      if (payload === undefined) return undefined;
      const secrets = decodeSecrets(payload);
      const storage = await this.store();
      this.blobs ??= await openBlobCache(await idbChunkStore(`${DB_NAME}-blobs`), {
        quotaBytes: BLOB_CACHE_BYTES,
      });
      const relays = await this.relays();
      this.connector = libp2pConnectorOf(
        { dialTimeoutMs: DIAL_TIMEOUT_MS },
        relays.length > 0 && !this.browserOffline,
      );
      const peer = await Peer.open({
        secrets,
        storage,
        connector: this.connector,
        // While the browser says it is offline, no relay: posts wait in the outbox.
        relays: this.browserOffline ? [] : relays,
        ed25519,
        aead,
        clock: systemClock,
        rng: webRng,
        blobs: this.blobs,
        onEvent: (e) => {
          this.onPeerEvent(e);
        },
      });
      this.peer = peer;
      peer.pool.onState(() => {
        const connected = peer.isOnline();
        // Back after a drop: the relays now deliver what went by meanwhile.
        if (connected && !this.wasConnected && this.online) void this.catchUp(peer);
        this.wasConnected = connected;
        this.emit({ kind: 'network', network: this.networkItem() });
      });
      if (relays.length > 0 && !this.browserOffline) void this.goOnline(peer);
      return peer;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async goOnline(peer: Peer): Promise<void> {
    this.syncing++;
    try {
      await peer.goOnline();
      await peer.catchUp();
      peer.watchInvites();
    } catch {
      // Offline for now: the pool keeps trying, and the next round does the rest.
    } finally {
      this.syncing--;
      this.online = true;
      this.emit({ kind: 'network', network: this.networkItem() });
    }
    this.timer ??= setInterval(() => {
      void peer.serveTick().catch(() => undefined);
    }, TICK_MS);
  }

  private async catchUp(peer: Peer): Promise<void> {
    this.syncing++;
    this.emit({ kind: 'network', network: this.networkItem() });
    try {
      await peer.catchUp();
    } catch {
      // Dropped again: the next reconnect catches up.
    } finally {
      this.syncing--;
      this.emit({ kind: 'network', network: this.networkItem() });
    }
  }

  private async need(): Promise<Peer> {
    const p = await this.open();
    if (p === undefined) throw new HostError('no-identity', 'create or import an identity first');
    return p;
  }

  private onPeerEvent(e: PeerEvent): void {
    switch (e.kind) {
      case 'accepted':
        this.changed(idText(e.space), e.op);
        break;
      case 'joined':
        this.emit({ kind: 'joined', spaceId: idText(e.space) });
        break;
      case 'join-refused':
        this.emit({ kind: 'join-refused', spaceId: idText(e.space), reason: e.reason });
        break;
      case 'removed':
        this.emit({ kind: 'removed', spaceId: idText(e.space) });
        break;
      case 'admission':
        this.emit({ kind: 'admission', spaceId: idText(e.space), result: e.report.kind });
        break;
      default:
        break;
    }
  }

  /**
   * Tells the tabs that ops were accepted in a Space: at once after a quiet moment (a message
   * from someone shows without delay), else once per {@link CHANGED_EVERY_MS} for all that came
   * meanwhile, so a catch-up costs the pages one refresh per frame, not one message per op.
   */
  private changed(spaceId: string, op: string): void {
    const had = this.unsaid.get(spaceId);
    if (had === undefined || had === 'CreatePost') this.unsaid.set(spaceId, op);
    if (this.sayTimer !== undefined) return;
    const wait = Math.max(0, this.saidAt + CHANGED_EVERY_MS - performance.now());
    this.sayTimer = setTimeout(() => {
      this.sayChanges();
    }, wait);
  }

  private sayChanges(): void {
    clearTimeout(this.sayTimer);
    this.sayTimer = undefined;
    if (this.unsaid.size === 0) return;
    this.saidAt = performance.now();
    const changes = [...this.unsaid];
    this.unsaid.clear();
    for (const [spaceId, op] of changes) this.tell({ kind: 'changed', spaceId, op });
  }

  private emit(e: LiveEvent): void {
    // What was accepted in a Space is told before anything else about it.
    if (e.kind !== 'network') this.sayChanges();
    this.tell(e);
  }

  private tell(e: LiveEvent): void {
    for (const l of this.listeners.values()) {
      try {
        l(e);
      } catch {
        // A listener of a tab that went away: it unsubscribes on pagehide.
      }
    }
  }

  private networkItem(): NetworkItem {
    const s = this.peer?.network;
    return {
      relays: (s?.relays ?? []).map((r) => ({ address: r.address, status: r.status })),
      outbox: s?.outbox ?? 0,
      syncing: this.syncing > 0,
    };
  }

  private identityItem(peer: Peer): IdentityItem {
    return { userId: idText(peer.userId), deviceId: idText(peer.identity.device), name: peer.name };
  }

  /** The posts of a channel (`thread` undefined: all of it; null: a chat's top level; or one thread). */
  private index(
    space: SpaceId,
    state: SpaceState,
    channel: ChannelId,
    thread: ThreadId | null | undefined,
  ): { posts: readonly PostView[] } {
    const spaceKey = idText(space);
    let idx = this.indexes.get(spaceKey);
    if (idx === undefined || idx.state !== state || idx.size !== state.size) {
      // One pass over the Space's posts for every channel and thread at once.
      const lists = new Map<string, PostView[]>();
      const add = (k: string, p: PostView) => {
        const l = lists.get(k);
        if (l === undefined) lists.set(k, [p]);
        else l.push(p);
      };
      for (const p of state.allPosts()) {
        const ch = bytesKey(p.channel);
        add(`${ch}/*`, p);
        add(`${ch}/${p.thread === null ? '-' : bytesKey(p.thread)}`, p);
      }
      idx = { state, size: state.size, lists };
      this.indexes.set(spaceKey, idx);
    }
    const key = `${bytesKey(channel)}/${thread === undefined ? '*' : thread === null ? '-' : bytesKey(thread)}`;
    return { posts: idx.lists.get(key) ?? NO_POSTS };
  }

  private async readMarks(spaceId: string): Promise<Record<string, ReadMark>> {
    const had = this.reads.get(spaceId);
    if (had !== undefined) return had;
    const b = await (await this.store()).getMeta(READS_META + spaceId);
    const marks: Record<string, ReadMark> = {};
    if (b !== undefined) {
      const v = JSON.parse(new TextDecoder().decode(b)) as unknown;
      if (typeof v === 'object' && v !== null) {
        for (const [k, m] of Object.entries(v as Record<string, unknown>)) {
          const r = m as Partial<ReadMark> | null;
          if (typeof r?.postId === 'string' && typeof r.atMs === 'number')
            marks[k] = { postId: r.postId, atMs: r.atMs };
        }
      }
    }
    this.reads.set(spaceId, marks);
    return marks;
  }

  /** Where the unread posts start in `posts` (others' posts after the read mark), and how many. */
  private unreadIn(
    posts: readonly PostView[],
    mark: ReadMark | undefined,
    me: UserId,
  ): { first: number; count: number } {
    let start = 0;
    if (mark !== undefined) {
      const id = fromMultibase(mark.postId);
      const at = id === undefined ? -1 : posts.findIndex((p) => equalBytes(p.postId, id));
      start = at >= 0 ? at + 1 : posts.findIndex((p) => p.wallMs > mark.atMs);
      if (start < 0) start = posts.length;
    }
    let first = -1;
    let count = 0;
    for (let i = start; i < posts.length; i++) {
      const p = posts[i] as PostView;
      if (p.deleted || equalBytes(p.author, me)) continue;
      if (first < 0) first = i;
      count++;
    }
    return { first, count };
  }

  private async channelInfos(peer: Peer, space: SpaceId, spaceId: string): Promise<ChannelInfo[]> {
    const state = peer.state(space);
    const marks = await this.readMarks(spaceId);
    return channelItems(state).map((c, i) => {
      const view = state.channels()[i];
      const channel = view?.channelId as ChannelId;
      const idx = this.index(space, state, channel, c.type === 'chat' ? null : undefined);
      return { ...c, unread: this.unreadIn(idx.posts, marks[c.channelId], peer.userId).count };
    });
  }

  /**
   * Closes the peer and its connections; the next call opens it again. Restarts run one at a
   * time, after any opening in progress, and `open` waits for them, so two callers (the
   * network coming back, the app resuming) never close each other's new peer.
   */
  private restart(): Promise<void> {
    const run = this.restarting.then(async () => {
      if (this.opening !== undefined) await this.opening.catch(() => undefined);
      const peer = this.peer;
      const connector = this.connector;
      if (this.timer !== undefined) clearInterval(this.timer);
      this.timer = undefined;
      this.online = false;
      this.wasConnected = false;
      await peer?.close();
      await connector?.stop();
      if (this.peer === peer) this.peer = undefined;
    });
    this.restarting = run.catch(() => undefined);
    return run;
  }

  // ---------- ConclaveApi ----------

  hostInfo() {
    return run(() => ({ kind: this.kind, tabs: this.tabs }));
  }

  setRelays(relays: readonly string[]) {
    return run(async () => {
      const saved = await this.relays();
      if (saved.length === relays.length && saved.every((r, i) => r === relays[i])) {
        // These are the device's relays already (a page that offers the deployment's relays
        // while the peer is still opening, so it saw none): nothing to restart.
        await this.open();
        return this.networkItem();
      }
      const { isRelayAddress } = await libp2pModule();
      for (const r of relays) {
        if (!isRelayAddress(r)) throw new PeerError('invalid', `"${r}" is not a relay multiaddr`);
      }
      await (await this.store()).putMeta(RELAYS_META, new TextEncoder().encode(JSON.stringify(relays)));
      await this.restart();
      await this.open();
      return this.networkItem();
    });
  }

  setOnline(online: boolean) {
    return run(async () => {
      if (online === !this.browserOffline) return this.networkItem();
      this.browserOffline = !online;
      await this.restart();
      await this.open();
      this.emit({ kind: 'network', network: this.networkItem() });
      return this.networkItem();
    });
  }

  identity() {
    return run(async () => {
      const p = await this.open();
      return p === undefined ? null : this.identityItem(p);
    });
  }

  createIdentity(name: string) {
    return run(async () => {
      if ((await loadSecrets()) !== undefined)
        throw new HostError('identity-exists', 'this device has an identity');
      const secrets = await createSecrets({ ed25519, clock: systemClock, rng: webRng }, name);
      await saveSecrets(encodeSecrets(secrets));
      return this.identityItem(await this.need());
    });
  }

  exportBackup(passphrase: string) {
    return run(async () => {
      const payload = await loadSecrets();
      if (payload === undefined) throw new HostError('no-identity', 'no identity to export');
      if (passphrase.length < 1) throw new PeerError('invalid', 'a backup needs a passphrase');
      return sealWithPassphrase(encodeBackup(decodeSecrets(payload)), passphrase, {
        aead: backupAead,
        rng: webRng,
      });
    });
  }

  importBackup(backup: Uint8Array, passphrase: string) {
    return run(async () => {
      if ((await loadSecrets()) !== undefined)
        throw new HostError('identity-exists', 'this device has an identity');
      let payload: Uint8Array;
      try {
        payload = await openWithPassphrase(backup, passphrase, { aead: backupAead });
      } catch (e) {
        if (e instanceof SecretsError && e.code === 'wrong-passphrase')
          throw new HostError('wrong-passphrase', 'wrong passphrase, or the backup was damaged');
        throw new HostError('bad-backup', 'not a Conclave backup');
      }
      let secrets;
      try {
        secrets = await restoreBackup({ ed25519, clock: systemClock, rng: webRng }, payload);
      } catch {
        throw new HostError('bad-backup', 'not a Conclave backup');
      }
      await saveSecrets(encodeSecrets(secrets));
      return this.identityItem(await this.need());
    });
  }

  spaces() {
    return run(async () => {
      const peer = await this.need();
      const out = [];
      for (const s of peer.spaces()) {
        const spaceId = idText(s.spaceId);
        const unread = (await this.channelInfos(peer, s.spaceId, spaceId)).reduce((n, c) => n + c.unread, 0);
        out.push({ spaceId, name: s.name, role: s.role, status: s.status, unread });
      }
      return out;
    });
  }

  space(spaceId: string) {
    return run(async () => {
      const peer = await this.need();
      const id = idOf<SpaceId>(spaceId, 16, 'Space');
      const summary = peer.spaces().find((s) => equalBytes(s.spaceId, id));
      if (summary === undefined) throw new PeerError('unknown', 'no such Space on this device');
      const state = peer.state(id);
      const g = peer.group(id);
      const settings = state.settings();
      const channels = await this.channelInfos(peer, id, spaceId);
      return {
        spaceId,
        name: summary.name,
        role: summary.role,
        status: summary.status,
        unread: channels.reduce((n, c) => n + c.unread, 0),
        description: settings.description,
        epoch: g.epoch,
        memberCount: g.users.length,
        channels,
        historyVisibility: settings.historyVisibility,
      };
    });
  }

  createSpace(name: string) {
    return run(async () => {
      const r = await (await this.need()).createSpace(name);
      return { spaceId: idText(r.spaceId), status: r.status };
    });
  }

  join(link: string, waitMs: number) {
    return run(async () => {
      const parsed = parseInviteLink(link);
      if (!parsed.ok) throw new PeerError('invite', `bad invite link: ${parsed.message}`);
      const peer = await this.need();
      if ((await this.relays()).length === 0) {
        // The invite names the relays to join through; a device without any adopts them.
        await (
          await this.store()
        ).putMeta(RELAYS_META, new TextEncoder().encode(JSON.stringify(parsed.link.relays)));
        await this.restart();
        const reopened = await this.need();
        const r = await reopened.join(parsed.link, Math.min(waitMs, 120_000));
        return { spaceId: idText(r.spaceId), status: r.status };
      }
      const r = await peer.join(parsed.link, Math.min(waitMs, 120_000));
      return { spaceId: idText(r.spaceId), status: r.status };
    });
  }

  leave(spaceId: string) {
    return run(async () => {
      await (await this.need()).leave(idOf<SpaceId>(spaceId, 16, 'Space'));
      this.reads.delete(spaceId);
      this.indexes.delete(spaceId);
      this.emit({ kind: 'left', spaceId });
      return { spaceId };
    });
  }

  createInvite(
    spaceId: string,
    o: { role: 'member' | 'moderator'; expiresInMs: number; maxUses: number; webOrigin?: string },
  ) {
    return run(async () => {
      const r = await (
        await this.need()
      ).createInvite(idOf<SpaceId>(spaceId, 16, 'Space'), {
        role: o.role,
        expiresAtMs: Date.now() + o.expiresInMs,
        maxUses: o.maxUses,
        ...(o.webOrigin === undefined ? {} : { webOrigin: o.webOrigin }),
      });
      return { inviteId: idText(r.inviteId), link: r.link };
    });
  }

  createChannel(spaceId: string, name: string, type: 'chat' | 'forum') {
    return run(async () => {
      const r = await (await this.need()).createChannel(idOf<SpaceId>(spaceId, 16, 'Space'), name, type);
      return { channelId: idText(r.channelId), status: r.status };
    });
  }

  renameChannel(spaceId: string, channelId: string, name: string) {
    return run(async () => {
      const w = await (
        await this.need()
      ).renameChannel(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<ChannelId>(channelId, 16, 'channel'), name);
      return { status: w.status };
    });
  }

  timeline(spaceId: string, channelId: string, q: TimelineQuery) {
    return run(async (): Promise<TimelinePage> => {
      const peer = await this.need();
      const space = idOf<SpaceId>(spaceId, 16, 'Space');
      const state = peer.state(space);
      const channel = idOf<ChannelId>(channelId, 16, 'channel');
      const ch = state.channels().find((c) => equalBytes(c.channelId, channel));
      if (ch === undefined) throw new PeerError('unknown', 'no such channel');
      if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_WINDOW)
        throw new PeerError('invalid', `a timeline window holds 1 to ${MAX_WINDOW} posts`);
      const thread = q.threadId === undefined ? null : idOf<ThreadId>(q.threadId, 16, 'thread');
      if (thread === null && ch.type === 'forum') throw new PeerError('invalid', 'a forum is read by thread');
      const all = this.index(space, state, channel, thread).posts;
      const find = (cursor: string) => {
        const id = idOf<PostId>(cursor, 16, 'post');
        const i = all.findIndex((p) => equalBytes(p.postId, id));
        if (i < 0) throw new PeerError('unknown', 'no such post in this channel');
        return i;
      };
      // [lo, hi) over `all` (deleted posts included), holding at most `limit` shown posts.
      let lo: number;
      let hi: number;
      const takeBack = (end: number) => {
        let i = end;
        let n = 0;
        while (i > 0 && n < q.limit) if (!(all[--i] as PostView).deleted) n++;
        return i;
      };
      if (q.before !== undefined) {
        hi = find(q.before);
        lo = takeBack(hi);
      } else if (q.after !== undefined) {
        lo = find(q.after) + 1;
        hi = lo;
        for (let n = 0; hi < all.length && n < q.limit; hi++) if (!(all[hi] as PostView).deleted) n++;
      } else if (q.from !== undefined) {
        hi = all.length;
        lo = Math.max(find(q.from), takeBack(hi));
      } else {
        hi = all.length;
        lo = takeBack(hi);
      }
      let olderAt = -1;
      for (let i = lo - 1; i >= 0; i--)
        if (!(all[i] as PostView).deleted) {
          olderAt = i;
          break;
        }
      const window = all.slice(lo, hi).filter((p) => !p.deleted);
      const items = postItems(state, window, channel);
      const byId = new Map(items.map((p) => [p.postId, p]));
      const posts = items.map((p): TimelineItem => {
        if (p.replyTo === null) return { ...p, quote: null };
        const shown = byId.get(p.replyTo);
        if (shown !== undefined) return { ...p, quote: { authorName: shown.authorName, text: shown.text } };
        const parent = state.post(idOf<PostId>(p.replyTo, 16, 'post'));
        return {
          ...p,
          quote:
            parent === undefined
              ? null
              : { authorName: nameIn(state, parent.author), text: parent.deleted ? '' : parent.text },
        };
      });
      const marks = await this.readMarks(spaceId);
      const whole = thread === null ? all : this.index(space, state, channel, undefined).posts;
      const unread = this.unreadIn(whole, marks[channelId], peer.userId);
      const firstUnread = unread.first < 0 ? null : (whole[unread.first] as PostView);
      return {
        posts,
        older: olderAt < 0 || window.length === 0 ? null : (posts[0]?.postId ?? null),
        total: all.reduce((n, p) => (p.deleted ? n : n + 1), 0),
        firstUnread: firstUnread === null ? null : idText(firstUnread.postId),
        unread: unread.count,
      };
    });
  }

  markRead(spaceId: string, channelId: string, postId: string) {
    return run(async () => {
      const peer = await this.need();
      const space = idOf<SpaceId>(spaceId, 16, 'Space');
      const state = peer.state(space);
      const channel = idOf<ChannelId>(channelId, 16, 'channel');
      const ch = state.channels().find((c) => equalBytes(c.channelId, channel));
      if (ch === undefined) throw new PeerError('unknown', 'no such channel');
      const all = this.index(space, state, channel, ch.type === 'chat' ? null : undefined).posts;
      const id = idOf<PostId>(postId, 16, 'post');
      const at = all.findIndex((p) => equalBytes(p.postId, id));
      const post = all[at];
      if (post === undefined) throw new PeerError('unknown', 'no such post in this channel');
      const marks = await this.readMarks(spaceId);
      const had = marks[channelId];
      const hadAt = had === undefined ? -1 : all.findIndex((p) => idText(p.postId) === had.postId);
      if (hadAt < at) {
        marks[channelId] = { postId, atMs: post.wallMs };
        await (
          await this.store()
        ).putMeta(READS_META + spaceId, new TextEncoder().encode(JSON.stringify(marks)));
        this.emit({ kind: 'read', spaceId });
      }
      return { unread: this.unreadIn(all, marks[channelId], peer.userId).count };
    });
  }

  posts(spaceId: string, channelId: string, threadId?: string) {
    return run(async () => {
      const state = (await this.need()).state(idOf<SpaceId>(spaceId, 16, 'Space'));
      const channel = idOf<ChannelId>(channelId, 16, 'channel');
      const ch = state.channels().find((c) => equalBytes(c.channelId, channel));
      if (ch === undefined) throw new PeerError('unknown', 'no such channel');
      const thread =
        threadId === undefined
          ? ch.type === 'chat'
            ? null
            : undefined
          : idOf<ThreadId>(threadId, 16, 'thread');
      return postItems(state, state.postsIn(channel, thread), channel);
    });
  }

  threads(spaceId: string, channelId: string) {
    return run(async () => {
      const state = (await this.need()).state(idOf<SpaceId>(spaceId, 16, 'Space'));
      const channel = idOf<ChannelId>(channelId, 16, 'channel');
      return state.threadsIn(channel).map((t): ThreadItem => {
        const posts = state.postsIn(channel, t.threadId);
        const last = posts.at(-1);
        return {
          threadId: idText(t.threadId),
          // A thread started before this user joined a Space that hides its history.
          title: t.locked ? 'Started before you joined' : t.title,
          author: idText(t.author),
          authorName: nameIn(state, t.author),
          at: timeText(t.wallMs),
          replies: Math.max(0, posts.length - 1),
          lastActivity: timeText(last?.wallMs ?? t.wallMs),
        };
      });
    });
  }

  post(
    spaceId: string,
    channelId: string,
    text: string,
    o: {
      title?: string;
      threadId?: string;
      replyTo?: string;
      files?: readonly { bytes: Uint8Array; name: string; mime: string }[];
      sendId?: string;
    } = {},
  ) {
    return run(async () => {
      const peer = await this.need();
      const space = idOf<SpaceId>(spaceId, 16, 'Space');
      // The post id follows from the page's send id, so the same send made twice posts once.
      const postId =
        o.sendId === undefined
          ? undefined
          : (sha256(new TextEncoder().encode(`conclave/send/${o.sendId}`)).slice(0, 16) as PostId);
      const made = postId === undefined ? undefined : peer.state(space).post(postId);
      if (made !== undefined)
        return {
          postId: idText(made.postId),
          threadId: made.thread === null ? null : idText(made.thread),
          status: 'queued' as const,
        };
      const r = await peer.post(space, idOf<ChannelId>(channelId, 16, 'channel'), text, {
        ...(o.title === undefined ? {} : { title: o.title }),
        ...(o.threadId === undefined ? {} : { thread: idOf<ThreadId>(o.threadId, 16, 'thread') }),
        ...(o.replyTo === undefined ? {} : { reply: idOf<PostId>(o.replyTo, 16, 'post') }),
        ...(o.files === undefined ? {} : { files: o.files }),
        ...(postId === undefined ? {} : { postId }),
      });
      return {
        postId: idText(r.postId),
        threadId: r.threadId === null ? null : idText(r.threadId),
        status: r.status,
      };
    });
  }

  editPost(spaceId: string, postId: string, text: string) {
    return run(async () => {
      const w = await (
        await this.need()
      ).editPost(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<PostId>(postId, 16, 'post'), text);
      return { status: w.status };
    });
  }

  deletePost(spaceId: string, postId: string) {
    return run(async () => {
      const w = await (
        await this.need()
      ).deletePost(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<PostId>(postId, 16, 'post'));
      return { status: w.status };
    });
  }

  attachment(spaceId: string, blobId: string) {
    return run(async () => {
      const r = await (
        await this.need()
      ).attachment(idOf<SpaceId>(spaceId, 16, 'Space'), idOf(blobId, 32, 'attachment'));
      return { name: r.ref.name, mime: r.ref.mime, bytes: r.bytes };
    });
  }

  members(spaceId: string) {
    return run(async () => memberItems((await this.need()).members(idOf<SpaceId>(spaceId, 16, 'Space'))));
  }

  kick(spaceId: string, userId: string) {
    return run(async () =>
      (await this.need()).remove(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<UserId>(userId, 32, 'user'), {
        ban: false,
      }),
    );
  }

  ban(spaceId: string, userId: string) {
    return run(async () =>
      (await this.need()).remove(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<UserId>(userId, 32, 'user'), {
        ban: true,
      }),
    );
  }

  mute(spaceId: string, userId: string, forMs: number | null) {
    return run(async () => {
      const w = await (
        await this.need()
      ).mute(
        idOf<SpaceId>(spaceId, 16, 'Space'),
        idOf<UserId>(userId, 32, 'user'),
        forMs === null ? null : Date.now() + forMs,
      );
      return { status: w.status };
    });
  }

  unmute(spaceId: string, userId: string) {
    return run(async () => {
      const w = await (
        await this.need()
      ).unmute(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<UserId>(userId, 32, 'user'));
      return { status: w.status };
    });
  }

  audit(spaceId: string) {
    return run(async () => {
      const peer = await this.need();
      const space = idOf<SpaceId>(spaceId, 16, 'Space');
      const state = peer.state(space);
      return (await peer.audit(space)).entries.map((e) => ({
        kind: e.kind,
        actor: idText(e.author),
        actorName: nameIn(state, e.author),
        target: e.target === null ? null : idText(e.target),
        reason: e.reason,
        opId: idText(e.opId),
        epoch: e.epoch.epoch,
        at: timeText(e.wallMs),
        signatureValid: e.signatureValid,
      }));
    });
  }

  network() {
    return run(() => this.networkItem());
  }

  sync() {
    return run(async () => {
      const r = await (await this.need()).sync(0);
      return {
        accepted: r.accepted,
        rejected: r.rejected,
        admitted: r.admitted,
        outboxLeft: r.outboxLeft,
        joined: r.joined.map(idText),
      };
    });
  }

  subscribe(listener: (event: LiveEvent) => void): Promise<number> {
    const id = this.nextListener++;
    this.listeners.set(id, listener);
    return Promise.resolve(id);
  }

  unsubscribe(id: number): Promise<void> {
    this.listeners.delete(id);
    return Promise.resolve();
  }

  // ---------- the app's lifecycle (web/src/lifecycle.ts) ----------

  /** The posts held when the app went away: what `resume` compares against. */
  private awayFrom: Set<string> | undefined;

  suspend() {
    return run(async () => {
      const peer = this.peer;
      if (peer === undefined) return { outboxLeft: 0 };
      this.awayFrom ??= postKeys(peer);
      // Alongside the outbox: the app may be killed once hidden, and a saved state spares the
      // next start applying what arrived since the last checkpoint.
      const saved = peer.saveCheckpoints();
      const outboxLeft = peer.isOnline() ? await peer.pool.flush() : peer.network.outbox;
      await saved;
      return { outboxLeft };
    });
  }

  resume(browserOnline: boolean) {
    return run(async () => {
      // Back online: the page's own `setOnline(true)` for this event may come after this call.
      if (browserOnline && this.browserOffline) await this.setOnline(true);
      const peer = await this.open();
      // The browser is offline: nothing to reach; `setOnline(true)` starts over when it is back.
      if (peer === undefined || !browserOnline || this.browserOffline || (await this.relays()).length === 0)
        return { online: false, accepted: 0, outboxLeft: peer?.network.outbox ?? 0, notices: [] };
      const before = this.awayFrom ?? postKeys(peer);
      this.awayFrom = undefined;
      if (!peer.isOnline()) {
        // No link survived the time away, and the pool's reconnect timers may have backed off
        // to 30 s meanwhile: dial every relay now (a dial under way is left to finish). The
        // peer and its Spaces stay open: nothing is read again from storage.
        await peer.pool.reconnectNow();
        await whenConnected(peer, RESUME_DIAL_MS);
      }
      const online = await peer.catchUp();
      if (online) await settled(peer);
      const outboxLeft = online ? await peer.pool.flush() : peer.network.outbox;
      const { arrived, names } = arrivedSince(peer, before);
      return {
        online,
        accepted: arrived.length,
        outboxLeft,
        notices: notable(arrived, { userId: idText(peer.userId), names }),
      };
    });
  }
}
