import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../ports/storage.js';
import { bytesKey, toHex } from '../protocol/ids.js';
import { openBlobCache } from './cache.js';
import type { BlobCache, BlobCacheOptions } from './cache.js';
import type { ChunkStoreOpener } from './chunkstore.conformance.js';
import { idbChunkStore } from './chunkstore.idb.js';
import { MemoryChunkMedium, memoryChunkStore } from './chunkstore.memory.js';
import { CACHE_TOUCH_BATCH } from './limits.js';

let dbCount = 0;

const mediums: { name: string; make: () => ChunkStoreOpener }[] = [
  {
    name: 'memory',
    make: () => {
      const medium = new MemoryChunkMedium();
      return () => Promise.resolve(memoryChunkStore(medium));
    },
  },
  {
    name: 'IndexedDB (fake-indexeddb)',
    make: () => {
      const factory = new IDBFactory();
      const name = `conclave-cache-test-${++dbCount}`;
      return () => idbChunkStore(name, factory);
    },
  },
];

/** A chunk named by a letter: its hash and `size` bytes of content. */
function chunk(name: string, size = 100): { hash: Uint8Array; bytes: Uint8Array } {
  const seed = name.charCodeAt(0);
  return {
    hash: Uint8Array.from({ length: 32 }, (_, i) => (seed * 7 + i) & 0xff),
    bytes: Uint8Array.from({ length: size }, (_, i) => (seed + i * 3) & 0xff),
  };
}

/** Which of `names` the cache holds, each checked by reading its bytes back. */
async function held(cache: BlobCache, names: string, size = 100): Promise<string> {
  let out = '';
  for (const n of names) {
    const got = await cache.get(chunk(n).hash);
    if (got !== undefined) {
      expect(toHex(got)).toBe(toHex(chunk(n, size).bytes));
      out += n;
    }
  }
  return out;
}

/** `has` for each name, without touching recency. */
function present(cache: BlobCache, names: string): string {
  return names
    .split('')
    .filter((n) => cache.has(chunk(n).hash))
    .join('');
}

async function putAll(cache: BlobCache, names: string, size = 100): Promise<void> {
  for (const n of names) await cache.put(chunk(n).hash, chunk(n, size).bytes);
}

