import { wrap } from 'idb';
import type { DBSchema, IDBPDatabase } from 'idb';
import { bytesKey, compareBytes } from '../protocol/ids.js';
import type { OpId, SpaceId } from '../protocol/ids.js';
import { StorageError } from './storage.js';
import type { Storage, StoredOp } from './storage.js';
import { type Bytes, abortAndThrow, idbConnection, own, quiet } from './idb.js';

/** Schema version of the database; bump it with a migration in `openDatabase`. */
const SCHEMA_VERSION = 1;
/** Ops read per transaction by `listOps`: bounds both memory held and transaction length. */
const LIST_BATCH = 500;

interface OpRecord {
  readonly space: Bytes;
  readonly opId: Bytes;
  readonly sealed: Bytes;
  readonly op: Bytes;
  /** The opened content of a post, thread or edit, when this device could open it. */
  readonly content?: Bytes;
  /** Position in the Space's insertion order: 0, 1, 2… */
  readonly seq: number;
}

interface HeadsRecord {
  readonly heads: readonly Bytes[];
  /** Ops stored in the Space, which is also the next `seq`. */
  readonly count: number;
}

interface Schema extends DBSchema {
  ops: { key: [Bytes, Bytes]; value: OpRecord; indexes: { bySeq: [Bytes, number] } };
  // IndexedDB hands binary keys back as ArrayBuffer.
  heads: { key: Bytes | ArrayBuffer; value: HeadsRecord };
  meta: { key: string; value: Bytes };
}

/** Options of {@link idbStorage}. */
export interface IdbStorageOptions {
  /**
   * Test-only: called inside `putOp`'s transaction after the op's write is issued and before
   * the heads' write, so a test can abort (or throw) there and check that nothing is kept.
   */
  readonly afterOpWrite?: (tx: { abort(): void }) => void;
}

/**
 * A `Storage` in IndexedDB (ARCHITECTURE.md section 10), through the `idb` wrapper.
 *
 * Layout: `ops` keyed by `[space, opId]` with a unique index `bySeq` on `[space, seq]` giving
 * each Space's insertion order; `heads` keyed by space holding the sorted heads and the op
 * count; `meta` keyed by string. `putOp` checks for the op and writes it and the heads in one
 * readwrite transaction, so it is all-or-nothing; `listOps` reads {@link LIST_BATCH} ops per
 * short transaction, so a consumer may await anything between items. Byte arrays are stored
 * trimmed to their own bytes (a view into a larger buffer would otherwise store the whole buffer).
 *
 * `factory` defaults to `globalThis.indexedDB`. `idb` and the key ranges need the IndexedDB
 * globals (`IDBRequest`, `IDBKeyRange`…) of the same implementation as `factory`: in Node
 * tests, import `fake-indexeddb/auto` and pass a fresh `new IDBFactory()` per store.
 *
 * Errors: rejects with `StorageError` — `quota` when the origin's quota is exhausted, `corrupt`
 * when a record read back is not of the shape written, `closed` after `close()` or once another
 * connection upgrades or deletes the database (this one closes itself rather than block it),
 * `io` for any other failure, including failing to open. A second `close()` resolves.
 */
