import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector, RelayLink } from '../../shared/src/ports/network.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, appendMany, collect, indexOf, message, range } from './testing/util.js';

describe('delivery through one relay', () => {
  const dir = tempDir();
  let relay: SpawnedRelay;
  const connectors: RelayConnector[] = [];
  beforeAll(async () => {
    // These tests are about delivery, not limits (hostile.test.ts): one client sends bursts.
    relay = await spawnRelay({
      dataDir: dir.dir,
      args: ['--rate-requests', '100000', '--rate-bytes', '1GiB'],
    });
  });
  afterAll(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    await relay.stop();
    dir.cleanup();
  });

  async function client(): Promise<RelayLink> {
    const c = await libp2pConnector();
    connectors.push(c);
    return c.connect(relay.multiaddr);
  }

  it('fans out 1,000 ops from one client to 100 clients on the same IP, all of them, in order', async () => {
    const addr = address(10);
    const links = await Promise.all(range(100).map(() => client()));
    const [publisher] = links as [RelayLink];
    let live = 0;
    const arriving = links.map((l) =>
      collect(l, addr, 1000, { timeoutMs: 110_000 }).finally(() => {
        live++;
      }),
    );
    // Every subscription is open before the first op: wait until each saw an empty backlog.
    await new Promise((r) => setTimeout(r, 1000));
    const seqs = await appendMany(publisher, addr, 1000, (i) => message(10, i), 32);
    expect(seqs).toEqual(range(1000).map((i) => i + 1));
    const results = await Promise.all(arriving);
    expect(live).toBe(100);
    for (const r of results) {
      expect(r.messages.map(indexOf)).toEqual(range(1000));
      expect(r.seqs).toEqual(range(1000).map((i) => i + 1));
    }
  });

  it('a peer offline while 10,000 ops are sent catches up completely after reconnecting', async () => {
    const addr = address(11);
    const sender = await client();
    const c = await libp2pConnector();
    connectors.push(c);
    let reader = await c.connect(relay.multiaddr);
    await appendMany(sender, addr, 10, (i) => message(11, i));
    const first = await collect(reader, addr, 10);
    const cursor = first.seqs.at(-1) ?? 0;
    await reader.close();
    await c.node.hangUp(reader.relay as never).catch(() => undefined);

    await appendMany(sender, addr, 10_000, (i) => message(11, 10 + i));

    reader = await c.connect(relay.multiaddr);
    const rest = await collect(reader, addr, 10_000, { after: cursor, timeoutMs: 110_000 });
    expect(rest.messages.map(indexOf)).toEqual(range(10_000).map((i) => 10 + i));
    expect(rest.seqs[0]).toBe(cursor + 1);
  });

  it('a subscriber that reads slowly does not make the relay’s memory grow with the backlog', async () => {
    // Two fresh relays take the same appends; one has a slow subscriber, the other none. What
    // the store and the heap use for the appends is the same on both, so the difference is
    // what the slow subscriber costs.
    const dirs = [tempDir(), tempDir()];
    const [subject, control] = await Promise.all(
      dirs.map((d) =>
        spawnRelay({ dataDir: d.dir, args: ['--rate-requests', '100000', '--rate-bytes', '1GiB'] }),
      ),
    );
    if (subject === undefined || control === undefined) throw new Error('relays');
    try {
      const node = await libp2pConnector();
      connectors.push(node);
      const sender = await node.connect(subject.multiaddr);
      const controlSender = await node.connect(control.multiaddr);
      const slowNode = await libp2pConnector();
      connectors.push(slowNode);
      const slow = await slowNode.connect(subject.multiaddr);
      const addr = address(12);
      const handled: number[] = [];
      const reading = collect(slow, addr, 1_000_000, {
        timeoutMs: 600_000,
        onEach: async (seq) => {
          handled.push(seq);
          await new Promise((r) => setTimeout(r, 50));
        },
      }).catch(() => undefined);
      // Two rounds of 1,000 × 63 KiB (opaque: no padding bucket's length) while the subscriber takes
      // 20 messages a second.
      for (let round = 0; round < 2; round++) {
        const make = (i: number): Uint8Array => message(12, round * 1000 + i, 63 * 1024);
        await appendMany(sender, addr, 1000, make, 16);
        await appendMany(controlSender, addr, 1000, make, 16);
      }
      const withSubscriber = await subject.rss();
      const without = await control.rss();
      expect(handled.length).toBeGreaterThan(0);
      expect(handled.length).toBeLessThan(1000);
      expect(handled).toEqual(range(handled.length).map((i) => i + 1));
      // ~1,900 messages (120 MiB) are waiting for the subscriber; the relay holds them on disk. A
      // relay that kept them in memory would be at least those 120 MiB above the control; the two
      // processes' heaps and allocators differ by themselves too (49.5 MiB in one CI run here), so
      // the bound sits between the two.
      expect((withSubscriber - without) / 2 ** 20).toBeLessThan(80);
      await slow.close();
      await reading;
    } finally {
      // Stopped even when an expectation failed: a relay left running would load later tests.
      await Promise.all([subject.stop(), control.stop()]);
      for (const d of dirs) d.cleanup();
    }
  });
});
