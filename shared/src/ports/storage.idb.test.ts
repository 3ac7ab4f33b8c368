import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { toHex } from '../protocol/ids.js';
import type { OpId, SpaceId } from '../protocol/ids.js';
import { runStorageTests } from './storage.conformance.js';
import { idbStorage } from './storage.idb.js';
import type { IdbStorageOptions } from './storage.idb.js';
import { StorageError } from './storage.js';
import type { Storage, StoredOp } from './storage.js';

let dbCount = 0;
const freshName = (): string => `conclave-test-${++dbCount}`;

runStorageTests('IndexedDB (fake-indexeddb)', () => idbStorage(freshName(), new IDBFactory()));

const space = Uint8Array.from({ length: 16 }, (_, i) => i + 1) as SpaceId;

function makeOp(n: number): StoredOp {
  const sealed = Uint8Array.from({ length: 40 }, (_, i) => (i * n + 3) & 0xff);
  return {
    opId: Uint8Array.from({ length: 32 }, (_, i) => (i + n * 31) & 0xff) as OpId,
    sealed,
    op: sealed.slice(8),
  };
}

async function snapshot(store: Storage): Promise<{ ops: string[]; heads: string[]; count: number }> {
  const ops: string[] = [];
  for await (const op of store.listOps(space)) ops.push(toHex(op.sealed));
  return { ops, heads: (await store.getHeads(space)).map(toHex), count: await store.countOps(space) };
}

async function rejection(p: Promise<unknown>): Promise<StorageError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(StorageError);
  return e as StorageError;
}

