import { StorageError } from '../ports/storage.js';
import { bytesKey } from '../protocol/ids.js';
import type { ChunkEntry, ChunkPin, ChunkStore, ChunkUse } from './chunkstore.js';
import { CACHE_TOUCH_BATCH, DEFAULT_CACHE_MAX_CHUNKS } from './limits.js';

/**
 * The device's cache of encrypted chunks (ARCHITECTURE.md section 7): bounded by a quota in
 * bytes, evicting the least recently used chunks beyond it, except the chunks of pinned blobs
 * (a member may pin a Space's blobs to keep and serve them). Persisted in a `ChunkStore`, so
 * content, recency order and pins survive a restart.
 *
 * The cache holds ciphertext and does not verify it: readers check every chunk against its
 * hash (`downloadBlob` does, and drops a cached chunk that fails).
 *
 * Errors: methods reject with the store's `StorageError` (`closed` after `close()`).
 */
export interface BlobCache {
  /** The chunk under `hash`, or `undefined`; a hit makes it the most recently used. */
  get(hash: Uint8Array): Promise<Uint8Array | undefined>;
  /**
   * Keeps `bytes` under `hash` as the most recently used chunk, then evicts least recently
   * used unpinned chunks until the cache is within its quota — possibly this one, when pinned
   * chunks fill the quota. A chunk already cached is only marked used (chunks are content-
   * addressed: same hash, same bytes). An unpinned chunk larger than the whole quota is not kept.
   */
  put(hash: Uint8Array, bytes: Uint8Array): Promise<void>;
  /** Drops the chunk under `hash` (pinned or not), e.g. one that failed its hash check. */
  delete(hash: Uint8Array): Promise<void>;
  /** Whether a chunk is cached under `hash` (no recency update). */
  has(hash: Uint8Array): boolean;
  /**
   * Pins a blob: its manifest chunk `manifest` and its data `chunks` are never evicted while
   * the pin stands, whether cached already or put later. Pinning a manifest again replaces its
   * chunk list. Pinned chunks count toward the quota; a quota below the pinned bytes leaves no
   * room for anything else.
   */
  pin(manifest: Uint8Array, chunks: readonly Uint8Array[]): Promise<void>;
  /** Removes the pin of `manifest` (if any); its chunks become evictable, and are evicted now if the cache is over quota. */
  unpin(manifest: Uint8Array): Promise<void>;
  /** Whether the chunk under `hash` is protected by a pin. */
  isPinned(hash: Uint8Array): boolean;
  /** What the cache holds now. */
  usage(): BlobCacheUsage;
  /** Writes the pending recency updates (reads batch them, see `CACHE_TOUCH_BATCH`). */
  flush(): Promise<void>;
  /** Flushes and closes the store; later calls reject with `StorageError('closed')`. */
  close(): Promise<void>;
}

export interface BlobCacheUsage {
  /** Bytes of all cached chunks, pinned included. */
  readonly bytes: number;
  /** Cached chunks. */
  readonly chunks: number;
  /** Bytes of cached chunks that are pinned. */
  readonly pinnedBytes: number;
  readonly quotaBytes: number;
}

export interface BlobCacheOptions {
  /** Bytes of chunks the cache keeps (pinned chunks may exceed it). Non-negative integer. */
  readonly quotaBytes: number;
  /** Chunks the cache keeps at most, whatever their size; default `DEFAULT_CACHE_MAX_CHUNKS`. */
  readonly maxChunks?: number;
}

interface Slot {
  readonly hash: Uint8Array;
  readonly size: number;
  used: number;
}

/**
 * Opens the cache on `store`, which it then owns (`close()` closes it). Loads every entry and
 * pin (no chunk bytes), restores the LRU order and evicts down to the quota, which may have
 * shrunk since the last run. Rejects with the store's error if that fails, or `RangeError` for
 * options out of range, having closed the store.
 */
