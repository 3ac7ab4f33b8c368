/**
 * Blobs (ARCHITECTURE.md section 7): content too large to inline in an op (long posts,
 * attachments), encrypted in chunks and stored by relays that cannot read it.
 *
 * Format (version 1):
 * - The content is cut into data chunks of `CHUNK_BYTES` (the last one shorter; none for empty
 *   content). A random 32-byte key is drawn for the blob, and chunk `i` is encrypted with
 *   AES-256-GCM under it, nonce = `i` as 12 big-endian bytes, associated data "conclave/blob/1".
 * - A chunk's address is SHA-256 of its ciphertext (tag included).
 * - The manifest `[1, size, mime, [address...]]` (manifest.ts) is encrypted under the same key
 *   with the nonce of twelve 0xff bytes, which no chunk index reaches, and stored as a chunk.
 *   Its address is the blob's address: an op carries it with the key, size and MIME type.
 *
 * Why a counter nonce is safe: AES-GCM breaks only if a (key, nonce) pair encrypts two
 * different plaintexts. Each key here is fresh from the RNG and encrypts exactly one blob — it
 * is never derived from the content (no convergent encryption, which would let anyone holding
 * a file confirm who shared it) and never accepted from a caller — and within the blob every
 * chunk index and the manifest get distinct nonces. The nonce also binds a chunk to its
 * position: a chunk moved to another position, or taken from another blob, fails to open.
 *
 * Every chunk fetched is checked against its address before it is used, so a relay or cache
 * that serves other bytes is caught (`hash-mismatch`), and a manifest that lists a foreign
 * chunk is caught by the tag (`bad-chunk`).
 */
import { sha256 } from '../crypto/sha256.js';
import type { Aead } from '../ports/aead.js';
import type { Rng } from '../ports/env.js';
import { KEY_BYTES, HASH_BYTES, equalBytes, toHex } from '../protocol/ids.js';
import type { BlobRef as OpBlobRef } from '../protocol/op.js';
import type { BlobCache } from './cache.js';
import { BlobError } from './errors.js';
import {
  BLOB_FETCH_CONCURRENCY,
  CHUNK_BYTES,
  CHUNK_TAG_BYTES,
  MAX_BLOB_BYTES,
  MAX_CHUNK_CIPHERTEXT_BYTES,
  MAX_MANIFEST_CIPHERTEXT_BYTES,
} from './limits.js';
import { type Manifest, chunkPlainBytes, decodeManifest, encodeManifest, isValidMime } from './manifest.js';
import type { BlobTransport } from './transport.js';

/**
 * What names a blob: the manifest chunk's address (`hash`), the blob key, the plaintext size
 * in bytes and the MIME type. It is the op format's `BlobRef` (protocol/op.ts) without its
 * file name, so an op's reference is passed here as it is.
 */
export type BlobRef = Pick<OpBlobRef, 'hash' | 'key' | 'size' | 'mime'>;

/** An encrypted chunk and its address, SHA-256(bytes). */
export interface EncryptedChunk {
  readonly hash: Uint8Array;
  readonly bytes: Uint8Array;
}

/**
 * Content to store as a blob: bytes in memory, or a stream of pieces of any sizes (a file
 * read in slices), which is cut into chunks without holding more than one chunk of it.
 */
export type BlobSource = Uint8Array | AsyncIterable<Uint8Array>;

/** Where a chunk sits in its blob: a data chunk's index, or the manifest. */
export type ChunkPosition = number | 'manifest';

/** What encrypting needs. */
export interface SealDeps {
  readonly aead: Aead;
  /** Draws the blob key. */
  readonly rng: Rng;
}

/** What fetching and opening need. */
export interface OpenDeps {
  readonly aead: Aead;
  /**
   * The device cache, read before the transport and filled with what the transport served.
   * A cache failure does not fail the download: a failed read counts as a miss, a failed
   * write is skipped, and both go to `onCacheError`.
   */
  readonly cache?: BlobCache;
  readonly onCacheError?: (error: unknown) => void;
}

const NONCE_BYTES = 12;
const AD = new TextEncoder().encode('conclave/blob/1');

function nonce(position: ChunkPosition): Uint8Array {
  const n = new Uint8Array(NONCE_BYTES);
  if (position === 'manifest') return n.fill(0xff);
  if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`chunk index ${position}`);
  const view = new DataView(n.buffer);
  view.setUint32(4, Math.floor(position / 0x100000000));
  view.setUint32(8, position >>> 0);
  return n;
}

