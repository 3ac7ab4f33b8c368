/**
 * The relay process's core: libp2p (WebSockets, noise, yamux, identify, ping, circuit-relay-v2
 * server, kad-dht server, gossipsub backbone), the three Conclave protocols over the durable
 * store, replication to the relays closest to each key, and the HTTP health and metrics
 * endpoints (ARCHITECTURE.md sections 8 to 10).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { serveWeb } from './web.js';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import process from 'node:process';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { circuitRelayServer } from '@libp2p/circuit-relay-v2';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import {
  gossipsub,
  StrictNoSign,
  StrictSign,
  TopicValidatorResult,
  type GossipSubEvents,
} from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface';
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht';
import { peerIdFromString } from '@libp2p/peer-id';
import { ping } from '@libp2p/ping';
import { webSockets } from '@libp2p/websockets';
import { createLibp2p } from 'libp2p';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';
import type { Logger } from 'pino';
import { RelaySession } from '../../shared/src/net/session.js';
import { type CborValue, decode, encode } from '../../shared/src/protocol/cbor.js';
import { bytesKey, compareBytes, toHex } from '../../shared/src/protocol/ids.js';
import {
  MAX_FRAME_BYTES,
  MAX_MAILBOX_MESSAGE_BYTES,
  MAX_PENDING_REQUESTS,
} from '../../shared/src/protocol/limits.js';
import { envelopeProblem } from './envelope.js';
import { BLOB_PROTOCOL, MAILBOX_PROTOCOL, SYNC_PROTOCOL } from '../../shared/src/protocol/wire.js';
import { sha256 } from '../../shared/src/crypto/sha256.js';
import { nodeSha256 } from '../../shared/src/crypto/sha256.node.js';
import { loadNodeNoiseCrypto } from '../../shared/src/net/noise-crypto.node.js';
import type { RelayConfig } from './config.js';
import { libp2pLogger } from './libp2p-logger.js';
import { PeerLimiter } from './limiter.js';
import { startLiveness } from './liveness.js';
import { relayMetrics } from './relay-metrics.js';
import { Hub, ServerSession, type ServiceContext } from './service.js';
import { RelayStore } from './store.js';

/** The kad-dht protocol of Conclave relays: a network of its own, apart from the public IPFS DHT. */
export const DHT_PROTOCOL = '/conclave/kad/1.0.0';
/** Backbone gossip topics: one per mailbox address. */
export const BACKBONE_PREFIX = '/conclave/backbone/1/';
/** Milliseconds between two pulls of one address from the relays that provide it. */
const PULL_INTERVAL_MS = 10_000;
/** Milliseconds a liveness ping may take before its connection is closed (at most the period). */
const PING_TIMEOUT_MS = 10_000;
/** Copies to one replica relay awaiting its answer at once (half the replica's limit per session). */
const REPLICATION_IN_FLIGHT = MAX_PENDING_REQUESTS / 2;
/** Copies to one replica relay waiting for a slot, at most (about 8 MiB of 1 KiB ops). */
const REPLICATION_WAITING = 8192;
/** Milliseconds a DHT query may take before replication or a pull gives up on it. */
const DHT_QUERY_MS = 5_000;
/** Messages per page when a relay pulls a mailbox from another. */
const PULL_PAGE = 512;
/** Open streams per connection for each Conclave protocol (one session each is normal). */
const STREAMS_PER_PROTOCOL = 8;
/** Milliseconds between attempts to reach a lost relay or a bootstrap relay, at most. */
const RELAY_REDIAL_MAX_MS = 30_000;
/** Milliseconds after which a relay that stays unreachable is no longer dialled. */
const RELAY_FORGET_MS = 60 * 60_000;

export interface Relay {
  readonly peerId: string;
  readonly multiaddrs: string[];
  /** `http://host:port` of the health and metrics server, if configured. */
  readonly httpUrl: string | undefined;
  readonly node: Libp2p;
  readonly store: RelayStore;
  /** Pulls `address` from the relays that provide it now (used on subscribe; exposed for tests). */
  pull(address: Uint8Array): Promise<number>;
  stop(): Promise<void>;
}

