/**
 * The relay pool on real relays: a device configured with two relays keeps sending and
 * receiving when one of them dies, and what it sent while no relay was reachable goes out from
 * its outbox once one is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import { RelayPool } from '../../shared/src/net/pool.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { memoryStorage } from '../../shared/src/ports/storage.memory.js';
import { toHex } from '../../shared/src/protocol/ids.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, collect, message, until } from './testing/util.js';

describe('a device on two relays', () => {
  const dirs = [tempDir(), tempDir()];
  const relays: SpawnedRelay[] = [];
  const connectors: RelayConnector[] = [];
  beforeAll(async () => {
    const a = await spawnRelay({ dataDir: dirs[0]?.dir });
    relays.push(a, await spawnRelay({ dataDir: dirs[1]?.dir, bootstrap: [a.multiaddr] }));
  });
  afterAll(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    for (const r of relays) await r.stop();
    for (const d of dirs) d.cleanup();
  });

  it('fails over when a relay dies, and flushes its outbox when a relay comes back', async () => {
    const [ra, rb] = relays as [SpawnedRelay, SpawnedRelay];
    const addr = address(50);
    const connector = await libp2pConnector();
    connectors.push(connector);
    const storage = memoryStorage();
    const pool = new RelayPool({
      connector,
      relays: [ra.multiaddr, rb.multiaddr],
      storage,
      reconnect: { initialMs: 200, maxMs: 1000 },
    });
    await pool.start();
    const seen: string[] = [];
    pool.follow(addr, {
      onMessage(m) {
        seen.push(toHex(m));
      },
    });
    const other = await libp2pConnector();
    connectors.push(other);
    const otherOnB = await other.connect(rb.multiaddr);

    expect(await pool.send(addr, message(50, 0, 300))).toBe('sent');
    await until(() => seen.length === 1, 'its own first message back');

    // Relay A dies: the pool keeps working through relay B.
    await ra.kill9();
    expect(await pool.send(addr, message(50, 1, 300))).toBe('sent');
    await otherOnB.append(addr, message(51, 0, 300));
    await until(() => seen.length === 3, 'the messages through relay B');
    const onB = await collect(otherOnB, addr, 2);
    expect(onB.messages.map(toHex)).toEqual([message(50, 0, 300), message(50, 1, 300)].map(toHex));

    // Relay B dies too: a message is queued, not lost, and leaves when relay A is back.
    await rb.kill9();
    await until(() => pool.state.relays.every((r) => r.status !== 'connected'), 'both relays to be offline');
    expect(await pool.send(addr, message(50, 2, 300))).toBe('queued');
    expect(pool.state.outbox).toBe(1);
    const restarted = await spawnRelay({
      dataDir: ra.dataDir,
      port: Number(/tcp\/(\d+)/.exec(ra.multiaddr)?.[1]),
    });
    relays[0] = restarted;
    expect(restarted.peerId).toBe(ra.peerId);
    await until(() => pool.state.outbox === 0, 'the outbox to flush to the restarted relay A', 30_000);
    await until(() => seen.includes(toHex(message(50, 2, 300))), 'the queued message to come back');
    // Each distinct message reached the device once, though two relays carried some of them.
    expect(new Set(seen).size).toBe(seen.length);
    await pool.close();
  });
});
