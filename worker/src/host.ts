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
import { isRelayAddress, lazyLibp2pConnector } from '../../shared/src/net/libp2p.js';
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
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { fromMultibase } from '../../shared/src/protocol/multibase.js';
import type {
  ApiError,
  ConclaveApi,
  ErrorCode,
  IdentityItem,
  LiveEvent,
  NetworkItem,
  Result,
  ThreadItem,
} from './api.js';
import { loadSecrets, saveSecrets } from './keystore.js';
import { notable } from './notify.js';
import { arrivedSince, postKeys } from './resume.js';

const DB_NAME = 'conclave';
const RELAYS_META = 'host/relays';
/** Bytes of attachments the device keeps cached. */
const BLOB_CACHE_BYTES = 128 * 1024 * 1024;
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
      unsupported: 'unsupported',
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
    if (this.peer !== undefined) return this.peer;
    this.opening ??= (async () => {
      const payload = await loadSecrets();
      if (payload === undefined) return undefined;
      const secrets = decodeSecrets(payload);
      const storage = await this.store();
      this.blobs ??= await openBlobCache(await idbChunkStore(`${DB_NAME}-blobs`), {
        quotaBytes: BLOB_CACHE_BYTES,
      });
      this.connector = lazyLibp2pConnector({ dialTimeoutMs: 10_000 });
      const relays = await this.relays();
      const peer = await Peer.open({
        secrets,
        storage,
        connector: this.connector,
        relays,
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
        this.emit({ kind: 'network', network: this.networkItem() });
      });
      if (relays.length > 0) void this.goOnline(peer);
      return peer;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async goOnline(peer: Peer): Promise<void> {
    try {
      await peer.goOnline();
      await peer.catchUp();
      peer.watchInvites();
    } catch {
      // Offline for now: the pool keeps trying, and the next round does the rest.
    }
    this.timer ??= setInterval(() => {
      void peer.serveTick().catch(() => undefined);
    }, TICK_MS);
  }

  private async need(): Promise<Peer> {
    const p = await this.open();
    if (p === undefined) throw new HostError('no-identity', 'create or import an identity first');
    return p;
  }

  private onPeerEvent(e: PeerEvent): void {
    switch (e.kind) {
      case 'accepted':
        this.emit({ kind: 'changed', spaceId: idText(e.space) });
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

  private emit(e: LiveEvent): void {
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
    };
  }

  private identityItem(peer: Peer): IdentityItem {
    return { userId: idText(peer.userId), deviceId: idText(peer.identity.device), name: peer.name };
  }

  private async restart(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.peer?.close();
    await this.connector?.stop();
    this.peer = undefined;
  }

  // ---------- ConclaveApi ----------

  hostInfo() {
    return run(() => ({ kind: this.kind, tabs: this.tabs }));
  }

  setRelays(relays: readonly string[]) {
    return run(async () => {
      for (const r of relays) {
        if (!isRelayAddress(r)) throw new PeerError('invalid', `"${r}" is not a relay multiaddr`);
      }
      await (await this.store()).putMeta(RELAYS_META, new TextEncoder().encode(JSON.stringify(relays)));
      await this.restart();
      await this.open();
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
    return run(async () =>
      (await this.need())
        .spaces()
        .map((s) => ({ spaceId: idText(s.spaceId), name: s.name, role: s.role, status: s.status })),
    );
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
      return {
        spaceId,
        name: summary.name,
        role: summary.role,
        status: summary.status,
        description: settings.description,
        epoch: g.epoch,
        memberCount: g.users.length,
        channels: channelItems(state),
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
          title: t.title,
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
    } = {},
  ) {
    return run(async () => {
      const r = await (
        await this.need()
      ).post(idOf<SpaceId>(spaceId, 16, 'Space'), idOf<ChannelId>(channelId, 16, 'channel'), text, {
        ...(o.title === undefined ? {} : { title: o.title }),
        ...(o.threadId === undefined ? {} : { thread: idOf<ThreadId>(o.threadId, 16, 'thread') }),
        ...(o.replyTo === undefined ? {} : { reply: idOf<PostId>(o.replyTo, 16, 'post') }),
        ...(o.files === undefined ? {} : { files: o.files }),
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
      return { outboxLeft: peer.isOnline() ? await peer.pool.flush() : peer.network.outbox };
    });
  }

  resume() {
    return run(async () => {
      let peer = await this.open();
      if (peer === undefined || (await this.relays()).length === 0)
        return { online: false, accepted: 0, outboxLeft: 0, notices: [] };
      const before = this.awayFrom ?? postKeys(peer);
      this.awayFrom = undefined;
      if (!peer.isOnline()) {
        // No link survived the time away, and the pool's reconnect timers may have backed off
        // to 30 s meanwhile: start the peer over, which dials every relay now.
        await this.restart();
        peer = await this.need();
      }
      const online = await peer.catchUp();
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
