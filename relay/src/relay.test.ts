import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector, RelayLink } from '../../shared/src/ports/network.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';

function address(n: number): Uint8Array {
  const a = new Uint8Array(32);
  a[0] = n;
  a[31] = 0x5a;
  return a;
}

function message(i: number, size = 1024): Uint8Array {
  const m = new Uint8Array(size);
  new DataView(m.buffer).setUint32(0, i);
  m[size - 1] = 0xee;
  return m;
}

function indexOf(m: Uint8Array): number {
  return new DataView(m.buffer, m.byteOffset, m.byteLength).getUint32(0);
}

/** Collects a subscription's messages until `n` arrived. */
function collect(link: RelayLink, addr: Uint8Array, n: number, after = 0): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`only ${got.length} of ${n} arrived`));
    }, 60_000);
    const sub = link.subscribe(addr, after, {
      onMessage(_seq, m) {
        got.push(m);
        if (got.length === n) {
          clearTimeout(timer);
          sub.close();
          resolve(got);
        }
      },
      onEnd(e) {
        if (got.length < n) reject(e);
      },
    });
  });
}

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
      const r = await la.append(addr, message(i));
      if (r.kind === 'appended') seqs.push(r.seq);
    }
    expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const got = await arriving;
    expect(got.map(indexOf)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});
