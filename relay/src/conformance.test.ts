/**
 * Conformance: a stock js-libp2p node, built only from npm packages (no Conclave code in its
 * construction or in decoding what it receives), talks to a real relay process. It connects over
 * WebSockets, holds a circuit-relay-v2 reservation (a second stock node dials it through the
 * relay), and joins a gossipsub backbone topic on which it receives what a Conclave peer appends.
 * Only the harness (spawnRelay, the Conclave peer, the metrics helper) uses Conclave code.
 */
import { createHash } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { gossipsub, type GossipSub, type Message } from '@libp2p/gossipsub';
import { identify, type Identify } from '@libp2p/identify';
import type { Connection, Libp2p } from '@libp2p/interface';
import { ping, type Ping } from '@libp2p/ping';
import { webSockets } from '@libp2p/websockets';
import type { Multiaddr } from '@multiformats/multiaddr';
import { decode as cborDecode } from 'cbor-x';
import { createLibp2p } from 'libp2p';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector, RelayLink } from '../../shared/src/ports/network.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, message, metric, until } from './testing/util.js';

/** The backbone topic of an address, as documented: a fixed prefix and the address in lower-case hex. */
const topicOf = (addr: Uint8Array): string => `/conclave/backbone/1/${Buffer.from(addr).toString('hex')}`;

type StockNode = Libp2p<{ identify: Identify; ping: Ping; pubsub: GossipSub }>;

/** A node from npm packages only: WebSockets, noise, yamux, identify, ping, circuit relay, gossipsub. */
function stockNode(listen: readonly string[]): Promise<StockNode> {
  return createLibp2p({
    start: false,
    addresses: { listen: [...listen] },
    transports: [webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping({ runOnLimitedConnection: true }),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictNoSign',
        msgIdFn: (msg: Message) => new Uint8Array(createHash('sha256').update(msg.data).digest()),
      }),
    },
  });
}

