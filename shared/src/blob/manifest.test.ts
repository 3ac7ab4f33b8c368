import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encode } from '../protocol/cbor.js';
import { toHex } from '../protocol/ids.js';
import { BlobError } from './errors.js';
import { CHUNK_BYTES, MAX_BLOB_BYTES, MAX_BLOB_CHUNKS, MAX_MANIFEST_BYTES } from './limits.js';
import { MANIFEST_VERSION, chunkCount, decodeManifest, encodeManifest, isValidMime } from './manifest.js';
import type { Manifest } from './manifest.js';

const hashes = (n: number): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => Uint8Array.from({ length: 32 }, (_, j) => (i * 31 + j) & 0xff));

const view = (m: Manifest) => ({ size: m.size, mime: m.mime, chunks: m.chunks.map(toHex) });

function decoded(bytes: Uint8Array): Manifest {
  const r = decodeManifest(bytes);
  if (!r.ok) throw r.error;
  return r.manifest;
}

function failure(bytes: Uint8Array): BlobError {
  const r = decodeManifest(bytes);
  if (r.ok) return expect.fail('expected the manifest to be refused');
  expect(r.error).toBeInstanceOf(BlobError);
  return r.error;
}

describe('manifest codec', () => {
  it.each([0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, MAX_BLOB_BYTES])(
    'round-trips a manifest of a %i-byte blob',
    (size) => {
      const m: Manifest = { size, mime: 'video/mp4', chunks: hashes(chunkCount(size)) };
      const bytes = encodeManifest(m);
      expect(view(decoded(bytes))).toEqual(view(m));
      expect(toHex(encodeManifest(decoded(bytes)))).toBe(toHex(bytes));
    },
  );

  it('the largest manifest (400 chunks, a 100-byte MIME type) fits MAX_MANIFEST_BYTES', () => {
    const m: Manifest = { size: MAX_BLOB_BYTES, mime: 'm'.repeat(100), chunks: hashes(MAX_BLOB_CHUNKS) };
    const bytes = encodeManifest(m);
    expect(bytes.length).toBeLessThanOrEqual(MAX_MANIFEST_BYTES);
    expect(decoded(bytes).chunks).toHaveLength(MAX_BLOB_CHUNKS);
  });

  it('refuses bytes over MAX_MANIFEST_BYTES and a size over MAX_BLOB_BYTES with "too-large"', () => {
    expect(failure(new Uint8Array(MAX_MANIFEST_BYTES + 1)).code).toBe('too-large');
    expect(failure(encode([MANIFEST_VERSION, MAX_BLOB_BYTES + 1, 'a/b', []])).code).toBe('too-large');
  });

  it('refuses a negative size, a chunk list that does not fit the size and a MIME type over 100 bytes', () => {
    expect(failure(encode([MANIFEST_VERSION, -1, 'a/b', []])).code).toBe('bad-manifest');
    expect(failure(encode([MANIFEST_VERSION, 0, 'a/b', hashes(1)])).code).toBe('bad-manifest');
    expect(failure(encode([MANIFEST_VERSION, CHUNK_BYTES + 1, 'a/b', hashes(1)])).code).toBe('bad-manifest');
    expect(failure(encode([MANIFEST_VERSION, 1, 'a'.repeat(101), hashes(1)])).code).toBe('bad-manifest');
  });

  it('never throws on arbitrary bytes (property, seeded)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const r = decodeManifest(bytes);
        if (r.ok) expect(toHex(encodeManifest(r.manifest))).toBe(toHex(bytes));
      }),
      { numRuns: 500, seed: 42 },
    );
  });

  it('encodeManifest throws for a manifest outside its invariants (a bug in the caller)', () => {
    expect(() => encodeManifest({ size: 5, mime: 'a/b', chunks: [] })).toThrow(RangeError);
    expect(() => encodeManifest({ size: -1, mime: 'a/b', chunks: [] })).toThrow(RangeError);
    expect(() => encodeManifest({ size: MAX_BLOB_BYTES + 1, mime: 'a/b', chunks: hashes(401) })).toThrow(
      RangeError,
    );
    expect(() => encodeManifest({ size: 0, mime: 'x'.repeat(101), chunks: [] })).toThrow(RangeError);
  });
});

describe('isValidMime', () => {
  it('accepts well-formed text up to 100 UTF-8 bytes, a leading BOM included', () => {
    expect(isValidMime('')).toBe(true);
    expect(isValidMime('a'.repeat(100))).toBe(true);
    expect(isValidMime('é'.repeat(50))).toBe(true);
    expect(isValidMime('\uFEFFtext/plain')).toBe(true);
    expect(isValidMime('😀/x')).toBe(true);
  });

  it('refuses 101 bytes and lone surrogates', () => {
    expect(isValidMime('a'.repeat(101))).toBe(false);
    expect(isValidMime('é'.repeat(50) + 'a')).toBe(false);
    expect(isValidMime('a/\uD800')).toBe(false);
    expect(isValidMime('\uDC00')).toBe(false);
  });
});