/**
 * Encrypts `plain` as the chunk at `position` of the blob with `key`: the format's primitive,
 * for tests and tools that build a blob by hand. The key must be one blob's alone (see the
 * module comment); {@link sealBlob} draws it itself.
 */
export async function sealChunk(
  aead: Aead,
  key: Uint8Array,
  position: ChunkPosition,
  plain: Uint8Array,
): Promise<EncryptedChunk> {
  const bytes = await aead.encrypt(key, nonce(position), AD, plain);
  return { hash: sha256(bytes), bytes };
}

/**
 * Encrypts `source` as a blob, handing each encrypted chunk to `emit` as soon as it exists and
 * awaiting it before encrypting the next, so no more than one chunk is held here: data chunks
 * in content order, then the manifest last (a sink that stores them in order never exposes a
 * manifest whose chunks it lacks). Resolves to the blob's reference.
 *
 * Errors: `BlobError('bad-mime')` for a MIME type over `MAX_BLOB_MIME_BYTES` or not
 * well-formed; `BlobError('too-large')` for content over `MAX_BLOB_BYTES` — for a `Uint8Array`
 * before anything is emitted, for a stream when the limit is crossed (chunks emitted by then
 * are left to the sink); whatever `emit` rejects with.
 */
export async function sealBlob(
  source: BlobSource,
  mime: string,
  deps: SealDeps,
  emit: (chunk: EncryptedChunk) => Promise<void> | void,
): Promise<BlobRef> {
  if (!isValidMime(mime)) throw new BlobError('bad-mime', 'MIME type too long or not well-formed');
  if (source instanceof Uint8Array && source.length > MAX_BLOB_BYTES) {
    throw new BlobError('too-large', `content of ${source.length} bytes`);
  }
  const key = deps.rng.randomBytes(KEY_BYTES);
  if (key.length !== KEY_BYTES) throw new Error(`the RNG returned ${key.length} bytes, not ${KEY_BYTES}`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const plain of plainChunks(source)) {
    if (size + plain.length > MAX_BLOB_BYTES) {
      throw new BlobError('too-large', `content over ${MAX_BLOB_BYTES} bytes`);
    }
    const chunk = await sealChunk(deps.aead, key, chunks.length, plain);
    size += plain.length;
    await emit(chunk);
    chunks.push(chunk.hash);
  }
  const manifest = await sealChunk(deps.aead, key, 'manifest', encodeManifest({ size, mime, chunks }));
  await emit(manifest);
  return { hash: manifest.hash, key, size, mime };
}

/**
 * Encrypts `source` as a blob and returns every chunk, manifest last. Holds the whole blob's
 * ciphertext; to send chunks as they are made, use {@link uploadBlob} or {@link sealBlob}.
 * Errors as {@link sealBlob}.
 */
export async function encryptBlob(
  source: BlobSource,
  mime: string,
  deps: SealDeps,
): Promise<{ ref: BlobRef; chunks: EncryptedChunk[] }> {
  const chunks: EncryptedChunk[] = [];
  const ref = await sealBlob(source, mime, deps, (c) => {
    chunks.push(c);
  });
  return { ref, chunks };
}

/**
 * Encrypts `source` and stores each chunk at the transport as it is made, manifest last, and
 * in `deps.cache` when given (the author then never downloads its own blob). Resolves to the
 * reference once every chunk is stored. Errors as {@link sealBlob}; a transport failure
 * rejects with its `BlobError`, or `BlobError('transport')` wrapping any other error.
 */
export async function uploadBlob(
  source: BlobSource,
  mime: string,
  transport: BlobTransport,
  deps: SealDeps & Omit<OpenDeps, 'aead'>,
): Promise<BlobRef> {
  return sealBlob(source, mime, deps, async (c) => {
    try {
      await transport.put(c.hash, c.bytes);
    } catch (e) {
      throw asTransportError(e, `storing chunk ${short(c.hash)}`);
    }
    await cacheQuietly(deps, (cache) => cache.put(c.hash, c.bytes));
  });
}

/**
 * The content of the blob `ref` names, fetched (cache first, then transport, filling the
 * cache), verified and decrypted. Fetches up to `BLOB_FETCH_CONCURRENCY` chunks ahead.
 *
 * Errors (`BlobError`): `bad-ref` or `too-large` for a reference out of bounds; `missing`
 * when a chunk is nowhere; `hash-mismatch` when a chunk's bytes are not its address's;
 * `too-large` for a chunk longer than its kind allows; `bad-key` when the manifest does not
 * open; `bad-manifest` when it is malformed or disagrees with `ref`; `bad-chunk` when a data
 * chunk does not open at its position; `size-mismatch` when a chunk's length does not fit the
 * manifest's size; `transport` when the transport fails.
 */