describe('idbStorage', () => {
  describe('putOp is all-or-nothing', () => {
    async function failMidway(
      hook: NonNullable<IdbStorageOptions['afterOpWrite']>,
    ): Promise<{ error: StorageError; before: unknown; after: unknown; store: Storage; op: StoredOp }> {
      let armed = false;
      const store = await idbStorage(freshName(), new IDBFactory(), {
        afterOpWrite: (tx) => {
          if (armed) hook(tx);
        },
      });
      const first = makeOp(1);
      await store.putOp(space, first, [first.opId]);
      const before = await snapshot(store);
      const op = makeOp(2);
      armed = true;
      const error = await rejection(store.putOp(space, op, [op.opId]));
      armed = false;
      expect(await store.hasOp(space, op.opId)).toBe(false);
      expect(await store.getOp(space, op.opId)).toBeUndefined();
      return { error, before, after: await snapshot(store), store, op };
    }

    it('keeps neither op nor heads when the transaction aborts between the two writes', async () => {
      const { error, before, after, store, op } = await failMidway((tx) => {
        tx.abort();
      });
      expect(error.code).toBe('io');
      expect(after).toEqual(before);
      // Nothing half-written blocks a retry.
      expect(await store.putOp(space, op, [op.opId])).toBe(true);
      expect(await store.countOps(space)).toBe(2);
      await store.close();
    });

    it('keeps neither op nor heads when an exception interrupts the transaction', async () => {
      const { error, before, after, store } = await failMidway(() => {
        throw new Error('interrupted');
      });
      expect(error.code).toBe('io');
      expect(error.cause).toBeInstanceOf(Error);
      expect(after).toEqual(before);
      await store.close();
    });

    it('reports QuotaExceededError as "quota"', async () => {
      const { error, before, after, store } = await failMidway(() => {
        throw new DOMException('the disk is full', 'QuotaExceededError');
      });
      expect(error.code).toBe('quota');
      expect(after).toEqual(before);
      await store.close();
    });
  });

  it('putOps keeps no op of the batch, nor the heads, when its transaction aborts midway', async () => {
    let armed = false;
    const store = await idbStorage(freshName(), new IDBFactory(), {
      afterOpWrite: (tx) => {
        if (armed) tx.abort();
      },
    });
    const first = makeOp(1);
    await store.putOp(space, first, [first.opId]);
    const before = await snapshot(store);
    const batch = [makeOp(2), makeOp(3), makeOp(4)];
    armed = true;
    const error = await rejection(store.putOps(space, batch, [batch[2]?.opId ?? first.opId]));
    armed = false;
    expect(error.code).toBe('io');
    expect(await snapshot(store)).toEqual(before);
    for (const op of batch) expect(await store.hasOp(space, op.opId)).toBe(false);
    expect(await store.putOps(space, batch, [first.opId])).toBe(3);
    expect(await store.countOps(space)).toBe(4);
    await store.close();
  });

  it('keeps everything across close and reopen, and continues the order', async () => {
    const factory = new IDBFactory();
    const name = freshName();
    const other = Uint8Array.from({ length: 16 }, () => 0xcc) as SpaceId;
    const ops = [makeOp(1), makeOp(2), makeOp(3)];

    const first = await idbStorage(name, factory);
    for (const op of ops) await first.putOp(space, op, [op.opId]);
    await first.putOp(other, ops[0] as StoredOp, []);
    await first.putMeta('cursor', new Uint8Array([5, 6]));
    const before = await snapshot(first);
    await first.close();

    const second = await idbStorage(name, factory);
    expect(await snapshot(second)).toEqual(before);
    expect((await second.listSpaces()).map(toHex).sort()).toEqual([toHex(space), toHex(other)].sort());
    expect(toHex((await second.getMeta('cursor')) ?? new Uint8Array(0))).toBe('0506');
    expect(await second.putOp(space, ops[1] as StoredOp, [])).toBe(false);
    const next = makeOp(4);
    expect(await second.putOp(space, next, [next.opId])).toBe(true);
    expect((await snapshot(second)).ops).toEqual([...before.ops, toHex(next.sealed)]);
    await second.close();
  });

  it('closes itself rather than block another connection deleting the database', async () => {
    const factory = new IDBFactory();
    const name = freshName();
    const store = await idbStorage(name, factory);
    await store.putMeta('k', new Uint8Array([1]));
    await new Promise<void>((resolve, reject) => {
      const request = factory.deleteDatabase(name);
      request.onsuccess = () => {
        resolve();
      };
      request.onerror = () => {
        reject(new Error('delete failed'));
      };
    });
    expect((await rejection(store.getMeta('k'))).code).toBe('closed');
  });

  it('rejects a record not of the shape it writes with "corrupt"', async () => {
    const factory = new IDBFactory();
    const name = freshName();
    const op = makeOp(1);
    const store = await idbStorage(name, factory);
    await store.putOp(space, op, [op.opId]);
    await store.close();

    await new Promise<void>((resolve, reject) => {
      const request = factory.open(name);
      request.onsuccess = () => {
        const db = request.result;
        const tx = db.transaction(['ops', 'heads'], 'readwrite');
        tx.objectStore('ops').put({ space, opId: op.opId, sealed: 'not bytes', op: op.op, seq: 0 });
        tx.objectStore('heads').put({ heads: 'nope', count: 1 }, new Uint8Array(space));
        tx.oncomplete = () => {
          db.close();
          resolve();
        };
        tx.onerror = () => {
          reject(new Error('write failed'));
        };
      };
    });

    const reopened = await idbStorage(name, factory);
    expect((await rejection(reopened.getOp(space, op.opId))).code).toBe('corrupt');
    expect((await rejection(reopened.getHeads(space))).code).toBe('corrupt');
    await reopened.close();
  });

  it('rejects with "io" when IndexedDB is unavailable', async () => {
    const saved = globalThis.indexedDB;
    try {
      Object.defineProperty(globalThis, 'indexedDB', {
        value: undefined,
        configurable: true,
        writable: true,
      });
      expect((await rejection(idbStorage(freshName()))).code).toBe('io');
    } finally {
      Object.defineProperty(globalThis, 'indexedDB', { value: saved, configurable: true, writable: true });
    }
  });
});