export async function idbStorage(
  name: string,
  factory?: IDBFactory,
  options: IdbStorageOptions = {},
): Promise<Storage> {
  const conn = await idbConnection(factory, name, openDatabase, 'storage');
  const attempt = conn.attempt;
  const shut = conn.shut;

  const putOps: Storage['putOps'] = (space, batch, heads) =>
    attempt('putOps', async (db) => {
      if (batch.length === 0) return 0;
      const spaceKey = own(space);
      const sorted = heads.map(own).sort(compareBytes);
      const tx = db.transaction(['ops', 'heads'], 'readwrite');
      const done = quiet(tx.done);
      try {
        const ops = tx.objectStore('ops');
        const headsStore = tx.objectStore('heads');
        const ids = batch.map((op) => own(op.opId));
        // Every read issued at once: one round of requests, not one per op.
        const [prev, ...existing] = await Promise.all([
          headsStore.get(spaceKey),
          ...ids.map((id) => ops.getKey([spaceKey, id])),
        ]);
        let seq = prev === undefined ? 0 : readHeads(prev).count;
        const seen = new Set<string>();
        const writes: Promise<unknown>[] = [];
        for (const [i, op] of batch.entries()) {
          const opId = ids[i] as Bytes;
          const k = bytesKey(opId);
          if (existing[i] !== undefined || seen.has(k)) continue;
          seen.add(k);
          writes.push(quiet(ops.add(record(spaceKey, opId, op, seq++))));
          if (writes.length === 1) options.afterOpWrite?.(tx);
        }
        if (writes.length === 0) {
          await done;
          return 0;
        }
        writes.push(quiet(headsStore.put({ heads: sorted, count: seq }, spaceKey)));
        await Promise.all([...writes, done]);
        return writes.length - 1;
      } catch (e) {
        return abortAndThrow(tx, done, e);
      }
    });

  return {
    putOps,

    putOp: (space, op, heads) => putOps(space, [op], heads).then((stored) => stored === 1),

    getOp: (space, opId) =>
      attempt('getOp', async (db) => {
        const r = await db.get('ops', [own(space), own(opId)]);
        return r === undefined ? undefined : readOp(r);
      }),

    hasOp: (space, opId) =>
      attempt('hasOp', async (db) => (await db.getKey('ops', [own(space), own(opId)])) !== undefined),

    getHeads: (space) =>
      attempt('getHeads', async (db) => {
        const r = await db.get('heads', own(space));
        return r === undefined ? [] : (readHeads(r).heads as OpId[]);
      }),

    async *listOps(space, start = 0) {
      const key = own(space);
      let from = Math.max(0, start);
      for (;;) {
        const batch = await attempt('listOps', (db) =>
          db.getAllFromIndex('ops', 'bySeq', IDBKeyRange.bound([key, from], [key, Infinity]), LIST_BATCH),
        );
        for (const r of batch) {
          const op = readOp(r);
          from = r.seq + 1;
          yield op;
        }
        if (batch.length < LIST_BATCH) return;
      }
    },

    countOps: (space) =>
      attempt('countOps', async (db) => {
        const r = await db.get('heads', own(space));
        return r === undefined ? 0 : readHeads(r).count;
      }),

    listSpaces: () =>
      attempt('listSpaces', async (db) =>
        (await db.getAllKeys('heads')).map(
          (k) => (ArrayBuffer.isView(k) ? k.slice() : new Uint8Array(k)) as SpaceId,
        ),
      ),

    getMeta: (key) =>
      attempt('getMeta', async (db) => {
        const v: unknown = await db.get('meta', key);
        if (v === undefined || v instanceof Uint8Array) return v;
        throw new StorageError('corrupt', `meta value "${key}" is not bytes`);
      }),

    putMeta: (key, value) =>
      attempt('putMeta', async (db) => {
        await db.put('meta', own(value), key);
      }),

    deleteMeta: (key) =>
      attempt('deleteMeta', async (db) => {
        await db.delete('meta', key);
      }),

    close: () => {
      shut('storage is closed');
      return Promise.resolve();
    },
  };
}

async function openDatabase(f: IDBFactory, name: string): Promise<IDBPDatabase<Schema>> {
  const request = f.open(name, SCHEMA_VERSION);
  request.addEventListener('upgradeneeded', (event) => {
    const raw = request.result;
    if (event.oldVersion < 1) {
      const ops = raw.createObjectStore('ops', { keyPath: ['space', 'opId'] });
      ops.createIndex('bySeq', ['space', 'seq'], { unique: true });
      raw.createObjectStore('heads');
      raw.createObjectStore('meta');
    }
  });
  const db = await wrap(request);
  if (db === undefined) throw new Error('open returned no database');
  return db as unknown as IDBPDatabase<Schema>;
}

function record(space: Bytes, opId: Bytes, op: StoredOp, seq: number): OpRecord {
  return op.content === undefined || op.content === null
    ? { space, opId, sealed: own(op.sealed), op: own(op.op), seq }
    : { space, opId, sealed: own(op.sealed), op: own(op.op), content: own(op.content), seq };
}

function readOp(r: unknown): StoredOp {
  if (
    typeof r === 'object' &&
    r !== null &&
    'opId' in r &&
    'sealed' in r &&
    'op' in r &&
    'seq' in r &&
    Number.isSafeInteger(r.seq) &&
    r.opId instanceof Uint8Array &&
    r.sealed instanceof Uint8Array &&
    r.op instanceof Uint8Array
  ) {
    if (!('content' in r)) return { opId: r.opId as OpId, sealed: r.sealed, op: r.op };
    if (r.content instanceof Uint8Array)
      return { opId: r.opId as OpId, sealed: r.sealed, op: r.op, content: r.content };
  }
  throw new StorageError('corrupt', 'an ops record is malformed');
}

function readHeads(r: unknown): HeadsRecord {
  if (
    typeof r === 'object' &&
    r !== null &&
    'heads' in r &&
    'count' in r &&
    Array.isArray(r.heads) &&
    r.heads.every((h) => h instanceof Uint8Array) &&
    Number.isSafeInteger(r.count)
  ) {
    return r as HeadsRecord;
  }
  throw new StorageError('corrupt', 'a heads record is malformed');
}