export async function downloadBlob(
  ref: BlobRef,
  transport: BlobTransport,
  deps: OpenDeps,
): Promise<Uint8Array> {
  checkRef(ref);
  const manifest = await openManifest(ref, transport, deps, false);
  const out = new Uint8Array(manifest.size);
  let offset = 0;
  for await (const plain of openChunks(ref, manifest, transport, deps, false)) {
    out.set(plain, offset);
    offset += plain.length;
  }
  if (offset !== manifest.size) {
    throw new BlobError('size-mismatch', `chunks hold ${offset} bytes, the manifest says ${manifest.size}`);
  }
  return out;
}

/**
 * The content of `ref` as its decrypted chunks, in order, each yielded once verified and
 * opened: for content to use before it has all arrived (media). Each piece is authentic and
 * in its place; a blob cut short is only known at the end, when the iteration rejects.
 * Errors as {@link downloadBlob}.
 */
export async function* streamBlob(
  ref: BlobRef,
  transport: BlobTransport,
  deps: OpenDeps,
): AsyncGenerator<Uint8Array, void, undefined> {
  checkRef(ref);
  const manifest = await openManifest(ref, transport, deps, false);
  yield* openChunks(ref, manifest, transport, deps, false);
}

/**
 * Pins the blob `ref` in `deps.cache`: fetches and verifies every chunk into the cache, where
 * they stay whatever the quota until `cache.unpin(ref.hash)`. The pin is taken before the
 * first fetch, so a busy cache cannot evict the chunks already fetched. Cache failures reject
 * here (a pin the cache cannot keep is no pin). On any failure the blob is left unpinned.
 * Errors as {@link downloadBlob}, plus the cache's `StorageError`.
 */
export async function pinBlob(
  ref: BlobRef,
  transport: BlobTransport,
  deps: OpenDeps & { readonly cache: BlobCache },
): Promise<void> {
  checkRef(ref);
  const { cache } = deps;
  await cache.pin(ref.hash, []);
  try {
    const manifest = await openManifest(ref, transport, deps, true);
    await cache.pin(ref.hash, manifest.chunks);
    for await (const _ of openChunks(ref, manifest, transport, deps, true)) {
      // Opening each chunk proves the pinned blob readable, not merely stored.
    }
  } catch (e) {
    await cache.unpin(ref.hash).catch(() => undefined);
    throw e;
  }
}

function checkRef(ref: BlobRef): void {
  if (ref.hash.length !== HASH_BYTES) throw new BlobError('bad-ref', `hash of ${ref.hash.length} bytes`);
  if (ref.key.length !== KEY_BYTES) throw new BlobError('bad-ref', `key of ${ref.key.length} bytes`);
  if (!Number.isSafeInteger(ref.size) || ref.size < 0) throw new BlobError('bad-ref', `size ${ref.size}`);
  if (ref.size > MAX_BLOB_BYTES) throw new BlobError('too-large', `reference declares ${ref.size} bytes`);
  if (!isValidMime(ref.mime)) throw new BlobError('bad-ref', 'MIME type too long or not well-formed');
}

async function openManifest(
  ref: BlobRef,
  transport: BlobTransport,
  deps: OpenDeps,
  strict: boolean,
): Promise<Manifest> {
  const sealed = await fetchChunk(ref.hash, MAX_MANIFEST_CIPHERTEXT_BYTES, transport, deps, strict);
  let plain: Uint8Array;
  try {
    plain = await deps.aead.decrypt(ref.key, nonce('manifest'), AD, sealed);
  } catch (e) {
    throw new BlobError('bad-key', `manifest ${short(ref.hash)} does not open with this key`, { cause: e });
  }
  const decoded = decodeManifest(plain);
  if (!decoded.ok) throw decoded.error;
  const { manifest } = decoded;
  if (manifest.size !== ref.size) {
    throw new BlobError('bad-manifest', `manifest says ${manifest.size} bytes, the reference ${ref.size}`);
  }
  if (manifest.mime !== ref.mime)
    throw new BlobError('bad-manifest', 'manifest and reference differ in MIME type');
  return manifest;
}