/** The relay's identity key, created on first start and kept in the data folder (mode 0600). */
async function loadIdentity(dir: string): Promise<PrivateKey> {
  const path = join(dir, 'identity.key');
  try {
    return privateKeyFromProtobuf(readFileSync(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const key = await generateKeyPair('Ed25519');
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, privateKeyToProtobuf(key), { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
  return key;
}

/** The DHT key of an address or blob hash: a CID over its 32 bytes as a SHA-256 multihash. */
export function keyCid(hash: Uint8Array): CID {
  return CID.createV1(0x55, Digest.create(0x12, hash));
}

/** Kademlia distance of a peer to a key: XOR of SHA-256(peer id bytes) and SHA-256(key). */
function distance(peer: PeerId, key: Uint8Array): Uint8Array {
  const a = sha256(peer.toMultihash().bytes);
  const b = sha256(key);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

/**
 * Whether a new message of a topic must go out on the backbone: true when a peer that follows the
 * topic there (`subscribers`) is neither one of its `replicas` (each gets a direct copy from the
 * relay that took the client's append) nor `sender`, the relay that sent this copy, if any.
 */
export function gossipNeededFor(
  subscribers: readonly PeerId[],
  replicas: readonly PeerId[],
  sender: string | undefined,
): boolean {
  return subscribers.some((p) => p.toString() !== sender && !replicas.some((r) => r.equals(p)));
}

/** The `k` of `peers` closest to `key` by Kademlia distance, closest first: a key's replica set. */
export function closestPeers(peers: readonly PeerId[], key: Uint8Array, k: number): PeerId[] {
  return peers
    .map((p) => ({ p, d: distance(p, key) }))
    .sort((a, b) => compareBytes(a.d, b.d))
    .slice(0, k)
    .map((x) => x.p);
}

/**
 * Relay announcement records in the DHT: key `/conclave/<peer id>`, value CBOR
 * `[peerId, [multiaddr…], timeMs, signature]`, signed by the relay's key over the first three.
 */
const RECORD_LIMITS = { maxBytes: 4096, maxArrayLength: 32, maxStringBytes: 1024, maxDepth: 2 };

export function announcementBody(peer: string, addrs: readonly string[], timeMs: number): Uint8Array {
  return encode([peer, [...addrs], timeMs]);
}

export async function validateAnnouncement(key: Uint8Array, value: Uint8Array): Promise<void> {
  const v = decode(value, RECORD_LIMITS);
  if (!Array.isArray(v) || v.length !== 4) throw new Error('announcement: expected 4 fields');
  const [peer, addrs, timeMs, sig] = v as readonly CborValue[];
  if (
    typeof peer !== 'string' ||
    !Array.isArray(addrs) ||
    typeof timeMs !== 'number' ||
    !(sig instanceof Uint8Array)
  ) {
    throw new Error('announcement: bad fields');
  }
  if (new TextDecoder().decode(key) !== `/conclave/${peer}`)
    throw new Error('announcement: key does not name its peer');
  const list = (addrs as readonly CborValue[]).map((a) => {
    if (typeof a !== 'string') throw new Error('announcement: address');
    return a;
  });
  const pub = peerIdFromString(peer).publicKey;
  if (pub === undefined || !(await pub.verify(announcementBody(peer, list, timeMs), sig))) {
    throw new Error('announcement: bad signature');
  }
}

export function selectAnnouncement(_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0;
  let bestTime = -1;
  records.forEach((r, i) => {
    try {
      const v = decode(r, RECORD_LIMITS);
      const t = Array.isArray(v) ? (v as readonly CborValue[])[2] : undefined;
      if (typeof t === 'number' && t > bestTime) {
        bestTime = t;
        best = i;
      }
    } catch {
      // An undecodable record never wins.
    }
  });
  return best;
}

/** A backbone message: `[address, message, commitEpoch | null]`, checked before it is accepted. */
const GOSSIP_LIMITS = {
  maxBytes: MAX_MAILBOX_MESSAGE_BYTES + 64,
  maxArrayLength: 3,
  maxStringBytes: MAX_MAILBOX_MESSAGE_BYTES,
  maxDepth: 1,
};

export type GossipCheck =
  | { ok: true; address: Uint8Array; message: Uint8Array; commitEpoch: number | undefined }
  | { ok: false; reason: string };

/** Validates a backbone gossip message received on `topic`. */
export function checkGossip(topic: string, data: Uint8Array): GossipCheck {
  let v: CborValue;
  try {
    v = decode(data, GOSSIP_LIMITS);
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : 'undecodable' };
  }
  if (!Array.isArray(v) || v.length !== 3) return { ok: false, reason: 'expected [address, message, epoch]' };
  const [address, message, epoch] = v as readonly CborValue[];
  if (!(address instanceof Uint8Array) || address.length !== 32) return { ok: false, reason: 'address' };
  if (!(message instanceof Uint8Array) || message.length === 0) return { ok: false, reason: 'message' };
  if (epoch !== null && (typeof epoch !== 'number' || epoch < 0)) return { ok: false, reason: 'epoch' };
  if (topic !== BACKBONE_PREFIX + toHex(address))
    return { ok: false, reason: 'address does not match the topic' };
  const problem = envelopeProblem(address, message);
  if (problem !== undefined) return { ok: false, reason: problem };
  return { ok: true, address, message, commitEpoch: epoch ?? undefined };
}

export async function startRelay(config: RelayConfig, log: Logger): Promise<Relay> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const privateKey = await loadIdentity(config.dataDir);
  const store = RelayStore.open(join(config.dataDir, 'store'), {
    retentionMs: config.retentionMs,
    maxMailboxBytes: config.maxMailboxBytes,
    maxBlobBytesPerOwner: config.blobQuotaPerPeer,
    maxBlobStoreBytes: config.blobStoreBytes,
  });
  const limiter = new PeerLimiter(config.rateRequestsPerSec, config.rateBytesPerSec);
  const metrics = relayMetrics();

  const node = await createLibp2p({
    ...libp2pLogger(process.env),
    privateKey,
    addresses: { listen: [...config.listen] },
    transports: [webSockets()],
    connectionEncrypters: [noise({ crypto: await loadNodeNoiseCrypto() })],
    streamMuxers: [yamux()],
    connectionGater: {
      denyInboundEncryptedConnection: (peer: PeerId) => limiter.isPenalised(peer.toString()),
    },
    // libp2p's monitor pings every connection at once; the relay paces its own (liveness.ts).
    connectionMonitor: { enabled: false },
    connectionManager: {
      maxConnections: config.maxConnections,
      // Hundreds of clients may share one IP (a NAT, a reverse proxy, a test machine).
      inboundConnectionThreshold: Math.max(100, config.maxConnections),
      maxIncomingPendingConnections: 1024,
    },
    services: {
      identify: identify(),
      ping: ping(),
      relay: circuitRelayServer({
        reservations: {
          maxReservations: config.maxReservations,
          defaultDurationLimit: 2 * 60_000,
          defaultDataLimit: BigInt(1 << 17),
        },
      }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        validators: { conclave: validateAnnouncement },
        selectors: { conclave: selectAnnouncement },
        allowQueryWithZeroPeers: true,
      }),
      pubsub: gossipsub({
        ...(config.backboneSigning === 'none'
          ? {
              globalSignaturePolicy: StrictNoSign,
              // Node's native SHA-256: each backbone message is hashed for its id on both ends,
              // once (a second "fast" id would hash every received message again, for a cache
              // that only skips decoding a duplicate's protobuf).
              msgIdFn: (msg) => nodeSha256(msg.data),
            }
          : { globalSignaturePolicy: StrictSign }),
        D: 6,
        Dlo: 4,
        Dhi: 12,
        floodPublish: false,
        // IDONTWANT (a frame to every other mesh relay for each message received) only for large
        // messages: for a 1 KiB op it costs about what the duplicate it may spare costs, and
        // gossipsub builds and encodes it even when no mesh relay is left to tell (measured: 4.9 %
        // of a relay's samples at 250 ops/s with two relays, where there never is one).
        idontwantMinDataSize: 64 * 1024,
        allowPublishToZeroTopicPeers: true,
        ignoreDuplicatePublishError: true,
        maxInboundDataLength: MAX_FRAME_BYTES,
        seenTTL: 5 * 60_000,
        scoreParams: { IPColocationFactorWeight: 0 },
      }),
    },
  });

  const dht: KadDHT = node.services.dht;
  const pubsub = node.services.pubsub;
  const hub = new Hub(store);
  const self = node.peerId;
  let stopping = false;

  // Other relays, known by the DHT protocol they announce at identify: kept as a set so an
  // append costs no peer-store lookups, and the replica set of a key is cached until it changes.
  const relays = new Map<string, PeerId>();
  const closestCache = new Map<string, PeerId[]>();
  // Whether a topic needs gossip (see `gossipNeeded`), by topic and sending relay: cleared when
  // the relays or a peer's subscriptions change. A subscriber that left without unsubscribing
  // can only leave a stale "needed", which costs one gossip message, never a missed relay.
  const gossipNeededCache = new Map<string, boolean>();
  node.addEventListener('peer:identify', (evt) => {
    const { peerId, protocols } = evt.detail;
    if (protocols.includes(DHT_PROTOCOL) && !relays.has(peerId.toString())) {
      relays.set(peerId.toString(), peerId);
      closestCache.clear();
      gossipNeededCache.clear();
    }
  });
  // Relays this one lost its connection to (one restarted, the network broke): dialled again
  // with backoff, so the backbone and the replica sets re-form without an operator.
  const lost = new Map<string, { peer: PeerId; since: number; attempt: number; next: number }>();
  node.addEventListener('peer:disconnect', (evt) => {
    const k = evt.detail.toString();
    if (relays.delete(k)) {
      closestCache.clear();
      gossipNeededCache.clear();
      if (!stopping) lost.set(k, { peer: evt.detail, since: Date.now(), attempt: 0, next: Date.now() + 500 });
    }
  });
  node.addEventListener('peer:connect', (evt) => {
    lost.delete(evt.detail.toString());
  });
  const isRelay = (peer: string): boolean => relays.has(peer);
  /** The `replicas` relays closest to `key`, this one included when it is among them. */
  const closest = (key: Uint8Array): PeerId[] => {
    const k = bytesKey(key);
    let hit = closestCache.get(k);
    if (hit === undefined) {
      hit = closestPeers([self, ...relays.values()], key, config.replicas);
      if (closestCache.size >= 10_000) closestCache.clear();
      closestCache.set(k, hit);
    }
    return hit;
  };

  const sessions = new Map<string, RelaySession>();
  const sessionTo = (peer: PeerId): RelaySession => {
    const k = peer.toString();
    let s = sessions.get(k);
    if (s === undefined || !s.open) {
      s = new RelaySession(
        k,
        (protocol) => node.dialProtocol(peer, protocol),
        { requestTimeoutMs: 10_000 },
        () => {
          if (sessions.get(k) === s) sessions.delete(k);
        },
      );
      sessions.set(k, s);
    }
    return s;
  };

  const provided = new Set<string>();
  const provide = (key: Uint8Array): void => {
    const k = bytesKey(key);
    if (provided.has(k)) return;
    provided.add(k);
    void (async () => {
      try {
        for await (const _ of dht.provide(keyCid(key), { signal: AbortSignal.timeout(DHT_QUERY_MS) })) {
          // Drain the query's progress events.
        }
      } catch (e) {
        provided.delete(k);
        log.debug({ err: e instanceof Error ? e.message : String(e) }, 'provide failed');
      }
    })();
  };
  const providers = async (key: Uint8Array): Promise<PeerId[]> => {
    const out: PeerId[] = [];
    try {
      for await (const ev of dht.findProviders(keyCid(key), { signal: AbortSignal.timeout(DHT_QUERY_MS) })) {
        if (ev.name === 'PROVIDER') for (const p of ev.providers) if (!p.id.equals(self)) out.push(p.id);
      }
    } catch {
      // A timeout ends the search with what was found.
    }
    return out;
  };

  /** Backbone topics followed, by address key. */
  const topics = new Map<string, string>();
  /** Follows `address` on the backbone (once) and returns its topic. */
  const follow = (address: Uint8Array): string => {
    const key = bytesKey(address);
    const known = topics.get(key);
    if (known !== undefined) return known;
    const topic = BACKBONE_PREFIX + toHex(address);
    topics.set(key, topic);
    pubsub.topicValidators.set(topic, (peer, msg) => {
      // Gossip costs a store write like an append: from a peer that is not a relay, it counts
      // against the sender's rate (relays forward everyone's appends).
      const from = peer.toString();
      if (!isRelay(from) && limiter.admit(from, msg.data.length) === 'rate-limited') {
        metrics.gossip.inc({ outcome: 'rate-limited' });
        return TopicValidatorResult.Ignore;
      }
      const c = checkGossip(msg.topic, msg.data);
      if (c.ok) return TopicValidatorResult.Accept;
      metrics.gossip.inc({ outcome: 'rejected' });
      log.info({ peer: peer.toString(), reason: c.reason }, 'rejected a backbone message');
      if (limiter.malformed(peer.toString())) penalise(peer.toString());
      return TopicValidatorResult.Reject;
    });
    pubsub.subscribe(topic);
    return topic;
  };

  /** Stores a message that came from another relay: no soft-sequencing refusal, no re-copy. */
  const storeReplica = async (
    address: Uint8Array,
    message: Uint8Array,
    commitEpoch?: number,
  ): Promise<boolean> => {
    let out = await store.append(address, message, commitEpoch === undefined ? {} : { commitEpoch });
    if (out.kind === 'refused') out = await store.append(address, message);
    // The hub heard of a new message from the store's commit.
    return out.kind === 'appended' && !out.duplicate;
  };

  pubsub.addEventListener('message', (evt: GossipSubEvents['message']) => {
    const msg = evt.detail;
    if (!msg.topic.startsWith(BACKBONE_PREFIX)) return;
    const c = checkGossip(msg.topic, msg.data);
    if (!c.ok) return;
    void storeReplica(c.address, c.message, c.commitEpoch).then(
      (fresh) => {
        metrics.gossip.inc({ outcome: fresh ? 'accepted' : 'duplicate', topic: msg.topic.slice(-64, -52) });
        if (fresh) metrics.appends.inc({ kind: 'gossip' });
      },
      (e: unknown) => {
        log.error({ err: e instanceof Error ? e.message : String(e) }, 'storing gossip failed');
      },
    );
  });

  // Copies to one replica relay: at most REPLICATION_IN_FLIGHT unanswered (the replica refuses
  // more than MAX_PENDING_REQUESTS of one session), the rest wait in order, up to
  // REPLICATION_WAITING; past that a copy is dropped (counted as failed): the replica then gets
  // the message when one of its clients subscribes to the address and it pulls.
  const copyQueues = new Map<string, { inFlight: number; waiting: (() => void)[] }>();
  const copySlot = async (peer: string): Promise<boolean> => {
    let q = copyQueues.get(peer);
    if (q === undefined) copyQueues.set(peer, (q = { inFlight: 0, waiting: [] }));
    if (q.inFlight < REPLICATION_IN_FLIGHT) {
      q.inFlight++;
      return true;
    }
    if (q.waiting.length >= REPLICATION_WAITING) return false;
    const queue = q;
    // The slot is handed over by `copyDone`, without going through `inFlight`.
    await new Promise<void>((resolve) => queue.waiting.push(resolve));
    return true;
  };
  const copyDone = (peer: string): void => {
    const q = copyQueues.get(peer);
    if (q === undefined) return;
    const next = q.waiting.shift();
    if (next !== undefined) next();
    else if (--q.inFlight === 0) copyQueues.delete(peer);
  };

  const replicate = async (
    address: Uint8Array,
    message: Uint8Array,
    commitEpoch: number | undefined,
    reached: readonly PeerId[],
  ): Promise<void> => {
    for (const peer of closest(address)) {
      if (peer.equals(self) || reached.some((p) => p.equals(peer))) continue;
      const key = peer.toString();
      if (!(await copySlot(key))) {
        metrics.replications.inc({ outcome: 'failed' });
        log.debug({ peer: key }, 'replication queue full: copy dropped');
        continue;
      }
      try {
        // The mailbox session's `append` carries no replicate flag; replication frames go raw.
        await sessionTo(peer).replicate(address, message, commitEpoch);
        metrics.replications.inc({ outcome: 'ok' });
      } catch (e) {
        metrics.replications.inc({ outcome: 'failed' });
        log.debug({ peer: key, err: e instanceof Error ? e.message : String(e) }, 'replication failed');
      } finally {
        copyDone(key);
      }
    }
  };

  /**
   * Whether a peer other than the sending relay `from` and the replicas of `address` follows its
   * topic on the backbone as far as this relay knows: only then is gossip needed, as every
   * replica gets a direct copy (from the relay that took the client's append).
   */
  const gossipNeeded = (address: Uint8Array, topic: string, from: string): boolean => {
    // Only a sending relay is left out: the appends of all clients share one entry per topic (a
    // client that also follows the topic on the backbone then gets its own message back).
    const exclude = isRelay(from) ? from : undefined;
    const key = exclude === undefined ? topic : `${topic} ${exclude}`;
    let needed = gossipNeededCache.get(key);
    if (needed === undefined) {
      needed = gossipNeededFor(pubsub.getSubscribers(topic), closest(address), exclude);
      if (gossipNeededCache.size >= 10_000) gossipNeededCache.clear();
      gossipNeededCache.set(key, needed);
    }
    return needed;
  };
  pubsub.addEventListener('subscription-change', () => {
    gossipNeededCache.clear();
  });

  const lastPull = new Map<string, number>();
  const pullCursors = new Map<string, number>();
  const pull = async (address: Uint8Array): Promise<number> => {
    let pulled = 0;
    const sources = new Map<string, PeerId>();
    for (const p of [...closest(address), ...(await providers(address))]) {
      if (!p.equals(self)) sources.set(p.toString(), p);
    }
    for (const [id, peer] of sources) {
      const cursorKey = `${id}/${bytesKey(address)}`;
      try {
        const s = sessionTo(peer);
        for (let page = 0; page < 10_000; page++) {
          const after = pullCursors.get(cursorKey) ?? 0;
          const got = await s.read(address, after, PULL_PAGE);
          // A page is stored in one group commit (appends of one turn commit together, in order).
          const stored = await Promise.all(got.messages.map((m) => storeReplica(address, m.message)));
          for (const fresh of stored) if (fresh) pulled++;
          const last = got.messages.at(-1);
          if (last === undefined) break;
          pullCursors.set(cursorKey, last.seq);
          if (last.seq >= got.lastSeq) break;
        }
      } catch (e) {
        log.debug({ peer: id, err: e instanceof Error ? e.message : String(e) }, 'pull failed');
      }
    }
    return pulled;
  };

  const penalise = (peer: string): void => {
    limiter.penalise(peer);
    for (const c of node.getConnections()) {
      if (c.remotePeer.toString() === peer) void c.close().catch(() => undefined);
    }
  };

  const ctx: ServiceContext = {
    store,
    limiter,
    metrics,
    log,
    hub,
    appended(address) {
      follow(address);
      provide(address);
    },
    committed(address, message, commitEpoch, from) {
      const topic = follow(address);
      // A replica's copy is not copied further; a client's append is copied to every replica.
      const copy = (reached: readonly PeerId[]): void => {
        if (!from.replica) void replicate(address, message, commitEpoch, reached);
      };
      if (!gossipNeeded(address, topic, from.peer)) {
        // Every relay following the topic here is a replica: the direct copies reach them all,
        // at less cost than gossip (no RPC, message id, seen cache, message cache or scoring).
        metrics.gossip.inc({ outcome: 'direct-only' });
        copy([]);
        return;
      }
      const data = encode([address, message, commitEpoch ?? null]);
      // A replica that got the message from the backbone stores it on receipt: it is copied
      // directly only to the replicas gossip did not reach.
      void pubsub.publish(topic, data).then(
        (res) => {
          metrics.gossip.inc({ outcome: 'published' });
          copy(res.recipients);
        },
        () => {
          metrics.gossip.inc({ outcome: 'publish-failed' });
          copy([]);
        },
      );
    },
    isRelay,
    async blobElsewhere(hash) {
      // The replicas of the hash first (no network query), then whoever the DHT says has it.
      const tried = new Set<string>([self.toString()]);
      const fetchFrom = async (peers: readonly PeerId[]): Promise<Uint8Array | undefined> => {
        for (const peer of peers) {
          if (tried.has(peer.toString())) continue;
          tried.add(peer.toString());
          try {
            const bytes = await sessionTo(peer).getBlob(hash);
            if (bytes === undefined) continue;
            await store.putBlob(hash, bytes, `relay:${peer.toString()}`);
            provide(hash);
            return bytes;
          } catch {
            // Try the next relay.
          }
        }
        return undefined;
      };
      return (await fetchFrom(closest(hash))) ?? (await fetchFrom(await providers(hash)));
    },
    interested(address) {
      follow(address);
      const k = bytesKey(address);
      const now = Date.now();
      if ((lastPull.get(k) ?? 0) + PULL_INTERVAL_MS > now) return;
      lastPull.set(k, now);
      void pull(address);
    },
    blobStored(hash, chunk, peer) {
      blobStored(hash, chunk, peer);
    },
    penalise,
    get stopping() {
      return stopping;
    },
  };

  const blobStored = (hash: Uint8Array, chunk: Uint8Array, fromPeer: string): void => {
    provide(hash);
    void (async () => {
      if (isRelay(fromPeer)) return;
      const from = peerIdFromString(fromPeer);
      for (const peer of closest(hash)) {
        if (peer.equals(self) || peer.equals(from)) continue;
        try {
          await sessionTo(peer).putBlob(hash, chunk);
          metrics.replications.inc({ outcome: 'ok' });
        } catch {
          metrics.replications.inc({ outcome: 'failed' });
        }
      }
    })();
  };

  for (const protocol of [MAILBOX_PROTOCOL, BLOB_PROTOCOL, SYNC_PROTOCOL]) {
    await node.handle(
      protocol,
      (stream, connection) => {
        new ServerSession(stream, connection.remotePeer.toString(), protocol, ctx);
      },
      {
        maxInboundStreams: STREAMS_PER_PROTOCOL,
        maxOutboundStreams: STREAMS_PER_PROTOCOL,
        runOnLimitedConnection: false,
      },
    );
  }

  // Join the other relays: the DHT fills its routing table from these connections.
  for (const addr of config.bootstrap) {
    try {
      const { multiaddr } = await import('@multiformats/multiaddr');
      await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) });
    } catch (e) {
      log.warn(
        { bootstrap: addr, err: e instanceof Error ? e.message : String(e) },
        'bootstrap relay unreachable',
      );
    }
  }

  const bootstrapAt = new Map<string, { attempt: number; next: number }>();
  let upkeepBusy = false;
  const upkeep = async (): Promise<void> => {
    if (upkeepBusy || stopping) return;
    upkeepBusy = true;
    try {
      const { multiaddr } = await import('@multiformats/multiaddr');
      const now = Date.now();
      const backoff = (attempt: number) => now + Math.min(RELAY_REDIAL_MAX_MS, 1000 * 2 ** attempt);
      for (const [k, l] of lost) {
        if (now - l.since > RELAY_FORGET_MS) lost.delete(k);
        else if (l.next <= now && node.getConnections(l.peer).length === 0) {
          try {
            await node.dial(l.peer, { signal: AbortSignal.timeout(5_000) });
            lost.delete(k);
            log.info({ relay: k }, 'relay reconnected');
          } catch {
            l.attempt++;
            l.next = backoff(l.attempt);
          }
        }
      }
      for (const addr of config.bootstrap) {
        const ma = multiaddr(addr);
        const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value;
        const b = bootstrapAt.get(addr) ?? { attempt: 0, next: 0 };
        if (peer === undefined || b.next > now) continue;
        if (node.getConnections().some((c) => c.remotePeer.toString() === peer)) {
          bootstrapAt.delete(addr);
          continue;
        }
        try {
          await node.dial(ma, { signal: AbortSignal.timeout(5_000) });
          bootstrapAt.delete(addr);
          log.info({ bootstrap: addr }, 'bootstrap relay reconnected');
        } catch {
          bootstrapAt.set(addr, { attempt: b.attempt + 1, next: backoff(b.attempt + 1) });
        }
      }
    } finally {
      upkeepBusy = false;
    }
  };
  const upkeepTimer = setInterval(() => void upkeep(), 1_000);
  const stopLiveness = startLiveness({
    connections: () => node.getConnections(),
    periodMs: config.pingEveryMs,
    timeoutMs: Math.min(PING_TIMEOUT_MS, config.pingEveryMs),
    onDead: (conn) => {
      metrics.deadConnections.inc();
      log.info({ peer: conn.remotePeer.toString() }, 'closed a connection whose peer did not answer a ping');
    },
  });

  const announce = async (): Promise<void> => {
    const addrs = node.getMultiaddrs().map(String);
    const timeMs = Date.now();
    const body = announcementBody(self.toString(), addrs, timeMs);
    const sig = await privateKey.sign(body);
    const value = encode([self.toString(), addrs, timeMs, sig]);
    try {
      for await (const _ of dht.put(new TextEncoder().encode(`/conclave/${self.toString()}`), value, {
        signal: AbortSignal.timeout(DHT_QUERY_MS),
      })) {
        // Drain progress events.
      }
    } catch (e) {
      log.debug({ err: e instanceof Error ? e.message : String(e) }, 'announcement not stored');
    }
  };
  void announce();
  const announceTimer = setInterval(() => void announce(), 10 * 60_000);
  const pruneTimer = setInterval(() => {
    try {
      const pruned = store.prune(Date.now());
      if (pruned.messages > 0) log.info(pruned, 'pruned mailbox messages past retention');
    } catch (e) {
      log.error({ err: e instanceof Error ? e.message : String(e) }, 'prune failed');
    }
  }, 60_000);
  announceTimer.unref();
  pruneTimer.unref();

  const registry = metrics.registry;
  registry.gauge(
    'conclave_relay_connections',
    'Open libp2p connections.',
    () => node.getConnections().length,
  );
  registry.gauge(
    'conclave_relay_reservations',
    'Circuit-relay reservations held.',
    () => node.services.relay.reservations.size,
  );
  registry.gauge('conclave_relay_subscriptions', 'Open mailbox subscriptions.', () => hub.count);
  registry.gauge('conclave_relay_topics', 'Mailbox addresses with a subscriber here.', () => hub.topics);
  registry.gauge(
    'conclave_relay_backbone_topics',
    'Backbone gossip topics this relay follows.',
    () => topics.size,
  );
  registry.gauge('conclave_relay_stored_messages', 'Mailbox messages on disk.', () => store.stats().messages);
  // The process's memory, read at scrape time: what a connected peer costs shows here.
  registry.gauge('process_resident_memory_bytes', 'Resident set size, bytes.', () =>
    process.memoryUsage.rss(),
  );
  registry.gauge('nodejs_heap_used_bytes', 'V8 heap in use, bytes.', () => process.memoryUsage().heapUsed);
  registry.gauge(
    'nodejs_heap_total_bytes',
    'V8 heap reserved, bytes.',
    () => process.memoryUsage().heapTotal,
  );
  registry.gauge(
    'nodejs_external_memory_bytes',
    'Memory of C++ objects bound to JavaScript objects (Buffers among them), bytes.',
    () => process.memoryUsage().external,
  );
  registry.gauge(
    'nodejs_array_buffers_bytes',
    'Memory of ArrayBuffers and Buffers (part of the external memory), bytes.',
    () => process.memoryUsage().arrayBuffers,
  );
  registry.gauge(
    'conclave_relay_stored_blob_bytes',
    'Blob chunk bytes on disk.',
    () => store.stats().blobBytes,
  );

  let server: Server | undefined;
  let httpUrl: string | undefined;
  if (config.http !== undefined) {
    const started = Date.now();
    server = createServer((req, res) => {
      if (req.url === '/healthz') {
        res.writeHead(stopping ? 503 : 200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            status: stopping ? 'stopping' : 'ok',
            peerId: self.toString(),
            connections: node.getConnections().length,
            uptimeSec: Math.round((Date.now() - started) / 1000),
          }),
        );
      } else if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(registry.render());
      } else if (config.webRoot !== undefined) {
        const root = config.webRoot;
        const relays = node.getMultiaddrs().map((a) => a.toString());
        void serveWeb(root, relays, req, res).then((served) => {
          if (!served) {
            res.writeHead(405, { 'content-type': 'text/plain' });
            res.end('method not allowed\n');
          }
        });
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found\n');
      }
    });
    const { host, port } = config.http;
    await new Promise<void>((resolve, reject) => {
      server?.once('error', reject);
      server?.listen(port, host, () => {
        resolve();
      });
    });
    const a = server.address() as AddressInfo;
    httpUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  return {
    peerId: self.toString(),
    multiaddrs: node.getMultiaddrs().map(String),
    httpUrl,
    node,
    store,
    pull,
    async stop() {
      if (stopping) return;
      stopping = true;
      clearInterval(announceTimer);
      clearInterval(upkeepTimer);
      stopLiveness();
      clearInterval(pruneTimer);
      await new Promise<void>((resolve) => {
        if (server === undefined) resolve();
        else
          server.close(() => {
            resolve();
          });
      });
      for (const s of sessions.values()) await s.close();
      await node.stop();
      store.close();
    },
  };
}
