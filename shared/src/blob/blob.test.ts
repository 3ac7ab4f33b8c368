import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../crypto/sha256.js';
import { webCryptoAead } from '../ports/aead.js';
import type { Aead } from '../ports/aead.js';
import { webRng } from '../ports/env.js';
import { encode } from '../protocol/cbor.js';
import type { CborValue } from '../protocol/cbor.js';
import { concatBytes, equalBytes, toHex } from '../protocol/ids.js';
import type { BlobRef as OpBlobRef } from '../protocol/op.js';
import { downloadBlob, encryptBlob, pinBlob, sealBlob, sealChunk, streamBlob, uploadBlob } from './blob.js';
import type { BlobRef, EncryptedChunk, SealDeps } from './blob.js';
import { openBlobCache } from './cache.js';
import type { BlobCache } from './cache.js';
import { memoryChunkStore } from './chunkstore.memory.js';
import { BlobError } from './errors.js';
import type { BlobErrorCode } from './errors.js';
import {
  BLOB_FETCH_CONCURRENCY,
  CHUNK_BYTES,
  CHUNK_TAG_BYTES,
  MAX_BLOB_BYTES,
  MAX_BLOB_CHUNKS,
  MAX_MANIFEST_CIPHERTEXT_BYTES,
} from './limits.js';
import { MANIFEST_VERSION, chunkCount, encodeManifest } from './manifest.js';
import type { BlobTransport } from './transport.js';
import { MemoryBlobTransport } from './transport.memory.js';

const aead = webCryptoAead();
const deps: SealDeps = { aead, rng: webRng };

/** Deterministic content: `size` bytes from `seed` (xorshift), cheap at a megabyte. */
function content(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Asserts equal bytes without rendering a megabyte on failure. */
function expectSameBytes(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBe(want.length);
  expect(equalBytes(got, want), 'bytes differ').toBe(true);
}

/** The `BlobError` code `p` rejects with; fails the test on anything else. */
async function codeOf(p: Promise<unknown>): Promise<BlobErrorCode> {
  const e: unknown = await p.then(
    () => expect.fail('expected a rejection'),
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(BlobError);
  return (e as BlobError).code;
}

/** A transport over `inner` that serves `alter(hash, bytes)` instead, and counts gets. */
function altered(
  inner: BlobTransport,
  alter: (hash: Uint8Array, bytes: Uint8Array | undefined) => Uint8Array | undefined,
): BlobTransport & { gets: number } {
  const t = {
    gets: 0,
    put: (hash: Uint8Array, chunk: Uint8Array) => inner.put(hash, chunk),
    get: async (hash: Uint8Array) => {
      t.gets++;
      return alter(hash, await inner.get(hash));
    },
  };
  return t;
}

async function stored(source: Uint8Array, mime = 'application/octet-stream') {
  const transport = new MemoryBlobTransport();
  const { ref, chunks } = await encryptBlob(source, mime, deps);
  for (const c of chunks) await transport.put(c.hash, c.bytes);
  return { transport, ref, chunks, data: chunks.slice(0, -1) };
}

async function cache(quotaBytes = 64 * 1024 * 1024): Promise<BlobCache> {
  return openBlobCache(memoryChunkStore(), { quotaBytes });
}

describe('round trip', () => {
  const sizes = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 4 * CHUNK_BYTES + 12_345];

  it.each(sizes)(
    '%i bytes come back exactly, in ceil(size / 256 KiB) chunks and a manifest',
    async (size) => {
      const source = content(size, size + 1);
      const transport = new MemoryBlobTransport();
      const ref = await uploadBlob(source, 'image/png', transport, deps);
      expect(ref.size).toBe(size);
      expect(ref.mime).toBe('image/png');
      expect(ref.key).toHaveLength(32);
      expect(ref.hash).toHaveLength(32);
      expect(transport.size).toBe(Math.ceil(size / CHUNK_BYTES) + 1);
      expectSameBytes(await downloadBlob(ref, transport, { aead }), source);

      const pieces: number[] = [];
      const parts: Uint8Array[] = [];
      for await (const piece of streamBlob(ref, transport, { aead })) {
        pieces.push(piece.length);
        parts.push(piece);
      }
      expect(pieces.every((n, i) => n === (i < pieces.length - 1 ? CHUNK_BYTES : n))).toBe(true);
      expect(pieces.reduce((a, b) => a + b, 0)).toBe(size);
      expectSameBytes(concatBytes(...parts), source);
    },
  );

  it('round-trips any size, content and MIME type (property, seeded)', async () => {
    const size = fc.oneof(
      fc.integer({ min: 0, max: 2048 }),
      fc
        .tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: -2, max: 2 }))
        .map(([k, d]) => k * CHUNK_BYTES + d),
    );
    const mime = fc
      .string({ maxLength: 30, unit: 'grapheme' })
      .filter((m) => new TextEncoder().encode(m).length <= 100);
    await fc.assert(
      fc.asyncProperty(
        size,
        fc.integer({ min: 1, max: 0x7fffffff }),
        mime,
        fc.boolean(),
        async (n, seed, m, streamed) => {
          const source = content(n, seed);
          const transport = new MemoryBlobTransport();
          const input = streamed ? pieces(source, seed) : source;
          const ref = await uploadBlob(input, m, transport, deps);
          expect(ref).toMatchObject({ size: n, mime: m });
          expect(transport.size).toBe(chunkCount(n) + 1);
          expectSameBytes(await downloadBlob(ref, transport, { aead }), source);
        },
      ),
      { numRuns: 25, seed: 20_260_101 },
    );
  });

  it('accepts an op’s reference (with its file name) as it is', async () => {
    const { transport, ref } = await stored(content(10));
    const fromOp: OpBlobRef = { ...ref, name: 'notes.txt' };
    expectSameBytes(await downloadBlob(fromOp, transport, { aead }), content(10));
  });
});