/** The canonical CBOR of `[address, message, null]`, written out by hand (RFC 8949 section 4.2.1). */
function canonicalBackbone(addr: Uint8Array, msg: Uint8Array): Uint8Array {
  const bytesHead = (n: number): number[] =>
    n < 24
      ? [0x40 | n]
      : n < 0x100
        ? [0x58, n]
        : n < 0x10000
          ? [0x59, n >> 8, n & 0xff]
          : [0x5a, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return new Uint8Array([0x83, ...bytesHead(addr.length), ...addr, ...bytesHead(msg.length), ...msg, 0xf6]);
}

const isCircuit = (ma: Multiaddr): boolean => ma.getComponents().some((c) => c.name === 'p2p-circuit');

describe('a stock js-libp2p node against the relay', () => {
  const dir = tempDir();
  let relay: SpawnedRelay;
  let conclave: RelayConnector;
  let link: RelayLink;
  let listener: StockNode;
  let dialer: StockNode;
  let circuitAddr: Multiaddr | undefined;

  beforeAll(async () => {
    relay = await spawnRelay({ dataDir: dir.dir });
    conclave = await libp2pConnector();
    link = await conclave.connect(relay.multiaddr);
    listener = await stockNode([`${relay.multiaddr}/p2p-circuit`]);
    dialer = await stockNode([]);
  });
  afterAll(async () => {
    await dialer.stop();
    await listener.stop();
    await link.close();
    await conclave.stop();
    await relay.stop();
    dir.cleanup();
  });

  it('connects over WebSockets and holds a circuit reservation on the relay', async () => {
    const updated = new Promise<void>((resolve) => {
      listener.addEventListener('self:peer:update', () => {
        if (listener.getMultiaddrs().some(isCircuit)) resolve();
      });
    });
    // start() returns once the configured relay has granted the reservation.
    await listener.start();
    await Promise.race([
      updated,
      until(() => listener.getMultiaddrs().some(isCircuit), 'a /p2p-circuit address', 10_000),
    ]);

    const toRelay = listener.getConnections().filter((c) => c.remotePeer.toString() === relay.peerId);
    expect(toRelay.length).toBeGreaterThan(0);
    for (const c of toRelay) {
      const names = c.remoteAddr.getComponents().map((x) => x.name);
      expect(names).toContain('ws');
      expect(names).not.toContain('p2p-circuit');
      expect(c.limits).toBeUndefined();
    }

    // The advertised address is <relay>/p2p-circuit/p2p/<self>.
    circuitAddr = listener.getMultiaddrs().find(isCircuit);
    expect(circuitAddr?.toString()).toBe(`${relay.multiaddr}/p2p-circuit/p2p/${listener.peerId.toString()}`);
    expect(await metric(relay, 'conclave_relay_reservations')).toBeGreaterThanOrEqual(1);
  });

  it('a second stock node reaches the first through the relay (a limited connection)', async () => {
    expect(circuitAddr).toBeDefined();
    if (circuitAddr === undefined) return;
    await dialer.start();
    const conn: Connection = await dialer.dial(circuitAddr, { signal: AbortSignal.timeout(10_000) });
    expect(conn.remotePeer.equals(listener.peerId)).toBe(true);
    expect(conn.remoteAddr.getComponents().some((c) => c.name === 'p2p-circuit')).toBe(true);
    expect(conn.limits).toBeDefined();
    // A round trip over the relayed connection itself.
    const rtt = await dialer.services.ping.ping(circuitAddr, { signal: AbortSignal.timeout(10_000) });
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(dialer.getConnections(listener.peerId).every((c) => c.limits !== undefined)).toBe(true);
  });

  it('joins a backbone topic and receives, as canonical CBOR, what a Conclave peer appends', async () => {
    const addr = address(0xc1);
    const topic = topicOf(addr);
    const pubsub = listener.services.pubsub;
    const relayId = relay.peerId;

    // Mesh membership as the stock node sees it, from the documented graft and prune events.
    const mesh = new Set<string>();
    pubsub.addEventListener('gossipsub:graft', (evt) => {
      if (evt.detail.topic === topic) mesh.add(evt.detail.peerId);
    });
    pubsub.addEventListener('gossipsub:prune', (evt) => {
      if (evt.detail.topic === topic) mesh.delete(evt.detail.peerId);
    });
    // The relay follows an address's topic once someone subscribes to (or appends at) it there.
    const conclaveSub = link.subscribe(addr, 0, { onMessage: () => undefined });
    pubsub.subscribe(topic);
    await until(
      () => pubsub.getSubscribers(topic).some((p) => p.toString() === relayId),
      'the relay to announce the topic',
      10_000,
    );
    // Grafting happens on a heartbeat (1 s): wait until the relay is in the stock node's mesh.
    await until(() => mesh.has(relayId), 'the relay in the topic mesh', 10_000);

    const sent = message(0xc1, 7, 300);
    const received = new Promise<Message>((resolve) => {
      pubsub.addEventListener('message', (evt) => {
        if (evt.detail.topic === topic) resolve(evt.detail);
      });
    });
    const result = await link.append(addr, sent);
    expect(result.kind).toBe('appended');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error('no gossip message arrived'));
      }, 10_000);
    });
    const got = await Promise.race([received, timeout]).finally(() => {
      clearTimeout(timer);
    });

    expect(got.type).toBe('unsigned');
    expect(Uint8Array.from(got.data)).toEqual(canonicalBackbone(addr, sent));
    const decoded: unknown = cborDecode(got.data);
    expect(Array.isArray(decoded)).toBe(true);
    const [dAddr, dMsg, dEpoch] = decoded as [Uint8Array, Uint8Array, unknown];
    expect(Uint8Array.from(dAddr)).toEqual(addr);
    expect(Uint8Array.from(dMsg)).toEqual(sent);
    expect(dEpoch).toBeNull();
    // The stock node was not pruned or dropped (scoring, IP colocation) along the way.
    expect(mesh.has(relayId)).toBe(true);
    expect(pubsub.getPeers().some((p) => p.toString() === relayId)).toBe(true);
    conclaveSub.close();
  });
});
