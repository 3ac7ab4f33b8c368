/**
 * Limits of the blob format and of the device's chunk cache (ARCHITECTURE.md section 7), each
 * with its unit and why it has its value. Decoders and downloads enforce them before they
 * allocate. The format limits (chunk and manifest sizes) are also what a relay enforces on
 * upload, so they belong with `protocol/limits.ts` once the blob protocol reaches the relay.
 */
import { MAX_MIME_BYTES } from '../protocol/limits.js';

/**
 * Bytes. Plaintext of one data chunk; every chunk but the last is exactly this long, the last
 * holds the rest (1 byte to this). Large enough that the per-chunk overhead (16-byte tag,
 * 34-byte manifest entry, one request) stays under 0.1 %; small enough that a chunk is one
 * short request, a relay buffers little per upload, and a cache evicts at a fine grain.
 */
export const CHUNK_BYTES = 256 * 1024;

/** Bytes. The AES-GCM tag appended to every encrypted chunk. */
export const CHUNK_TAG_BYTES = 16;

/** Bytes. The largest encrypted chunk a client accepts and a relay should store. */
export const MAX_CHUNK_CIPHERTEXT_BYTES = CHUNK_BYTES + CHUNK_TAG_BYTES;

/**
 * Bytes. The largest blob: a few minutes of phone video. A download is assembled in memory
 * (in a worker), so this bounds what one download allocates; relays' quotas count in it too.
 */
export const MAX_BLOB_BYTES = 100 * 1024 * 1024;

/** Chunks. Data chunks of the largest blob (the manifest is one more). */
export const MAX_BLOB_CHUNKS = MAX_BLOB_BYTES / CHUNK_BYTES;

/** Bytes (UTF-8). A blob's MIME type: the op format's limit (section 3). */
export const MAX_BLOB_MIME_BYTES = MAX_MIME_BYTES;

/**
 * Bytes. An encoded manifest: 400 hashes of 34 bytes, a MIME type of 102 and a few heads
 * come to about 13.7 KiB. Far under a chunk, so a manifest is one chunk like any other.
 */
export const MAX_MANIFEST_BYTES = 16 * 1024;

/** Bytes. The largest encrypted manifest accepted: checked before it is decrypted. */
export const MAX_MANIFEST_CIPHERTEXT_BYTES = MAX_MANIFEST_BYTES + CHUNK_TAG_BYTES;

/**
 * Requests. Chunks a download fetches ahead of the one it decrypts: hides a round trip to a
 * relay per chunk, and holds at most this many chunks (1 MiB) beyond the one in use.
 */
export const BLOB_FETCH_CONCURRENCY = 4;

/**
 * Chunks. Default bound on the chunks a device cache keeps whatever their sizes: the cache
 * holds an index entry (about 150 bytes) per chunk in memory, so this bounds that to ~10 MB
 * even when many small blobs (one manifest and one short chunk each) fill the byte quota.
 */
export const DEFAULT_CACHE_MAX_CHUNKS = 65_536;

/**
 * Entries. Recency updates of cache reads kept in memory before they are written: a read
 * then costs no write, and a crash forgets at most this many recencies (the LRU order gets
 * a little less exact, nothing is lost). Written also on `flush()` and `close()`.
 */
export const CACHE_TOUCH_BATCH = 64;