/** The data chunks of `manifest`, opened in order, with a bounded window of fetches ahead. */
async function* openChunks(
  ref: BlobRef,
  manifest: Manifest,
  transport: BlobTransport,
  deps: OpenDeps,
  strict: boolean,
): AsyncGenerator<Uint8Array, void, undefined> {
  const open = async (index: number, hash: Uint8Array): Promise<Uint8Array> => {
    const sealed = await fetchChunk(hash, MAX_CHUNK_CIPHERTEXT_BYTES, transport, deps, strict);
    const expected = chunkPlainBytes(manifest.size, index) + CHUNK_TAG_BYTES;
    if (sealed.length !== expected) {
      throw new BlobError('size-mismatch', `chunk ${index} is ${sealed.length} bytes, not ${expected}`);
    }
    try {
      return await deps.aead.decrypt(ref.key, nonce(index), AD, sealed);
    } catch (e) {
      throw new BlobError('bad-chunk', `chunk ${index} (${short(hash)}) does not open at its position`, {
        cause: e,
      });
    }
  };
  const ahead: Promise<Uint8Array>[] = [];
  let next = 0;
  const launch = (): void => {
    const hash = manifest.chunks[next];
    if (hash === undefined) return;
    const p = open(next++, hash);
    // Awaited in turn below; this only keeps a failure ahead of a failure already thrown quiet.
    p.catch(() => undefined);
    ahead.push(p);
  };
  while (ahead.length < BLOB_FETCH_CONCURRENCY && next < manifest.chunks.length) launch();
  for (let p = ahead.shift(); p !== undefined; p = ahead.shift()) {
    const plain = await p;
    launch();
    yield plain;
  }
}

/**
 * The verified chunk under `hash`: from the cache when it holds a valid copy (an invalid one
 * is dropped), else from the transport, then cached. `strict`: cache failures reject instead
 * of going to `onCacheError`.
 */
async function fetchChunk(
  hash: Uint8Array,
  maxBytes: number,
  transport: BlobTransport,
  deps: OpenDeps,
  strict: boolean,
): Promise<Uint8Array> {
  const cached = await cacheQuietly(deps, (cache) => cache.get(hash), strict);
  if (cached !== undefined) {
    if (cached.length <= maxBytes && equalBytes(sha256(cached), hash)) return cached;
    await cacheQuietly(deps, (cache) => cache.delete(hash), strict);
  }
  let got: Uint8Array | undefined;
  try {
    got = await transport.get(hash);
  } catch (e) {
    throw asTransportError(e, `fetching chunk ${short(hash)}`);
  }
  if (got === undefined) throw new BlobError('missing', `chunk ${short(hash)} is not available`);
  if (got.length > maxBytes) throw new BlobError('too-large', `chunk ${short(hash)} of ${got.length} bytes`);
  if (!equalBytes(sha256(got), hash))
    throw new BlobError('hash-mismatch', `chunk ${short(hash)} was served altered`);
  const verified = got;
  await cacheQuietly(deps, (cache) => cache.put(hash, verified), strict);
  return got;
}

async function cacheQuietly<T>(
  deps: Omit<OpenDeps, 'aead'>,
  f: (cache: BlobCache) => Promise<T>,
  strict = false,
): Promise<T | undefined> {
  if (deps.cache === undefined) return undefined;
  try {
    return await f(deps.cache);
  } catch (e) {
    if (strict) throw e;
    deps.onCacheError?.(e);
    return undefined;
  }
}

/** `source` cut into plaintext chunks of `CHUNK_BYTES`, the last shorter; views, not copies, of a `Uint8Array`. */
async function* plainChunks(source: BlobSource): AsyncGenerator<Uint8Array, void, undefined> {
  if (source instanceof Uint8Array) {
    for (let o = 0; o < source.length; o += CHUNK_BYTES) yield source.subarray(o, o + CHUNK_BYTES);
    return;
  }
  let buf = new Uint8Array(CHUNK_BYTES);
  let fill = 0;
  for await (const piece of source) {
    for (let o = 0; o < piece.length;) {
      const n = Math.min(CHUNK_BYTES - fill, piece.length - o);
      buf.set(piece.subarray(o, o + n), fill);
      fill += n;
      o += n;
      if (fill === CHUNK_BYTES) {
        yield buf;
        buf = new Uint8Array(CHUNK_BYTES);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill);
}

function asTransportError(e: unknown, what: string): BlobError {
  if (e instanceof BlobError) return e;
  return new BlobError('transport', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

function short(hash: Uint8Array): string {
  return toHex(hash.subarray(0, 8));
}
