/**
 * The durable half of the device's chunk cache (ARCHITECTURE.md sections 7 and 10): encrypted
 * chunks by hash, a small entry per chunk (size and last use) so the cache can rebuild its LRU
 * order on start without reading any chunk, and the pins that keep blobs from eviction.
 * `BlobCache` (cache.ts) owns the policy; a store only keeps what it is told.
 *
 * Implementations: in memory (chunkstore.memory.ts), IndexedDB (chunkstore.idb.ts). Both run
 * `runChunkStoreTests` (chunkstore.conformance.ts).
 *
 * Every method is atomic: after a crash its writes are all there or none is. Byte arrays are
 * copied in and out, so neither side's later changes reach the other. Errors: methods reject
 * with `StorageError` (ports/storage.ts) — `closed` after `close()`, `quota` when the medium is
 * full, `corrupt` for a record not of the shape written, `io` otherwise.
 */
export interface ChunkStore {
  /** The bytes stored under `hash`, or `undefined`. Changes nothing (no recency update). */
  get(hash: Uint8Array): Promise<Uint8Array | undefined>;
  /**
   * Stores `bytes` under `hash` with the entry `{size: bytes.length, used}`, replacing any
   * chunk and entry already there. The store does not check that `hash` is the bytes' hash.
   */
  put(hash: Uint8Array, bytes: Uint8Array, used: number): Promise<void>;
  /** Removes these chunks and their entries; absent hashes are ignored. */
  delete(hashes: readonly Uint8Array[]): Promise<void>;
  /** Sets the `used` stamp of each chunk present; absent hashes are ignored (not created). */
  touch(uses: readonly ChunkUse[]): Promise<void>;
  /** Every stored chunk's entry, in no particular order, without its bytes. */
  entries(): Promise<ChunkEntry[]>;
  /** Stores a pin, replacing one with the same manifest. */
  putPin(pin: ChunkPin): Promise<void>;
  /** Removes the pin of `manifest`, if any. */
  deletePin(manifest: Uint8Array): Promise<void>;
  /** Every stored pin, in no particular order. */
  pins(): Promise<ChunkPin[]>;
  /** Closes the store; every later call rejects with `StorageError('closed')`. A second close resolves. */
  close(): Promise<void>;
}

/** A recency update: chunk `hash` was last used at `used`. */
export interface ChunkUse {
  readonly hash: Uint8Array;
  /** A use stamp: larger is more recent. A counter of the cache, not a time. Safe integer. */
  readonly used: number;
}

/** What a store knows of one chunk without reading it. */
export interface ChunkEntry extends ChunkUse {
  /** Bytes of the chunk. */
  readonly size: number;
}

/** A pinned blob: its manifest's hash and the hashes of its data chunks. */
export interface ChunkPin {
  readonly manifest: Uint8Array;
  readonly chunks: readonly Uint8Array[];
}
