import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, collect, indexOf, message, range } from './testing/util.js';

describe('one relay', () => {
  const dirs = [tempDir()];
  let relay: SpawnedRelay;
  let a: RelayConnector;
  let b: RelayConnector;
  beforeAll(async () => {
    relay = await spawnRelay({ dataDir: dirs[0]?.dir });
    a = await libp2pConnector();
    b = await libp2pConnector();
  });
  afterAll(async () => {
    await a.stop();
    await b.stop();
    await relay.stop();
    for (const d of dirs) d.cleanup();
  });

  it('delivers live what one peer appends to another peer subscribed through the relay', async () => {
    const la = await a.connect(relay.multiaddr);
    const lb = await b.connect(relay.multiaddr);
    const addr = address(1);
    const arriving = collect(lb, addr, 20);
    await new Promise((r) => setTimeout(r, 200));
    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await la.append(addr, message(1, i));
      if (r.kind === 'appended') seqs.push(r.seq);
    }
    expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const got = await arriving;
    expect(got.messages.map(indexOf)).toEqual(range(20));
  });
});