export async function openBlobCache(store: ChunkStore, options: BlobCacheOptions): Promise<BlobCache> {
  const maxChunks = options.maxChunks ?? DEFAULT_CACHE_MAX_CHUNKS;
  try {
    if (!Number.isSafeInteger(options.quotaBytes) || options.quotaBytes < 0) {
      throw new RangeError(`quotaBytes must be a non-negative integer, not ${options.quotaBytes}`);
    }
    if (!Number.isSafeInteger(maxChunks) || maxChunks < 0) {
      throw new RangeError(`maxChunks must be a non-negative integer, not ${maxChunks}`);
    }
    const [entries, pins] = await Promise.all([store.entries(), store.pins()]);
    const cache = new LruCache(store, options.quotaBytes, maxChunks);
    cache.load(entries, pins);
    await cache.enforce();
    return cache;
  } catch (e) {
    await store.close();
    throw e;
  }
}

/**
 * The in-memory index is the truth during a session and changes synchronously, in call order;
 * store writes follow it through one queue, so they land in that order too. A write that
 * fails leaves the store holding more than the index (never less of what the index claims,
 * except that `get` treats a vanished chunk as a miss), which the next open reconciles.
 */
class LruCache implements BlobCache {
  /** Insertion order is recency order: the first entry is the least recently used. */
  readonly #index = new Map<string, Slot>();
  /** Pinned manifest → the keys its pin protects (the manifest's included). */
  readonly #pins = new Map<string, readonly string[]>();
  /** Chunk key → how many pins protect it. */
  readonly #pinCount = new Map<string, number>();
  /** Recency updates not yet written. */
  readonly #dirty = new Map<string, ChunkUse>();
  #bytes = 0;
  #clock = 0;
  #closed = false;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: ChunkStore,
    private readonly quotaBytes: number,
    private readonly maxChunks: number,
  ) {}

  load(entries: readonly ChunkEntry[], pins: readonly ChunkPin[]): void {
    for (const e of [...entries].sort((a, b) => a.used - b.used)) {
      this.#index.set(bytesKey(e.hash), { hash: e.hash, size: e.size, used: e.used });
      this.#bytes += e.size;
      this.#clock = Math.max(this.#clock, e.used);
    }
    for (const p of pins) this.#addPin(p.manifest, p.chunks);
  }

  async enforce(): Promise<void> {
    const evicted = this.#evict();
    if (evicted.length > 0) await this.#enqueue(() => this.store.delete(evicted));
  }

  get(hash: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.#closed) return closed();
    const k = bytesKey(hash);
    const slot = this.#index.get(k);
    if (slot === undefined) return Promise.resolve(undefined);
    this.#touch(k, slot);
    const read = this.#enqueue(async () => {
      const bytes = await this.store.get(slot.hash);
      if (bytes === undefined && this.#index.get(k) === slot) {
        // The medium lost it (cleared by the browser, say): forget it here too.
        this.#forget(k, slot);
        await this.store.delete([slot.hash]);
      }
      return bytes;
    });
    if (this.#dirty.size >= CACHE_TOUCH_BATCH) {
      // A lost recency update costs only LRU precision, so a failed write is not the reader's error.
      this.#enqueue(() => this.#writeTouches()).catch(() => undefined);
    }
    return read;
  }

  put(hash: Uint8Array, bytes: Uint8Array): Promise<void> {
    if (this.#closed) return closed();
    const k = bytesKey(hash);
    const existing = this.#index.get(k);
    if (existing !== undefined) {
      this.#touch(k, existing);
      return Promise.resolve();
    }
    if (!this.#pinCount.has(k) && bytes.length > this.quotaBytes) return Promise.resolve();
    const slot: Slot = { hash: hash.slice(), size: bytes.length, used: ++this.#clock };
    this.#index.set(k, slot);
    this.#bytes += slot.size;
    const evicted = this.#evict();
    const kept = this.#index.get(k) === slot;
    // Copied now: the caller may reuse its array before the queued write runs.
    const copy = kept ? bytes.slice() : undefined;
    return this.#enqueue(async () => {
      if (evicted.length > 0) await this.store.delete(evicted);
      if (copy === undefined) return;
      try {
        await this.store.put(slot.hash, copy, slot.used);
      } catch (e) {
        if (this.#index.get(k) === slot) this.#forget(k, slot);
        throw e;
      }
    });
  }

  delete(hash: Uint8Array): Promise<void> {
    if (this.#closed) return closed();
    const k = bytesKey(hash);
    const slot = this.#index.get(k);
    if (slot !== undefined) this.#forget(k, slot);
    const h = hash.slice();
    return this.#enqueue(() => this.store.delete([h]));
  }

  has(hash: Uint8Array): boolean {
    return this.#index.has(bytesKey(hash));
  }

  pin(manifest: Uint8Array, chunks: readonly Uint8Array[]): Promise<void> {
    if (this.#closed) return closed();
    const m = manifest.slice();
    const list = chunks.map((c) => c.slice());
    const mk = bytesKey(m);
    const before = this.#pins.get(mk);
    this.#removePin(mk);
    const added = this.#addPin(m, list);
    return this.#enqueue(async () => {
      try {
        await this.store.putPin({ manifest: m, chunks: list });
      } catch (e) {
        // Not persisted: undo it in memory too, unless pinned again since.
        if (this.#pins.get(mk) === added) {
          this.#removePin(mk);
          if (before !== undefined) this.#restorePin(mk, before);
        }
        throw e;
      }
    });
  }

  unpin(manifest: Uint8Array): Promise<void> {
    if (this.#closed) return closed();
    const m = manifest.slice();
    this.#removePin(bytesKey(m));
    const evicted = this.#evict();
    return this.#enqueue(async () => {
      await this.store.deletePin(m);
      if (evicted.length > 0) await this.store.delete(evicted);
    });
  }

  isPinned(hash: Uint8Array): boolean {
    return this.#pinCount.has(bytesKey(hash));
  }

  usage(): BlobCacheUsage {
    let pinnedBytes = 0;
    for (const k of this.#pinCount.keys()) pinnedBytes += this.#index.get(k)?.size ?? 0;
    return { bytes: this.#bytes, chunks: this.#index.size, pinnedBytes, quotaBytes: this.quotaBytes };
  }

  flush(): Promise<void> {
    if (this.#closed) return closed();
    return this.#enqueue(() => this.#writeTouches());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#enqueue(() => this.#writeTouches());
    } finally {
      await this.#tail;
      await this.store.close();
    }
  }

  #enqueue<T>(f: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(f);
    this.#tail = p.catch(() => undefined);
    return p;
  }

  #touch(k: string, slot: Slot): void {
    slot.used = ++this.#clock;
    this.#index.delete(k);
    this.#index.set(k, slot);
    this.#dirty.set(k, { hash: slot.hash, used: slot.used });
  }

  #forget(k: string, slot: Slot): void {
    this.#index.delete(k);
    this.#dirty.delete(k);
    this.#bytes -= slot.size;
  }

  /** Drops least recently used unpinned chunks from the index until within bounds; their hashes. */
  #evict(): Uint8Array[] {
    const out: Uint8Array[] = [];
    const over = (): boolean => this.#bytes > this.quotaBytes || this.#index.size > this.maxChunks;
    if (!over()) return out;
    for (const [k, slot] of this.#index) {
      if (!over()) break;
      if (this.#pinCount.has(k)) continue;
      this.#forget(k, slot);
      out.push(slot.hash);
    }
    return out;
  }

  async #writeTouches(): Promise<void> {
    if (this.#dirty.size === 0) return;
    const uses = [...this.#dirty.values()];
    this.#dirty.clear();
    await this.store.touch(uses);
  }

  #addPin(manifest: Uint8Array, chunks: readonly Uint8Array[]): readonly string[] {
    const keys = [...new Set([bytesKey(manifest), ...chunks.map(bytesKey)])];
    this.#restorePin(bytesKey(manifest), keys);
    return keys;
  }

  #restorePin(mk: string, keys: readonly string[]): void {
    this.#pins.set(mk, keys);
    for (const k of keys) this.#pinCount.set(k, (this.#pinCount.get(k) ?? 0) + 1);
  }

  #removePin(mk: string): void {
    const keys = this.#pins.get(mk);
    if (keys === undefined) return;
    this.#pins.delete(mk);
    for (const k of keys) {
      const n = (this.#pinCount.get(k) ?? 0) - 1;
      if (n > 0) this.#pinCount.set(k, n);
      else this.#pinCount.delete(k);
    }
  }
}

function closed(): Promise<never> {
  return Promise.reject(new StorageError('closed', 'blob cache is closed'));
}
