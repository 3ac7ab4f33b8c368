import { StorageError } from '../ports/storage.js';
import { bytesKey } from '../protocol/ids.js';
import type { ChunkEntry, ChunkPin, ChunkStore } from './chunkstore.js';

/**
 * The medium of {@link memoryChunkStore}: what survives `close()`, so a test can reopen a
 * store on it as it would reopen a database. Create one with `new MemoryChunkMedium()`.
 */
export class MemoryChunkMedium {
  readonly chunks = new Map<string, { readonly bytes: Uint8Array; readonly entry: ChunkEntry }>();
  readonly pins = new Map<string, ChunkPin>();
}

/**
 * A `ChunkStore` in memory, for tests and for peers that keep no cache. Its data lives in
 * `medium` (a new one by default), so closing and reopening on the same medium keeps it.
 * Copies bytes in and out, like a real medium. Calls take effect synchronously in call order,
 * so each is atomic.
 */
export function memoryChunkStore(medium: MemoryChunkMedium = new MemoryChunkMedium()): ChunkStore {
  let open = true;

  function run<T>(f: () => T): Promise<T> {
    if (!open) return Promise.reject(new StorageError('closed', 'chunk store is closed'));
    return Promise.resolve(f());
  }

  return {
    get: (hash) => run(() => medium.chunks.get(bytesKey(hash))?.bytes.slice()),

    put: (hash, bytes, used) =>
      run(() => {
        medium.chunks.set(bytesKey(hash), {
          bytes: bytes.slice(),
          entry: { hash: hash.slice(), size: bytes.length, used },
        });
      }),

    delete: (hashes) =>
      run(() => {
        for (const h of hashes) medium.chunks.delete(bytesKey(h));
      }),

    touch: (uses) =>
      run(() => {
        for (const { hash, used } of uses) {
          const k = bytesKey(hash);
          const c = medium.chunks.get(k);
          if (c !== undefined) medium.chunks.set(k, { bytes: c.bytes, entry: { ...c.entry, used } });
        }
      }),

    entries: () =>
      run(() => Array.from(medium.chunks.values(), ({ entry }) => ({ ...entry, hash: entry.hash.slice() }))),

    putPin: (pin) =>
      run(() => {
        medium.pins.set(bytesKey(pin.manifest), {
          manifest: pin.manifest.slice(),
          chunks: pin.chunks.map((c) => c.slice()),
        });
      }),

    deletePin: (manifest) =>
      run(() => {
        medium.pins.delete(bytesKey(manifest));
      }),

    pins: () =>
      run(() =>
        Array.from(medium.pins.values(), (p) => ({
          manifest: p.manifest.slice(),
          chunks: p.chunks.map((c) => c.slice()),
        })),
      ),

    close: () => {
      open = false;
      return Promise.resolve();
    },
  };
}
