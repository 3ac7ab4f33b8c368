/**
 * The blob manifest (ARCHITECTURE.md section 7): what a blob's reference points to. Encoded as
 * canonical CBOR with fixed positions, `[v, size, mime, [chunkHash...]]`, then encrypted as a
 * chunk of its own, so a relay sees neither the MIME type nor how the chunks belong together.
 */
import { type CborValue, type DecodeLimits, encode, tryDecode } from '../protocol/cbor.js';
import { HASH_BYTES } from '../protocol/ids.js';
import { BlobError } from './errors.js';
import {
  CHUNK_BYTES,
  MAX_BLOB_BYTES,
  MAX_BLOB_CHUNKS,
  MAX_BLOB_MIME_BYTES,
  MAX_MANIFEST_BYTES,
} from './limits.js';

/** Version of the blob format: chunk size, nonces and manifest layout. */
export const MANIFEST_VERSION = 1;

/** A decoded manifest. Its invariants hold for every value `decodeManifest` returns. */
export interface Manifest {
  /** Bytes of plaintext in the blob, at most `MAX_BLOB_BYTES`. */
  readonly size: number;
  /** The MIME type, at most `MAX_BLOB_MIME_BYTES` of UTF-8. */
  readonly mime: string;
  /**
   * SHA-256 of each encrypted data chunk, in content order; exactly `chunkCount(size)` of
   * them (none for an empty blob).
   */
  readonly chunks: readonly Uint8Array[];
}

const LIMITS: DecodeLimits = {
  maxBytes: MAX_MANIFEST_BYTES,
  maxArrayLength: MAX_BLOB_CHUNKS,
  maxStringBytes: Math.max(MAX_BLOB_MIME_BYTES, HASH_BYTES),
  maxDepth: 2,
};

const utf8 = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text to keep, as the CBOR decoder keeps it.
const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** Data chunks of a blob of `size` bytes. */
export function chunkCount(size: number): number {
  return Math.ceil(size / CHUNK_BYTES);
}

/** Plaintext bytes of data chunk `index` of a blob of `size` bytes. */
export function chunkPlainBytes(size: number, index: number): number {
  return Math.min(CHUNK_BYTES, size - index * CHUNK_BYTES);
}

/** Whether `mime` is text a manifest and an op can carry: well-formed, within its byte limit. */
export function isValidMime(mime: string): boolean {
  // Encoding replaces a lone surrogate with U+FFFD, so only well-formed text survives the round trip.
  const bytes = utf8.encode(mime);
  return bytes.length <= MAX_BLOB_MIME_BYTES && utf8Decoder.decode(bytes) === mime;
}

/** The canonical encoding of `m`. Throws for a manifest outside its invariants (a bug). */
export function encodeManifest(m: Manifest): Uint8Array {
  if (!Number.isSafeInteger(m.size) || m.size < 0 || m.size > MAX_BLOB_BYTES) {
    throw new RangeError(`manifest size ${m.size} out of range`);
  }
  if (m.chunks.length !== chunkCount(m.size))
    throw new RangeError('manifest chunk count does not fit its size');
  if (!isValidMime(m.mime)) throw new RangeError('manifest MIME type too long or malformed');
  return encode([MANIFEST_VERSION, m.size, m.mime, m.chunks]);
}

export type ManifestResult =
  { readonly ok: true; readonly manifest: Manifest } | { readonly ok: false; readonly error: BlobError };

/**
 * Decodes a manifest at the boundary: canonical CBOR within the manifest limits, the known
 * version, and a chunk list that fits the size. Never throws for bad input: `too-large` for
 * a size over `MAX_BLOB_BYTES` or bytes over `MAX_MANIFEST_BYTES`, `bad-manifest` otherwise.
 */
export function decodeManifest(bytes: Uint8Array): ManifestResult {
  const bad = (code: 'bad-manifest' | 'too-large', why: string): ManifestResult => ({
    ok: false,
    error: new BlobError(code, `manifest: ${why}`),
  });
  if (bytes.length > MAX_MANIFEST_BYTES) return bad('too-large', `${bytes.length} bytes`);
  const decoded = tryDecode(bytes, LIMITS);
  if (!decoded.ok) return bad('bad-manifest', `${decoded.error.code}: ${decoded.error.message}`);
  const v: CborValue = decoded.value;
  if (!Array.isArray(v) || v.length !== 4) return bad('bad-manifest', 'not an array of 4 fields');
  const [version, size, mime, chunks] = v as readonly CborValue[];
  if (version !== MANIFEST_VERSION) return bad('bad-manifest', 'unknown version');
  if (typeof size !== 'number' || size < 0) return bad('bad-manifest', 'size is not an unsigned integer');
  if (size > MAX_BLOB_BYTES) return bad('too-large', `declares ${size} bytes`);
  if (typeof mime !== 'string') return bad('bad-manifest', 'MIME type is not text');
  if (!isValidMime(mime)) return bad('bad-manifest', 'MIME type too long');
  if (!Array.isArray(chunks)) return bad('bad-manifest', 'chunks is not an array');
  const list = chunks as readonly CborValue[];
  if (list.length !== chunkCount(size)) {
    return bad('bad-manifest', `${list.length} chunks for ${size} bytes`);
  }
  const hashes: Uint8Array[] = [];
  for (const h of list) {
    if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES)
      return bad('bad-manifest', 'a chunk hash is not 32 bytes');
    hashes.push(h);
  }
  return { ok: true, manifest: { size, mime, chunks: hashes } };
}
