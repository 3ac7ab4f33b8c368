import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadBlob, uploadBlob } from '../../shared/src/blob/blob.js';
import { openBlobCache } from '../../shared/src/blob/cache.js';
import { memoryChunkStore } from '../../shared/src/blob/chunkstore.memory.js';
import { nodeAead } from '../../shared/src/crypto/aead.node.js';
import { relayBlobTransport } from '../../shared/src/net/blob-transport.js';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import { RelayPool } from '../../shared/src/net/pool.js';
import { webRng } from '../../shared/src/ports/env.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { memoryStorage } from '../../shared/src/ports/storage.memory.js';
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { metric } from './testing/util.js';

describe('blobs through the relays', () => {
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

  async function pool(relay: SpawnedRelay): Promise<RelayPool> {
    const connector = await libp2pConnector();
    connectors.push(connector);
    const p = new RelayPool({ connector, relays: [relay.multiaddr], storage: memoryStorage() });
    await p.start();
    return p;
  }

  it('a 1 MiB attachment uploaded through relay A downloads intact through relay B, and the cache keeps it', async () => {
    const [a, b] = relays as [SpawnedRelay, SpawnedRelay];
    const content = new Uint8Array(1024 * 1024 + 123).map((_, i) => (i * 31 + (i >> 8)) & 0xff);
    const uploader = await pool(a);
    const ref = await uploadBlob(content, 'image/png', relayBlobTransport(uploader), {
      aead: nodeAead(),
      rng: webRng,
    });
    expect(ref.size).toBe(content.length);
    // 5 chunks (4 of 256 KiB and a last one) and the manifest, all stored encrypted at relay A.
    expect(await metric(a, 'conclave_relay_stored_blob_bytes')).toBeGreaterThan(content.length);

    const downloader = await pool(b);
    const cache = await openBlobCache(memoryChunkStore(), { quotaBytes: 8 * 1024 * 1024 });
    const got = await downloadBlob(ref, relayBlobTransport(downloader), { aead: nodeAead(), cache });
    // equalBytes: a deep equality of 1 MiB element by element takes seconds.
    expect(equalBytes(got, content)).toBe(true);
    expect(cache.usage().bytes).toBeGreaterThan(content.length);

    // With both relays gone, the device cache alone serves it again.
    const offline = {
      put: () => Promise.reject(new Error('offline')),
      get: () => Promise.reject(new Error('offline')),
    };
    expect(equalBytes(await downloadBlob(ref, offline, { aead: nodeAead(), cache }), content)).toBe(true);
  });
});
