import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../shared/src/crypto/sha256.js';
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, collect, indexOf, message, metric, range, until } from './testing/util.js';

describe('two relays on the backbone', () => {
  const dirs = [tempDir(), tempDir()];
  let r1: SpawnedRelay;
  let r2: SpawnedRelay;
  let a: RelayConnector;
  let b: RelayConnector;
  beforeAll(async () => {
    r1 = await spawnRelay({ dataDir: dirs[0]?.dir });
    r2 = await spawnRelay({ dataDir: dirs[1]?.dir, bootstrap: [r1.multiaddr] });
    a = await libp2pConnector();
    b = await libp2pConnector();
  });
  afterAll(async () => {
    await a.stop();
    await b.stop();
    await r1.stop();
    await r2.stop();
    for (const d of dirs) d.cleanup();
  });

  it('a peer connected only to relay B receives live what a peer sent through relay A', async () => {
    const la = await a.connect(r1.multiaddr);
    const lb = await b.connect(r2.multiaddr);
    const addr = address(2);
    // B subscribes first: relay B then follows the address on the backbone.
    const arriving = collect(lb, addr, 50);
    // Gossipsub needs a heartbeat to graft the two relays into the topic's mesh.
    await new Promise((r) => setTimeout(r, 2500));
    for (let i = 0; i < 50; i++) await la.append(addr, message(2, i, 300));
    const got = await arriving;
    expect(new Set(got.messages.map(indexOf)).size).toBe(50);
    expect(await metric(r2, 'conclave_relay_appends_total{kind="gossip"}')).toBeGreaterThan(0);
  });

  it('a burst appended through relay A at once reaches a peer on relay B whole and in order, by gossip', async () => {
    const la = await a.connect(r1.multiaddr);
    const lb = await b.connect(r2.multiaddr);
    const addr = address(4);
    const arriving = collect(lb, addr, 200);
    await new Promise((r) => setTimeout(r, 2500));
    const gossiped = 'conclave_relay_appends_total{kind="gossip"}';
    const before = await metric(r2, gossiped);
    // Sent without waiting: relay A commits them together and publishes them in the same turns, so
    // several backbone messages leave in one write to relay B.
    const acks = await Promise.all(range(200).map((i) => la.append(addr, message(4, i, 300))));
    expect(acks.map((x) => (x.kind === 'appended' ? x.seq : -1))).toEqual(range(200).map((i) => i + 1));
    const got = await arriving;
    expect(got.messages.map(indexOf)).toEqual(range(200));
    expect(got.seqs).toEqual(range(200).map((i) => i + 1));
    // Every one came over the backbone (none by direct replication).
    expect((await metric(r2, gossiped)) - before).toBe(200);
  });

  it('a peer that subscribes at relay B later catches up on what was sent through relay A', async () => {
    const la = await a.connect(r1.multiaddr);
    const addr = address(3);
    for (let i = 0; i < 30; i++) await la.append(addr, message(3, i, 300));
    const lb = await b.connect(r2.multiaddr);
    const got = await collect(lb, addr, 30);
    expect(got.messages.map(indexOf).sort((x, y) => x - y)).toEqual(range(30));
  });
});

describe('a relay that restarts', () => {
  const dirs = [tempDir(), tempDir()];
  let r1: SpawnedRelay;
  let r2: SpawnedRelay;
  let writer: RelayConnector;
  let reader: RelayConnector;
  beforeAll(async () => {
    r1 = await spawnRelay({ dataDir: dirs[0]?.dir });
    r2 = await spawnRelay({ dataDir: dirs[1]?.dir, bootstrap: [r1.multiaddr] });
    writer = await libp2pConnector();
    reader = await libp2pConnector();
  });
  afterAll(async () => {
    await writer.stop();
    await reader.stop();
    await r1.stop();
    await r2.stop();
    for (const d of dirs) d.cleanup();
  });

  it('is found again by the relay that bootstrapped from it, and replication resumes', async () => {
    const port = Number(/\/tcp\/(\d+)\//.exec(r1.multiaddr)?.[1]);
    await r1.stop();
    r1 = await spawnRelay({ dataDir: dirs[0]?.dir, port });
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
