import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../ports/storage.js';
import { runChunkStoreTests } from './chunkstore.conformance.js';
import { idbChunkStore } from './chunkstore.idb.js';

let dbCount = 0;
const freshName = (): string => `conclave-chunks-test-${++dbCount}`;

runChunkStoreTests('IndexedDB (fake-indexeddb)', () => {
  const factory = new IDBFactory();
  const name = freshName();
  return () => idbChunkStore(name, factory);
});

async function rejection(p: Promise<unknown>): Promise<StorageError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(StorageError);
  return e as StorageError;
}

/** Writes raw records behind the store's back, as a damaged or foreign database would hold. */
function writeRaw(
  factory: IDBFactory,
  name: string,
  write: (db: IDBDatabase) => IDBTransaction,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const request = factory.open(name);
    request.onsuccess = () => {
      const db = request.result;
      const tx = write(db);
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onerror = () => {
        reject(new Error('write failed'));
      };
    };
  });
}

describe('idbChunkStore', () => {
  const h = Uint8Array.from({ length: 32 }, (_, i) => i);

  it('rejects records not of the shape it writes with "corrupt"', async () => {
    const factory = new IDBFactory();
    const name = freshName();
    const store = await idbChunkStore(name, factory);
    await store.put(h, new Uint8Array([1, 2, 3]), 1);
    await store.close();
    await writeRaw(factory, name, (db) => {
      const tx = db.transaction(['chunks', 'entries', 'pins'], 'readwrite');
      tx.objectStore('chunks').put('not bytes', h);
      tx.objectStore('entries').put({ hash: h, size: 'three', used: 1 });
      tx.objectStore('pins').put({ manifest: h, chunks: ['x'] });
      return tx;
    });
    const reopened = await idbChunkStore(name, factory);
    expect((await rejection(reopened.get(h))).code).toBe('corrupt');
    expect((await rejection(reopened.entries())).code).toBe('corrupt');
    expect((await rejection(reopened.pins())).code).toBe('corrupt');
    await reopened.close();
  });

  it('closes itself rather than block another connection deleting the database', async () => {
    const factory = new IDBFactory();
    const name = freshName();
    const store = await idbChunkStore(name, factory);
    await store.put(h, new Uint8Array([1]), 1);
    await new Promise<void>((resolve, reject) => {
      const request = factory.deleteDatabase(name);
      request.onsuccess = () => {
        resolve();
      };
      request.onerror = () => {
        reject(new Error('delete failed'));
      };
    });
    expect((await rejection(store.get(h))).code).toBe('closed');
  });

  it('rejects with "io" when IndexedDB is unavailable', async () => {
    const saved = globalThis.indexedDB;
    try {
      Object.defineProperty(globalThis, 'indexedDB', {
        value: undefined,
        configurable: true,
        writable: true,
      });
      expect((await rejection(idbChunkStore(freshName()))).code).toBe('io');
    } finally {
      Object.defineProperty(globalThis, 'indexedDB', { value: saved, configurable: true, writable: true });
    }
  });
});
