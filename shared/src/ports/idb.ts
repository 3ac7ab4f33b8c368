/**
 * What the IndexedDB adapters share (`storage.idb.ts`, `blob/chunkstore.idb.ts`): one open
 * connection that closes itself when another upgrades or deletes the database, operations that
 * map every failure to a `StorageError`, and byte arrays trimmed before they are stored.
 */
import type { IDBPDatabase } from 'idb';
import { StorageError } from './storage.js';

export type Bytes = Uint8Array<ArrayBuffer>;

/**
 * The view's own bytes in a plain ArrayBuffer: structured clone would otherwise store the
 * whole underlying buffer, and IndexedDB rejects shared memory. No copy when already so.
 */
export function own(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
    ? (b as Bytes)
    : new Uint8Array(b);
}

/** Keeps an aborted transaction's pending requests from surfacing as unhandled rejections; callers still await `p`. */
export function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export function errorName(e: unknown): string {
  return typeof e === 'object' && e !== null && 'name' in e && typeof e.name === 'string' ? e.name : '';
}

/** `quota` for an exhausted origin quota, `closed` when the connection went away meanwhile, else `io`. */
export function toStorageError(e: unknown, what: string, closed: boolean, label: string): StorageError {
  if (e instanceof StorageError) return e;
  const detail = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  if (errorName(e) === 'QuotaExceededError') {
    return new StorageError('quota', `${what}: storage quota exhausted (${detail})`, { cause: e });
  }
  if (closed) return new StorageError('closed', `${what}: ${label} was closed (${detail})`, { cause: e });
  return new StorageError('io', `${what} failed (${detail})`, { cause: e });
}

/**
 * After `e` was thrown inside a readwrite transaction: aborts it (an exception between two
 * requests would otherwise let it commit the first) and throws the transaction's quota error
 * when that is what failed, else `e`. `done` is the transaction's `quiet(tx.done)`.
 */
export async function abortAndThrow(
  tx: { abort(): void },
  done: Promise<unknown>,
  e: unknown,
): Promise<never> {
  try {
    tx.abort();
  } catch {
    // Already finished.
  }
  const txError = await done.then(
    () => undefined,
    (x: unknown) => x,
  );
  throw errorName(txError) === 'QuotaExceededError' ? txError : e;
}

export interface IdbConnection<DB> {
  /** Runs `run` on the open connection; rejects `closed` once it is gone, and maps failures. */
  readonly attempt: <T>(what: string, run: (db: IDBPDatabase<DB>) => Promise<T>) => Promise<T>;
  /** Closes the connection; later calls reject `closed` with `why`. */
  readonly shut: (why: string) => void;
  readonly open: boolean;
}

/**
 * Opens `name` with `openDatabase` and keeps the connection; `label` names the store in
 * messages ("storage", "chunk store"). Throws `StorageError('io')` when it cannot open.
 */
export async function idbConnection<DB>(
  factory: IDBFactory | undefined,
  name: string,
  openDatabase: (f: IDBFactory, name: string) => Promise<IDBPDatabase<DB>>,
  label: string,
): Promise<IdbConnection<DB>> {
  const f = factory ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (f === undefined) throw new StorageError('io', 'IndexedDB is not available here');
  let opened: IDBPDatabase<DB>;
  try {
    opened = await openDatabase(f, name);
  } catch (e) {
    throw toStorageError(e, `opening IndexedDB "${name}"`, false, label);
  }
  let current: IDBPDatabase<DB> | undefined = opened;
  let closedWhy = `${label} is closed`;
  const shut = (why: string): void => {
    if (current === undefined) return;
    current.close();
    current = undefined;
    closedWhy = why;
  };
  opened.addEventListener('versionchange', () => {
    shut(`${label} was closed: another connection upgrades or deletes the database`);
  });
  opened.addEventListener('close', () => {
    shut(`${label} was closed by the browser`);
  });
  return {
    attempt: async <T>(what: string, run: (db: IDBPDatabase<DB>) => Promise<T>): Promise<T> => {
      const db = current;
      if (db === undefined) throw new StorageError('closed', closedWhy);
      try {
        return await run(db);
      } catch (e) {
        throw toStorageError(e, what, current !== db, label);
      }
    },
    shut,
    get open() {
      return current !== undefined;
    },
  };
}