describe.each(mediums)('BlobCache on $name', ({ make }) => {
  const openCache = (opener: ChunkStoreOpener, options: BlobCacheOptions): Promise<BlobCache> =>
    opener().then((store) => openBlobCache(store, options));

  it('evicts the least recently used chunk first, a read counting as a use', async () => {
    const cache = await openCache(make(), { quotaBytes: 300 });
    await putAll(cache, 'abc');
    expect(await cache.get(chunk('a').hash)).toBeDefined();
    await putAll(cache, 'd');
    expect(present(cache, 'abcd')).toBe('acd');
    await putAll(cache, 'e');
    expect(present(cache, 'abcde')).toBe('ade');
    expect(cache.usage()).toEqual({ bytes: 300, chunks: 3, pinnedBytes: 0, quotaBytes: 300 });
    expect(await held(cache, 'abcde')).toBe('ade');
    await cache.close();
  });

  it('putting a chunk already cached marks it used and stores nothing twice', async () => {
    const cache = await openCache(make(), { quotaBytes: 300 });
    await putAll(cache, 'abc');
    await putAll(cache, 'a');
    expect(cache.usage().bytes).toBe(300);
    await putAll(cache, 'd');
    expect(present(cache, 'abcd')).toBe('acd');
    await cache.close();
  });

  it('keeps no unpinned chunk larger than the quota, and evicts nothing for it', async () => {
    const cache = await openCache(make(), { quotaBytes: 250 });
    await putAll(cache, 'ab');
    await cache.put(chunk('z').hash, chunk('z', 251).bytes);
    expect(present(cache, 'abz')).toBe('ab');
    expect(await cache.get(chunk('z').hash)).toBeUndefined();
    expect(cache.usage().bytes).toBe(200);
    await cache.close();
  });

  it('bounds the number of chunks as well as their bytes', async () => {
    const cache = await openCache(make(), { quotaBytes: 10_000, maxChunks: 2 });
    await putAll(cache, 'abc', 10);
    expect(present(cache, 'abc')).toBe('bc');
    await cache.close();
  });

  it('never evicts a pinned blob’s manifest or chunks; unpinned, they age like any other', async () => {
    const cache = await openCache(make(), { quotaBytes: 400 });
    const m = chunk('m', 50);
    await cache.pin(m.hash, [chunk('a').hash, chunk('b').hash]);
    await putAll(cache, 'ab');
    await cache.put(m.hash, m.bytes);
    await putAll(cache, 'cdefg');
    expect(present(cache, 'abmcdefg')).toBe('abmg');
    expect(cache.isPinned(chunk('a').hash)).toBe(true);
    expect(cache.isPinned(m.hash)).toBe(true);
    expect(cache.isPinned(chunk('g').hash)).toBe(false);
    expect(cache.usage()).toEqual({ bytes: 350, chunks: 4, pinnedBytes: 250, quotaBytes: 400 });

    await cache.unpin(m.hash);
    expect(cache.isPinned(chunk('a').hash)).toBe(false);
    expect(cache.usage().pinnedBytes).toBe(0);
    // a, b and m are now the least recently used.
    await putAll(cache, 'h');
    expect(present(cache, 'abmgh')).toBe('bmgh');
    await cache.close();
  });

  it('pinned chunks may exceed the quota; unpinning then evicts at once, oldest first', async () => {
    const cache = await openCache(make(), { quotaBytes: 100 });
    const m = chunk('m', 50);
    await cache.pin(m.hash, [chunk('a').hash]);
    await putAll(cache, 'a');
    await cache.put(m.hash, m.bytes);
    expect(cache.usage().bytes).toBe(150);
    // No room for anything unpinned: it is evicted on arrival.
    await putAll(cache, 'b', 30);
    expect(present(cache, 'amb')).toBe('am');
    await cache.unpin(m.hash);
    expect(present(cache, 'am')).toBe('m');
    expect(cache.usage().bytes).toBe(50);
    await cache.close();
  });

  it('a chunk stays pinned while any pin lists it; pinning again replaces the list', async () => {
    const cache = await openCache(make(), { quotaBytes: 100 });
    const [m1, m2] = [chunk('m', 1), chunk('n', 1)];
    await cache.pin(m1.hash, [chunk('a').hash, chunk('b').hash]);
    await cache.pin(m2.hash, [chunk('a').hash]);
    await cache.unpin(m1.hash);
    expect(cache.isPinned(chunk('a').hash)).toBe(true);
    expect(cache.isPinned(chunk('b').hash)).toBe(false);
    await cache.pin(m2.hash, [chunk('c').hash]);
    expect(cache.isPinned(chunk('a').hash)).toBe(false);
    expect(cache.isPinned(chunk('c').hash)).toBe(true);
    await cache.close();
  });

  it('keeps content, recency order and pins across close and reopen', async () => {
    const opener = make();
    const first = await openCache(opener, { quotaBytes: 400 });
    const m = chunk('m', 1);
    await first.pin(m.hash, [chunk('p').hash]);
    await putAll(first, 'pabc');
    await first.get(chunk('a').hash);
    await first.close();

    const second = await openCache(opener, { quotaBytes: 400 });
    expect(second.usage()).toEqual({ bytes: 400, chunks: 4, pinnedBytes: 100, quotaBytes: 400 });
    expect(second.isPinned(chunk('p').hash)).toBe(true);
    // LRU order after reopen: p (pinned), b, c, a.
    await putAll(second, 'd');
    expect(present(second, 'pabcd')).toBe('pacd');
    await putAll(second, 'e');
    expect(present(second, 'pacde')).toBe('pade');
    expect(await held(second, 'pade')).toBe('pade');
    await second.close();
  });

  it('evicts down to a quota lowered since the last run, least recently used first', async () => {
    const opener = make();
    const first = await openCache(opener, { quotaBytes: 400 });
    await putAll(first, 'abcd');
    await first.get(chunk('a').hash);
    await first.close();
    const second = await openCache(opener, { quotaBytes: 200 });
    expect(present(second, 'abcd')).toBe('ad');
    await second.close();
    // The eviction was written, not only decided.
    const third = await openCache(opener, { quotaBytes: 400 });
    expect(third.usage().chunks).toBe(2);
    expect(await held(third, 'abcd')).toBe('ad');
    await third.close();
  });

  it('after a crash keeps reads flushed, batched or explicitly, and forgets only recent ones', async () => {
    const opener = make();
    // Crash: the cache is never closed; a new one opens on the same medium.
    const crashed = await openCache(opener, { quotaBytes: 10_000 });
    await putAll(crashed, 'ab');
    await crashed.get(chunk('a').hash);
    const lost = await openCache(opener, { quotaBytes: 200 });
    await putAll(lost, 'c');
    expect(present(lost, 'abc')).toBe('bc');

    const opener2 = make();
    const flushed = await openCache(opener2, { quotaBytes: 10_000 });
    await putAll(flushed, 'ab');
    await flushed.get(chunk('a').hash);
    await flushed.flush();
    const kept = await openCache(opener2, { quotaBytes: 200 });
    await putAll(kept, 'c');
    expect(present(kept, 'abc')).toBe('ac');

    // Reads of CACHE_TOUCH_BATCH chunks write their recency without a flush.
    const opener3 = make();
    const busy = await openCache(opener3, { quotaBytes: 10_000 });
    const nth = (i: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, j) => (i + j * 5) & 0xff);
    for (let i = 0; i <= CACHE_TOUCH_BATCH; i++) await busy.put(nth(i), new Uint8Array([i]));
    for (let i = 0; i < CACHE_TOUCH_BATCH; i++) await busy.get(nth(i));
    const after = await openCache(opener3, { quotaBytes: 1 });
    // Without the batch written, the last chunk put would be the most recent.
    expect(after.has(nth(CACHE_TOUCH_BATCH - 1))).toBe(true);
    expect(after.usage().chunks).toBe(1);
    await Promise.all([
      lost.close(),
      kept.close(),
      after.close(),
      crashed.close(),
      flushed.close(),
      busy.close(),
    ]);
  });

  it('keeps exact accounting under concurrent puts and reads', async () => {
    const opener = make();
    const cache = await openCache(opener, { quotaBytes: 1000 });
    const names = 'abcdefghijklmnopqrst';
    await Promise.all(names.split('').map((n) => cache.put(chunk(n).hash, chunk(n).bytes)));
    const reads = await Promise.all(names.split('').map((n) => cache.get(chunk(n).hash)));
    expect(reads.filter((r) => r !== undefined)).toHaveLength(10);
    expect(cache.usage()).toEqual({ bytes: 1000, chunks: 10, pinnedBytes: 0, quotaBytes: 1000 });
    expect(present(cache, names)).toBe('klmnopqrst');
    await cache.close();
    const reopened = await openCache(opener, { quotaBytes: 1000 });
    expect(present(reopened, names)).toBe('klmnopqrst');
    expect(reopened.usage().bytes).toBe(1000);
    await reopened.close();
  });

  it('keeps the bytes as given even when the caller reuses its array before the write lands', async () => {
    const cache = await openCache(make(), { quotaBytes: 1000 });
    const given = chunk('a').bytes.slice();
    const put = cache.put(chunk('a').hash, given);
    given.fill(0);
    await put;
    expect(await held(cache, 'a')).toBe('a');
    await cache.close();
  });

  it('delete drops a chunk, pinned or not', async () => {
    const cache = await openCache(make(), { quotaBytes: 1000 });
    await cache.pin(chunk('m').hash, [chunk('a').hash]);
    await putAll(cache, 'ab');
    await cache.delete(chunk('a').hash);
    await cache.delete(chunk('z').hash);
    expect(present(cache, 'ab')).toBe('b');
    expect(await cache.get(chunk('a').hash)).toBeUndefined();
    expect(cache.usage().bytes).toBe(100);
    await cache.close();
  });

  it('after close, rejects with StorageError "closed"', async () => {
    const cache = await openCache(make(), { quotaBytes: 1000 });
    await putAll(cache, 'a');
    await cache.close();
    for (const call of [
      () => cache.get(chunk('a').hash),
      () => cache.put(chunk('b').hash, chunk('b').bytes),
      () => cache.pin(chunk('m').hash, []),
      () => cache.flush(),
    ]) {
      const e: unknown = await call().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(StorageError);
      expect((e as StorageError).code).toBe('closed');
    }
    await expect(cache.close()).resolves.toBeUndefined();
  });
});