/** `source` as a stream of pieces of irregular sizes (some empty, some over a chunk). */
async function* pieces(source: Uint8Array, seed: number): AsyncGenerator<Uint8Array> {
  const sizes = [0, 1, 7, 1000, CHUNK_BYTES + 3, 65_536, CHUNK_BYTES - 1];
  let o = 0;
  for (let i = seed; o < source.length; i++) {
    const n = sizes[i % sizes.length] ?? 1;
    yield source.subarray(o, o + n);
    o += n;
  }
  await Promise.resolve();
}

describe('encryption', () => {
  it('makes chunks addressed by the SHA-256 of their ciphertext, manifest last, none holding the plaintext', async () => {
    const source = content(2 * CHUNK_BYTES + 5);
    const { ref, chunks } = await encryptBlob(source, 'text/plain', deps);
    expect(chunks.map((c) => c.bytes.length)).toEqual([
      CHUNK_BYTES + CHUNK_TAG_BYTES,
      CHUNK_BYTES + CHUNK_TAG_BYTES,
      5 + CHUNK_TAG_BYTES,
      expect.any(Number),
    ]);
    for (const c of chunks) expect(toHex(c.hash)).toBe(toHex(sha256(c.bytes)));
    expect(toHex(chunks.at(-1)?.hash ?? new Uint8Array(0))).toBe(toHex(ref.hash));
    const probe = toHex(source.subarray(1000, 1032));
    for (const c of chunks) expect(toHex(c.bytes)).not.toContain(probe);
  });

  it('uses a fresh key per blob: the same content twice shares no chunk address', async () => {
    const source = content(CHUNK_BYTES + 100);
    const a = await encryptBlob(source, 'x/y', deps);
    const b = await encryptBlob(source, 'x/y', deps);
    expect(toHex(a.ref.key)).not.toBe(toHex(b.ref.key));
    const addresses = new Set(a.chunks.map((c) => toHex(c.hash)));
    for (const c of b.chunks) expect(addresses.has(toHex(c.hash))).toBe(false);
  });

  it('cuts a stream into the same chunk layout as the same bytes in memory', async () => {
    const source = content(3 * CHUNK_BYTES + 77, 9);
    const fromStream = await encryptBlob(pieces(source, 3), 'a/b', deps);
    const fromBytes = await encryptBlob(source, 'a/b', deps);
    expect(fromStream.chunks.map((c) => c.bytes.length)).toEqual(fromBytes.chunks.map((c) => c.bytes.length));
    const transport = new MemoryBlobTransport();
    for (const c of fromStream.chunks) await transport.put(c.hash, c.bytes);
    expectSameBytes(await downloadBlob(fromStream.ref, transport, { aead }), source);
  });

  it('hands out each chunk before encrypting the next, and the manifest only after all data chunks', async () => {
    let encrypted = 0;
    const counting: Aead = {
      encrypt: (...args) => {
        encrypted++;
        return aead.encrypt(...args);
      },
      decrypt: (...args) => aead.decrypt(...args),
    };
    const seen: number[] = [];
    const emitted: EncryptedChunk[] = [];
    const ref = await sealBlob(
      content(3 * CHUNK_BYTES),
      'a/b',
      { aead: counting, rng: webRng },
      async (c) => {
        seen.push(encrypted);
        emitted.push(c);
        await new Promise((resolve) => setTimeout(resolve, 1));
      },
    );
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(toHex(emitted.at(-1)?.hash ?? new Uint8Array(0))).toBe(toHex(ref.hash));
  });

  it('uploads data chunks in order and the manifest last', async () => {
    const order: string[] = [];
    const inner = new MemoryBlobTransport();
    const recording: BlobTransport = {
      put: (hash, chunk) => {
        order.push(toHex(hash));
        return inner.put(hash, chunk);
      },
      get: (hash) => inner.get(hash),
    };
    const ref = await uploadBlob(content(2 * CHUNK_BYTES + 1), 'a/b', recording, deps);
    expect(order).toHaveLength(4);
    expect(order.at(-1)).toBe(toHex(ref.hash));
    expectSameBytes(await downloadBlob(ref, inner, { aead }), content(2 * CHUNK_BYTES + 1));
  });

  it('refuses a MIME type over 100 bytes or with a lone surrogate', async () => {
    expect(await codeOf(encryptBlob(content(1), 'a'.repeat(101), deps))).toBe('bad-mime');
    expect(await codeOf(encryptBlob(content(1), 'image/\uD800', deps))).toBe('bad-mime');
    await expect(encryptBlob(content(1), 'é'.repeat(50), deps)).resolves.toBeDefined();
  });

  it('refuses content over MAX_BLOB_BYTES: in memory before uploading anything, in a stream at the limit', async () => {
    const transport = new MemoryBlobTransport();
    expect(await codeOf(uploadBlob(new Uint8Array(MAX_BLOB_BYTES + 1), 'a/b', transport, deps))).toBe(
      'too-large',
    );
    expect(transport.size).toBe(0);

    // A stand-in cipher keeps this cheap: the limit does not depend on it.
    const cheap: Aead = {
      encrypt: (_k, _n, _a, plain) => Promise.resolve(plain.subarray(0, 16)),
      decrypt: () => Promise.reject(new Error('unused')),
    };
    const piece = new Uint8Array(CHUNK_BYTES);
    let emitted = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i <= MAX_BLOB_CHUNKS; i++) {
        await Promise.resolve();
        yield piece;
      }
    }
    const code = await codeOf(
      sealBlob(endless(), 'a/b', { aead: cheap, rng: webRng }, () => {
        emitted++;
      }),
    );
    expect(code).toBe('too-large');
    expect(emitted).toBe(MAX_BLOB_CHUNKS);
  });

  it('a transport failure rejects with "transport", keeping the cause', async () => {
    const cause = new Error('connection reset');
    const failing: BlobTransport = { put: () => Promise.reject(cause), get: () => Promise.reject(cause) };
    const e: unknown = await uploadBlob(content(5), 'a/b', failing, deps).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BlobError);
    expect((e as BlobError).code).toBe('transport');
    expect((e as BlobError).cause).toBe(cause);
    const { ref } = await stored(content(5));
    expect(await codeOf(downloadBlob(ref, failing, { aead }))).toBe('transport');
  });
});

