import { peerIdFromString } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../shared/src/crypto/sha256.js';
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { closestPeers } from './relay.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, collect, indexOf, message, metric, range, until } from './testing/util.js';

/**
 * Two relays, B bootstrapped from A, and `clients` client connectors (default 2), started before
 * the tests of the describe that calls it and stopped after them.
 */
function twoRelays(options: { args?: readonly string[]; clients?: number } = {}) {
  const dirs = [tempDir(), tempDir()];
  const relays: SpawnedRelay[] = [];
  const clients: RelayConnector[] = [];
  beforeAll(async () => {
    const args = options.args ?? [];
    const first = await spawnRelay({ dataDir: dirs[0]?.dir, args });
    relays.push(first, await spawnRelay({ dataDir: dirs[1]?.dir, bootstrap: [first.multiaddr], args }));
    for (let i = 0; i < (options.clients ?? 2); i++) clients.push(await libp2pConnector());
  });
  afterAll(async () => {
    for (const c of clients) await c.stop();
    for (const r of relays) await r.stop();
    for (const d of dirs) d.cleanup();
  });
  const at = <T>(list: readonly T[], i: number): T => {
    const x = list[i];
    if (x === undefined) throw new Error('the relays are not started');
    return x;
  };
  return {
    /** Relays A and B, and the client connectors. */
    get: () => ({ r1: at(relays, 0), r2: at(relays, 1), a: at(clients, 0), b: at(clients, 1), clients }),
    /** Stops relay A and starts it again on its data and port. */
    async restartFirst(): Promise<SpawnedRelay> {
      const old = at(relays, 0);
      const port = Number(/\/tcp\/(\d+)\//.exec(old.multiaddr)?.[1]);
      await old.stop();
      relays[0] = await spawnRelay({ dataDir: dirs[0]?.dir, port, args: options.args ?? [] });
      return relays[0];
    },
  };
}

describe('two relays on the backbone', () => {
  const pair = twoRelays();

  it('a peer connected only to relay B receives live what a peer sent through relay A', async () => {
    const { r1, r2, a, b } = pair.get();
    const la = await a.connect(r1.multiaddr);
    const lb = await b.connect(r2.multiaddr);
    const addr = address(2);
    // B subscribes first: relay B then follows the address on the backbone.
    const arriving = collect(lb, addr, 50);
    // A moment for relay A to hear that relay B follows the address.
    await new Promise((r) => setTimeout(r, 2500));
    for (let i = 0; i < 50; i++) await la.append(addr, message(2, i, 300));
    const got = await arriving;
    expect(new Set(got.messages.map(indexOf)).size).toBe(50);
    // With two relays and two replicas per address, relay B is a replica of everything: relay A
    // copies each append to it directly and has no other relay to gossip to.
    expect(await metric(r2, 'conclave_relay_appends_total{kind="replicate"}')).toBeGreaterThanOrEqual(50);
    expect(
      await metric(r1, 'conclave_relay_gossip_messages_total{outcome="direct-only"}'),
    ).toBeGreaterThanOrEqual(50);
  });

  it('a burst appended through relay A at once reaches a peer on relay B whole and in order, by direct copies', async () => {
    const { r1, r2, a, b } = pair.get();
    const la = await a.connect(r1.multiaddr);
    const lb = await b.connect(r2.multiaddr);
    const addr = address(4);
    const arriving = collect(lb, addr, 200);
    await new Promise((r) => setTimeout(r, 2500));
    const copied = 'conclave_relay_appends_total{kind="replicate"}';
    const gossiped = 'conclave_relay_appends_total{kind="gossip"}';
    const before = await metric(r2, copied);
    const gossipedBefore = await metric(r2, gossiped);
    // Sent without waiting: relay A commits them together and copies them in the same turns, so
    // several copies leave in one write to relay B.
    const acks = await Promise.all(range(200).map((i) => la.append(addr, message(4, i, 300))));
    expect(acks.map((x) => (x.kind === 'appended' ? x.seq : -1))).toEqual(range(200).map((i) => i + 1));
    const got = await arriving;
    expect(got.messages.map(indexOf)).toEqual(range(200));
    expect(got.seqs).toEqual(range(200).map((i) => i + 1));
    // Every one came as a direct copy, none by gossip.
    expect((await metric(r2, copied)) - before).toBe(200);
    expect((await metric(r2, gossiped)) - gossipedBefore).toBe(0);
  });

  it('relay A holds back its copies while relay B is stopped, and B gets every one live, in order', async () => {
    const { r1, r2, a, b } = pair.get();
    const lb = await b.connect(r2.multiaddr);
    const addr = address(5);
    // Three clients of relay A, each with fewer unanswered appends than a relay takes from one
    // session (MAX_PENDING_REQUESTS), together with more than that.
    const writers = [a, await libp2pConnector(), await libp2pConnector()];
    try {
      const links = await Promise.all(writers.map((w) => w.connect(r1.multiaddr)));
      const perWriter = 500;
      const n = perWriter * links.length;
      const arriving = collect(lb, addr, n);
      await new Promise((r) => setTimeout(r, 1000));
      r2.process.kill('SIGSTOP');
      try {
        // Acknowledged by relay A alone, while the copies for relay B pile up.
        const acks = await Promise.all(
          links.flatMap((l, w) =>
            range(perWriter).map((i) => l.append(addr, message(5, w * perWriter + i, 300))),
          ),
        );
        expect(acks.every((x) => x.kind === 'appended')).toBe(true);
      } finally {
        r2.process.kill('SIGCONT');
      }
      const got = await arriving;
      // Relay B stores them in the order relay A committed them, which is the order of A's seqs.
      expect(got.messages.map(indexOf).sort((x, y) => x - y)).toEqual(range(n));
      const atA = await collect(await a.connect(r1.multiaddr), addr, n);
      expect(got.messages.map(indexOf)).toEqual(atA.messages.map(indexOf));
      expect(await metric(r2, 'conclave_relay_refusals_total{reason="tooMany"}')).toBe(0);
    } finally {
      for (const w of writers.slice(1)) await w.stop();
    }
  });

  it('a peer that subscribes at relay B later catches up on what was sent through relay A', async () => {
    const { r1, r2, a, b } = pair.get();
    const la = await a.connect(r1.multiaddr);
    const addr = address(3);
    for (let i = 0; i < 30; i++) await la.append(addr, message(3, i, 300));
    const lb = await b.connect(r2.multiaddr);
    const got = await collect(lb, addr, 30);
    expect(got.messages.map(indexOf).sort((x, y) => x - y)).toEqual(range(30));
  });
});

describe('two relays that keep one replica per address', () => {
  const pair = twoRelays({ args: ['--replicas', '1'] });

  it('gossips an append to a relay that follows its address without being its replica, and copies it to one that is', async () => {
    const { r1, r2, a, b } = pair.get();
    const ids = [peerIdFromString(r1.peerId), peerIdFromString(r2.peerId)];
    /** An address whose one replica is `owner`. */
    const ownedBy = (owner: number): number => {
      for (let n = 10; n < 250; n++) if (closestPeers(ids, address(n), 1)[0]?.equals(ids[owner])) return n;
      throw new Error('no such address');
    };
    // Relay A keeps `onA` itself, so relay B, which follows it for its client, needs gossip;
    // relay B keeps `onB`, so relay A copies those appends to it directly and gossips nothing.
    const onA = ownedBy(0);
    const onB = ownedBy(1);
    const la = await a.connect(r1.multiaddr);
    const lb = await b.connect(r2.multiaddr);
    const gossiped = 'conclave_relay_appends_total{kind="gossip"}';
    const copied = 'conclave_relay_appends_total{kind="replicate"}';
    const arrivingA = collect(lb, address(onA), 20);
    const arrivingB = collect(lb, address(onB), 20);
    await new Promise((r) => setTimeout(r, 2500));
    const before = { gossiped: await metric(r2, gossiped), copied: await metric(r2, copied) };
    for (let i = 0; i < 20; i++) {
      await la.append(address(onA), message(onA, i, 300));
      await la.append(address(onB), message(onB, i, 300));
    }
    expect((await arrivingA).messages.map(indexOf)).toEqual(range(20));
    expect((await arrivingB).messages.map(indexOf)).toEqual(range(20));
    expect((await metric(r2, gossiped)) - before.gossiped).toBe(20);
    expect((await metric(r2, copied)) - before.copied).toBe(20);
  });
});

describe('two relays with a low rate limit per peer', () => {
  // 20 requests a second per peer, with a burst of 40.
  const pair = twoRelays({ args: ['--rate-requests', '20'], clients: 4 });

  it('limits each client, not relay A’s copies of all its clients’ appends', async () => {
    const { r1, r2, clients } = pair.get();
    const [reader, ...writers] = clients as [RelayConnector, ...RelayConnector[]];
    const addr = address(6);
    const lb = await reader.connect(r2.multiaddr);
    const arriving = collect(lb, addr, 90);
    await new Promise((r) => setTimeout(r, 1000));
    // Three clients of relay A send 30 appends each at once, within their own limits there;
    // relay A copies all 90 to relay B at once, past what one client may send it.
    const links = await Promise.all(writers.map((w) => w.connect(r1.multiaddr)));
    const acks = await Promise.all(
      links.flatMap((l, w) => range(30).map((i) => l.append(addr, message(6, w * 30 + i, 300)))),
    );
    expect(acks.every((x) => x.kind === 'appended')).toBe(true);
    const got = await arriving;
    expect(got.messages.map(indexOf).sort((x, y) => x - y)).toEqual(range(90));
    expect(await metric(r2, 'conclave_relay_refusals_total{reason="rateLimited"}')).toBe(0);
  });
});

describe('a relay that restarts', () => {
  const pair = twoRelays();

  it('is found again by the relay that bootstrapped from it, and replication resumes', async () => {
    const { r2, a: writer, b: reader } = pair.get();
    const r1 = await pair.restartFirst();
    // Relay B dials relay A again on its own (backoff from 0.5 s), and says so in its log.
    await until(() => reconnected(r2), 'relay B to reconnect to relay A');
    const addr = address(9);
    const la = await writer.connect(r1.multiaddr);
    for (let i = 0; i < 20; i++) await la.append(addr, message(9, i, 300));
    const lb = await reader.connect(r2.multiaddr);
    const got = await collect(lb, addr, 20);
    expect(got.messages.map(indexOf).sort((x, y) => x - y)).toEqual(range(20));
  });
});

/** Whether the relay logged that it reached a lost or bootstrap relay again. */
function reconnected(r: SpawnedRelay): Promise<boolean> {
  return Promise.resolve(r.logs.some((l) => l.includes('relay reconnected"')));
}

describe('three relays in one DHT', () => {
  const dirs = [tempDir(), tempDir(), tempDir()];
  const relays: SpawnedRelay[] = [];
  let writer: RelayConnector;
  let reader: RelayConnector;
  beforeAll(async () => {
    const first = await spawnRelay({ dataDir: dirs[0]?.dir });
    relays.push(first);
    relays.push(await spawnRelay({ dataDir: dirs[1]?.dir, bootstrap: [first.multiaddr] }));
    relays.push(
      await spawnRelay({
        dataDir: dirs[2]?.dir,
        bootstrap: [first.multiaddr, relays[1]?.multiaddr ?? ''],
      }),
    );
    writer = await libp2pConnector();
    reader = await libp2pConnector();
  });
  afterAll(async () => {
    await writer.stop();
    await reader.stop();
    for (const r of relays) await r.stop();
    for (const d of dirs) d.cleanup();
  });

  it('a peer on relay C catches up on ops and blobs written through relay A while A is stopped', async () => {
    const [ra, rb, rc] = relays as [SpawnedRelay, SpawnedRelay, SpawnedRelay];
    // Relay B must know relay C too, so that every relay sees the same replica set.
    await until(async () => (await metric(rb, 'conclave_relay_connections')) >= 2, 'relays to connect');
    const la = await writer.connect(ra.multiaddr);
    const addr = address(9);
    for (let i = 0; i < 100; i++) await la.append(addr, message(9, i, 300));
    const chunk = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
    const hash = sha256(chunk);
    await la.putBlob(hash, chunk);
    // Replication is asynchronous after the ack: wait until a replica holds everything.
    await until(
      async () =>
        (await metric(rb, 'conclave_relay_stored_messages')) +
          (await metric(rc, 'conclave_relay_stored_messages')) >=
        100,
      'replicas to store the appends',
    );
    await until(
      async () =>
        (await metric(rb, 'conclave_relay_stored_blob_bytes')) +
          (await metric(rc, 'conclave_relay_stored_blob_bytes')) >=
        chunk.length,
      'a replica to store the blob',
    );
    await la.close();
    expect(await ra.stop()).toBe(0);

    const lc = await reader.connect(rc.multiaddr);
    const got = await collect(lc, addr, 100);
    expect(got.messages.map(indexOf).sort((x, y) => x - y)).toEqual(range(100));
    const blob = await lc.getBlob(hash);
    expect(blob !== undefined && equalBytes(blob, chunk)).toBe(true);
  });
});