describe('BlobCache over a failing medium', () => {
  it('treats a chunk the medium lost as a miss and stops counting it', async () => {
    const medium = new MemoryChunkMedium();
    const cache = await openBlobCache(memoryChunkStore(medium), { quotaBytes: 1000 });
    await putAll(cache, 'ab');
    medium.chunks.delete(bytesKey(chunk('a').hash));
    expect(await cache.get(chunk('a').hash)).toBeUndefined();
    expect(cache.has(chunk('a').hash)).toBe(false);
    expect(cache.usage().bytes).toBe(100);
    await cache.close();
  });

  it('a put the medium refuses rejects with its error and is not counted', async () => {
    const store = memoryChunkStore();
    const cache = await openBlobCache(
      {
        ...store,
        put: () => Promise.reject(new StorageError('quota', 'full')),
      },
      { quotaBytes: 1000 },
    );
    const e: unknown = await cache.put(chunk('a').hash, chunk('a').bytes).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect((e as StorageError).code).toBe('quota');
    expect(cache.has(chunk('a').hash)).toBe(false);
    expect(cache.usage().bytes).toBe(0);
    await cache.close();
  });

  it('a pin the medium refuses rejects and does not protect', async () => {
    const store = memoryChunkStore();
    const cache = await openBlobCache(
      { ...store, putPin: () => Promise.reject(new StorageError('io', 'broken')) },
      { quotaBytes: 100 },
    );
    await expect(cache.pin(chunk('m').hash, [chunk('a').hash])).rejects.toBeInstanceOf(StorageError);
    expect(cache.isPinned(chunk('a').hash)).toBe(false);
    await putAll(cache, 'ab');
    expect(present(cache, 'ab')).toBe('b');
    await cache.close();
  });

  it('refuses a negative or fractional quota, closing the store it was given', async () => {
    const store = memoryChunkStore();
    await expect(openBlobCache(store, { quotaBytes: -1 })).rejects.toBeInstanceOf(RangeError);
    await expect(store.entries()).rejects.toBeInstanceOf(StorageError);
    await expect(openBlobCache(memoryChunkStore(), { quotaBytes: 1.5 })).rejects.toBeInstanceOf(RangeError);
    await expect(openBlobCache(memoryChunkStore(), { quotaBytes: 1, maxChunks: -1 })).rejects.toBeInstanceOf(
      RangeError,
    );
  });

  it('closes the store when loading it fails', async () => {
    const store = memoryChunkStore();
    const failing = { ...store, pins: () => Promise.reject(new StorageError('corrupt', 'bad pin')) };
    await expect(openBlobCache(failing, { quotaBytes: 1 })).rejects.toBeInstanceOf(StorageError);
    await expect(store.entries()).rejects.toMatchObject({ code: 'closed' });
  });
});
