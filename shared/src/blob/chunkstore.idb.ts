import { wrap } from 'idb';
import type { DBSchema, IDBPDatabase, IDBPTransaction, StoreNames } from 'idb';
import { StorageError } from '../ports/storage.js';
import type { ChunkEntry, ChunkPin, ChunkStore } from './chunkstore.js';
import { type Bytes, abortAndThrow, idbConnection, own, quiet } from '../ports/idb.js';

/** Schema version of the database; bump it with a migration in `openDatabase`. */
const SCHEMA_VERSION = 1;

interface EntryRecord {
  readonly hash: Bytes;
  readonly size: number;
  readonly used: number;
}

interface PinRecord {
  readonly manifest: Bytes;
  readonly chunks: readonly Bytes[];
}

interface Schema extends DBSchema {
  chunks: { key: Bytes; value: Bytes };
  entries: { key: Bytes; value: EntryRecord };
  pins: { key: Bytes; value: PinRecord };
}

/**
 * A `ChunkStore` in IndexedDB (ARCHITECTURE.md section 10), through the `idb` wrapper.
 *
 * Layout: `chunks` maps a hash to the chunk's bytes; `entries` holds `{hash, size, used}` per
 * chunk, so `entries()` reads no chunk bytes; `pins` holds `{manifest, chunks}`. `put` and
 * `delete` write both stores in one transaction. Byte arrays are stored trimmed to their own
 * bytes (a view into a larger buffer would otherwise store the whole buffer).
 *
 * `factory` defaults to `globalThis.indexedDB`; in Node tests import `fake-indexeddb/auto` and
 * pass a fresh `new IDBFactory()`. Errors as the port says; the store closes itself (then
 * rejects `closed`) when another connection upgrades or deletes the database.
 */
export async function idbChunkStore(name: string, factory?: IDBFactory): Promise<ChunkStore> {
  const conn = await idbConnection(factory, name, openDatabase, 'chunk store');
  const attempt = conn.attempt;
  const shut = conn.shut;

  /** Runs `body` in a readwrite transaction over `stores`; aborts it if `body` throws, so nothing is half-written. */
  async function write<S extends StoreNames<Schema>>(
    db: IDBPDatabase<Schema>,
    stores: S[],
    body: (tx: IDBPTransaction<Schema, S[], 'readwrite'>) => Promise<unknown>,
  ): Promise<void> {
    const tx = db.transaction(stores, 'readwrite');
    const done = quiet(tx.done);
    try {
      await body(tx);
      await done;
    } catch (e) {
      await abortAndThrow(tx, done, e);
    }
  }

  return {
    get: (hash) =>
      attempt('get', async (db) => {
        const v: unknown = await db.get('chunks', own(hash));
        if (v === undefined || v instanceof Uint8Array) return v;
        throw new StorageError('corrupt', 'a chunk record is not bytes');
      }),

    put: (hash, bytes, used) =>
      attempt('put', (db) =>
        write(db, ['chunks', 'entries'], (tx) => {
          const key = own(hash);
          return Promise.all([
            quiet(tx.objectStore('chunks').put(own(bytes), key)),
            quiet(tx.objectStore('entries').put({ hash: key, size: bytes.length, used })),
          ]);
        }),
      ),

    delete: (hashes) =>
      attempt('delete', (db) =>
        write(db, ['chunks', 'entries'], (tx) => {
          const chunks = tx.objectStore('chunks');
          const entries = tx.objectStore('entries');
          return Promise.all(
            hashes.flatMap((h) => {
              const key = own(h);
              return [quiet(chunks.delete(key)), quiet(entries.delete(key))];
            }),
          );
        }),
      ),

    touch: (uses) =>
      attempt('touch', (db) =>
        write(db, ['entries'], async (tx) => {
          const entries = tx.objectStore('entries');
          const found = await Promise.all(uses.map((u) => quiet(entries.get(own(u.hash)))));
          const puts: Promise<unknown>[] = [];
          for (const [i, r] of found.entries()) {
            const use = uses[i];
            if (r !== undefined && use !== undefined) {
              const e = readEntry(r);
              puts.push(quiet(entries.put({ hash: own(e.hash), size: e.size, used: use.used })));
            }
          }
          await Promise.all(puts);
        }),
      ),

    entries: () => attempt('entries', async (db) => (await db.getAll('entries')).map((r) => readEntry(r))),

    putPin: (pin) =>
      attempt('putPin', async (db) => {
        await db.put('pins', { manifest: own(pin.manifest), chunks: pin.chunks.map(own) });
      }),

    deletePin: (manifest) =>
      attempt('deletePin', async (db) => {
        await db.delete('pins', own(manifest));
      }),

    pins: () => attempt('pins', async (db) => (await db.getAll('pins')).map((r) => readPin(r))),

    close: () => {
      shut('chunk store is closed');
      return Promise.resolve();
    },
  };
}

async function openDatabase(f: IDBFactory, name: string): Promise<IDBPDatabase<Schema>> {
  const request = f.open(name, SCHEMA_VERSION);
  request.addEventListener('upgradeneeded', (event) => {
    const raw = request.result;
    if (event.oldVersion < 1) {
      raw.createObjectStore('chunks');
      raw.createObjectStore('entries', { keyPath: 'hash' });
      raw.createObjectStore('pins', { keyPath: 'manifest' });
    }
  });
  const db = await wrap(request);
  if (db === undefined) throw new Error('open returned no database');
  return db as unknown as IDBPDatabase<Schema>;
}

function readEntry(r: unknown): ChunkEntry {
  if (
    typeof r === 'object' &&
    r !== null &&
    'hash' in r &&
    'size' in r &&
    'used' in r &&
    r.hash instanceof Uint8Array &&
    Number.isSafeInteger(r.size) &&
    Number.isSafeInteger(r.used)
  ) {
    return { hash: r.hash, size: r.size as number, used: r.used as number };
  }
  throw new StorageError('corrupt', 'a chunk entry is malformed');
}

function readPin(r: unknown): ChunkPin {
  if (
    typeof r === 'object' &&
    r !== null &&
    'manifest' in r &&
    'chunks' in r &&
    r.manifest instanceof Uint8Array &&
    Array.isArray(r.chunks) &&
    r.chunks.every((c) => c instanceof Uint8Array)
  ) {
    return { manifest: r.manifest, chunks: r.chunks };
  }
  throw new StorageError('corrupt', 'a pin record is malformed');
}