describe('download verification', () => {
  const flip = (b: Uint8Array, at: number): Uint8Array => {
    const c = b.slice();
    c[at] = (c[at] ?? 0) ^ 1;
    return c;
  };

  it('rejects a data chunk served altered with "hash-mismatch"', async () => {
    const { transport, ref, data } = await stored(content(2 * CHUNK_BYTES));
    const target = toHex(data[1]?.hash ?? new Uint8Array(0));
    const evil = altered(transport, (h, b) => (b !== undefined && toHex(h) === target ? flip(b, 100) : b));
    expect(await codeOf(downloadBlob(ref, evil, { aead }))).toBe('hash-mismatch');
  });

  it('rejects a manifest served altered with "hash-mismatch"', async () => {
    const { transport, ref } = await stored(content(10));
    const evil = altered(transport, (h, b) => (b !== undefined && equalBytes(h, ref.hash) ? flip(b, 0) : b));
    expect(await codeOf(downloadBlob(ref, evil, { aead }))).toBe('hash-mismatch');
  });

  it('rejects the chunk of another blob, listed with its valid address, with "bad-chunk"', async () => {
    const a = await stored(content(2 * CHUNK_BYTES, 1));
    const b = await stored(content(2 * CHUNK_BYTES, 2));
    const foreign = b.data[1] as EncryptedChunk;
    await a.transport.put(foreign.hash, foreign.bytes);
    const manifest = await sealChunk(
      aead,
      a.ref.key,
      'manifest',
      encodeManifest({
        size: a.ref.size,
        mime: a.ref.mime,
        chunks: [(a.data[0] as EncryptedChunk).hash, foreign.hash],
      }),
    );
    await a.transport.put(manifest.hash, manifest.bytes);
    expect(await codeOf(downloadBlob({ ...a.ref, hash: manifest.hash }, a.transport, { aead }))).toBe(
      'bad-chunk',
    );
  });

  it('rejects a blob’s own chunks listed out of order with "bad-chunk"', async () => {
    const { transport, ref, data } = await stored(content(2 * CHUNK_BYTES));
    const swapped = await sealChunk(
      aead,
      ref.key,
      'manifest',
      encodeManifest({ size: ref.size, mime: ref.mime, chunks: [...data].reverse().map((c) => c.hash) }),
    );
    await transport.put(swapped.hash, swapped.bytes);
    expect(await codeOf(downloadBlob({ ...ref, hash: swapped.hash }, transport, { aead }))).toBe('bad-chunk');
  });

  it('rejects a wrong key with "bad-key": a random one, or another blob’s', async () => {
    const a = await stored(content(100, 1));
    const b = await stored(content(100, 2));
    expect(await codeOf(downloadBlob({ ...a.ref, key: webRng.randomBytes(32) }, a.transport, { aead }))).toBe(
      'bad-key',
    );
    expect(await codeOf(downloadBlob({ ...a.ref, key: b.ref.key }, a.transport, { aead }))).toBe('bad-key');
  });

  it('rejects a missing data chunk or manifest with "missing"', async () => {
    const one = await stored(content(CHUNK_BYTES + 1));
    one.transport.delete((one.data[1] as EncryptedChunk).hash);
    expect(await codeOf(downloadBlob(one.ref, one.transport, { aead }))).toBe('missing');
    const two = await stored(content(5));
    two.transport.delete(two.ref.hash);
    expect(await codeOf(downloadBlob(two.ref, two.transport, { aead }))).toBe('missing');
  });

  it('rejects a chunk whose length does not fit the manifest with "size-mismatch"', async () => {
    const { transport, ref, data } = await stored(content(CHUNK_BYTES + 10));
    const lying = await sealChunk(
      aead,
      ref.key,
      'manifest',
      encodeManifest({ size: CHUNK_BYTES + 20, mime: ref.mime, chunks: data.map((c) => c.hash) }),
    );
    await transport.put(lying.hash, lying.bytes);
    const lyingRef = { ...ref, hash: lying.hash, size: CHUNK_BYTES + 20 };
    expect(await codeOf(downloadBlob(lyingRef, transport, { aead }))).toBe('size-mismatch');
  });

  it('rejects chunks cut at other places than every 256 KiB with "size-mismatch", even streamed', async () => {
    // Written by hand with the key, as a misbehaving client could: 10 bytes, then a full chunk.
    const key = webRng.randomBytes(32);
    const transport = new MemoryBlobTransport();
    const first = await sealChunk(aead, key, 0, content(10));
    const second = await sealChunk(aead, key, 1, content(CHUNK_BYTES));
    const size = CHUNK_BYTES + 10;
    const manifest = await sealChunk(
      aead,
      key,
      'manifest',
      encodeManifest({ size, mime: 'a/b', chunks: [first.hash, second.hash] }),
    );
    for (const c of [first, second, manifest]) await transport.put(c.hash, c.bytes);
    const ref = { hash: manifest.hash, key, size, mime: 'a/b' };
    expect(await codeOf(downloadBlob(ref, transport, { aead }))).toBe('size-mismatch');
    const streamed = (async () => {
      for await (const piece of streamBlob(ref, transport, { aead })) expect(piece).toBeDefined();
    })();
    expect(await codeOf(streamed)).toBe('size-mismatch');
  });

  describe('malformed manifests are rejected with "bad-manifest"', () => {
    const hash = new Uint8Array(32).fill(7);
    const cases: [string, (ref: BlobRef, chunks: Uint8Array[]) => Uint8Array][] = [
      ['not CBOR', () => new Uint8Array([0xff, 0x00])],
      [
        'not an array',
        (r, c) =>
          encode(
            new Map<number, CborValue>([
              [1, r.size],
              [2, c],
            ]),
          ),
      ],
      ['unknown version', (r, c) => encode([MANIFEST_VERSION + 1, r.size, r.mime, c])],
      ['size as text', (r, c) => encode([MANIFEST_VERSION, String(r.size), r.mime, c])],
      ['MIME as bytes', (r, c) => encode([MANIFEST_VERSION, r.size, new Uint8Array(3), c])],
      ['a chunk too few', (r, c) => encode([MANIFEST_VERSION, r.size, r.mime, c.slice(1)])],
      ['a chunk too many', (r, c) => encode([MANIFEST_VERSION, r.size, r.mime, [...c, hash]])],
      [
        'a short hash',
        (r, c) => encode([MANIFEST_VERSION, r.size, r.mime, [c[0]?.subarray(1) ?? hash, ...c.slice(1)]]),
      ],
      ['a size other than the reference’s', (r, c) => encode([MANIFEST_VERSION, r.size - 1, r.mime, c])],
      [
        'a MIME type other than the reference’s',
        (r, c) => encode([MANIFEST_VERSION, r.size, 'text/html', c]),
      ],
      ['trailing bytes', (r, c) => new Uint8Array([...encode([MANIFEST_VERSION, r.size, r.mime, c]), 0])],
      [
        'non-canonical integer',
        (r, c) => {
          const good = encode([MANIFEST_VERSION, r.size, r.mime, c]);
          // [0x84, 0x01, ...] with the version 1 written in two bytes instead of one.
          return new Uint8Array([0x84, 0x18, 0x01, ...good.subarray(2)]);
        },
      ],
    ];
    it.each(cases)('%s', async (_, build) => {
      const { transport, ref, data } = await stored(content(CHUNK_BYTES + 5), 'text/plain');
      const bad = await sealChunk(
        aead,
        ref.key,
        'manifest',
        build(
          ref,
          data.map((c) => c.hash),
        ),
      );
      await transport.put(bad.hash, bad.bytes);
      expect(await codeOf(downloadBlob({ ...ref, hash: bad.hash }, transport, { aead }))).toBe(
        'bad-manifest',
      );
    });
  });

  it('rejects an oversize manifest with "too-large" before decrypting it', async () => {
    const { transport, ref } = await stored(content(5));
    const big = new Uint8Array(MAX_MANIFEST_CIPHERTEXT_BYTES + 1).fill(1);
    await transport.put(sha256(big), big);
    expect(await codeOf(downloadBlob({ ...ref, hash: sha256(big) }, transport, { aead }))).toBe('too-large');

    const claims = await sealChunk(
      aead,
      ref.key,
      'manifest',
      encode([MANIFEST_VERSION, MAX_BLOB_BYTES + 1, ref.mime, []]),
    );
    await transport.put(claims.hash, claims.bytes);
    expect(await codeOf(downloadBlob({ ...ref, hash: claims.hash }, transport, { aead }))).toBe('too-large');
  });

  it('rejects a malformed reference before fetching anything', async () => {
    const { transport, ref } = await stored(content(5));
    const counted = altered(transport, (_, b) => b);
    expect(await codeOf(downloadBlob({ ...ref, hash: ref.hash.subarray(1) }, counted, { aead }))).toBe(
      'bad-ref',
    );
    expect(await codeOf(downloadBlob({ ...ref, key: ref.key.subarray(16) }, counted, { aead }))).toBe(
      'bad-ref',
    );
    expect(await codeOf(downloadBlob({ ...ref, size: -1 }, counted, { aead }))).toBe('bad-ref');
    expect(await codeOf(downloadBlob({ ...ref, size: 1.5 }, counted, { aead }))).toBe('bad-ref');
    expect(await codeOf(downloadBlob({ ...ref, mime: 'x'.repeat(101) }, counted, { aead }))).toBe('bad-ref');
    expect(await codeOf(downloadBlob({ ...ref, size: MAX_BLOB_BYTES + 1 }, counted, { aead }))).toBe(
      'too-large',
    );
    expect(counted.gets).toBe(0);
  });

  it('fetches a bounded number of chunks ahead, more than one at a time', async () => {
    const { transport, ref } = await stored(content(6 * CHUNK_BYTES));
    let inFlight = 0;
    let most = 0;
    const slow: BlobTransport = {
      put: (h, c) => transport.put(h, c),
      get: async (h) => {
        most = Math.max(most, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight--;
        return transport.get(h);
      },
    };
    expectSameBytes(await downloadBlob(ref, slow, { aead }), content(6 * CHUNK_BYTES));
    expect(most).toBe(BLOB_FETCH_CONCURRENCY);
  });
});

describe('with the device cache', () => {
  it('a second download is served from the cache, without the transport', async () => {
    const source = content(2 * CHUNK_BYTES + 3);
    const { transport, ref } = await stored(source);
    const c = await cache();
    expectSameBytes(await downloadBlob(ref, transport, { aead, cache: c }), source);
    expect(c.usage().chunks).toBe(4);
    const empty = altered(new MemoryBlobTransport(), (_, b) => b);
    expectSameBytes(await downloadBlob(ref, empty, { aead, cache: c }), source);
    expect(empty.gets).toBe(0);
  });

  it('the author’s upload fills its cache, so it never downloads its own blob', async () => {
    const c = await cache();
    const source = content(CHUNK_BYTES + 1);
    const ref = await uploadBlob(source, 'a/b', new MemoryBlobTransport(), { ...deps, cache: c });
    expectSameBytes(await downloadBlob(ref, new MemoryBlobTransport(), { aead, cache: c }), source);
  });

  it('replaces a corrupted cached chunk with a verified copy from the transport', async () => {
    const source = content(CHUNK_BYTES + 9);
    const { transport, ref, data } = await stored(source);
    const c = await cache();
    const target = data[0] as EncryptedChunk;
    const bad = target.bytes.slice();
    bad[5] = (bad[5] ?? 0) ^ 0xff;
    await c.put(target.hash, bad);
    expectSameBytes(await downloadBlob(ref, transport, { aead, cache: c }), source);
    expect(toHex((await c.get(target.hash)) ?? new Uint8Array(0))).toBe(toHex(target.bytes));
  });

  it('a failing cache does not fail the download; its errors are reported', async () => {
    const source = content(100);
    const { transport, ref } = await stored(source);
    const broken: BlobCache = {
      ...(await cache()),
      get: () => Promise.reject(new Error('cache read failed')),
      put: () => Promise.reject(new Error('cache write failed')),
    };
    const errors: string[] = [];
    const got = await downloadBlob(ref, transport, {
      aead,
      cache: broken,
      onCacheError: (e) => errors.push(e instanceof Error ? e.message : String(e)),
    });
    expectSameBytes(got, source);
    expect(errors).toEqual([
      'cache read failed',
      'cache write failed',
      'cache read failed',
      'cache write failed',
    ]);
  });

  it('a pinned blob stays readable offline however much else passes through the cache', async () => {
    const source = content(2 * CHUNK_BYTES + 1, 5);
    const pinned = await stored(source);
    // The quota holds less than the pinned blob alone.
    const c = await cache(CHUNK_BYTES);
    await pinBlob(pinned.ref, pinned.transport, { aead, cache: c });
    expect(c.isPinned(pinned.ref.hash)).toBe(true);
    for (const chunk of pinned.chunks) expect(c.has(chunk.hash)).toBe(true);
    for (let i = 0; i < 3; i++) {
      const other = await stored(content(CHUNK_BYTES - 100, 10 + i));
      await downloadBlob(other.ref, other.transport, { aead, cache: c });
    }
    expectSameBytes(await downloadBlob(pinned.ref, new MemoryBlobTransport(), { aead, cache: c }), source);

    await c.unpin(pinned.ref.hash);
    const other = await stored(content(CHUNK_BYTES - 100, 20));
    await downloadBlob(other.ref, other.transport, { aead, cache: c });
    expect(await codeOf(downloadBlob(pinned.ref, new MemoryBlobTransport(), { aead, cache: c }))).toBe(
      'missing',
    );
  });

  it('pins with a zero quota: every chunk of the blob is kept, nothing else is', async () => {
    const source = content(CHUNK_BYTES + 1, 6);
    const { transport, ref } = await stored(source);
    const c = await cache(0);
    await pinBlob(ref, transport, { aead, cache: c });
    expect(c.usage().chunks).toBe(3);
    expectSameBytes(await downloadBlob(ref, new MemoryBlobTransport(), { aead, cache: c }), source);
    const other = await stored(content(10, 7));
    await downloadBlob(other.ref, other.transport, { aead, cache: c });
    expect(c.usage().chunks).toBe(3);
  });

  it('pinning a blob that cannot be fetched whole rejects and leaves nothing pinned', async () => {
    const { transport, ref, data } = await stored(content(CHUNK_BYTES + 1));
    transport.delete((data[1] as EncryptedChunk).hash);
    const c = await cache(10);
    expect(await codeOf(pinBlob(ref, transport, { aead, cache: c }))).toBe('missing');
    expect(c.isPinned(ref.hash)).toBe(false);
    expect(c.isPinned((data[0] as EncryptedChunk).hash)).toBe(false);
    expect(c.usage().bytes).toBeLessThanOrEqual(10);
  });
});
