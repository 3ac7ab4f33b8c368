import { bytesKey, compareBytes } from '../protocol/ids.js';
import type { OpId, SpaceId } from '../protocol/ids.js';
import { StorageError } from './storage.js';
import type { Storage, StoredOp } from './storage.js';

interface SpaceState {
  readonly id: SpaceId;
  readonly byId: Map<string, StoredOp>;
  /** Insertion order; shares its entries with `byId`. */
  readonly order: StoredOp[];
  heads: readonly OpId[];
}

/**
 * A `Storage` held in memory: for tests and for peers that need no persistence. Nothing
 * survives the process; `close()` drops everything.
 *
 * No copies: `putOp` and `putMeta` keep the caller's `Uint8Array`s, and `getOp`, `listOps`,
 * `getMeta` and `getHeads` hand back those same arrays. Callers must never mutate a byte array
 * after giving it to the store or receiving it from it (the rest of the core never does).
 * Only the heads array itself is copied (and sorted), so pushing to it changes nothing stored.
 *
 * Per op it keeps one small `{opId, sealed, op}` record, one Map entry keyed by
 * `bytesKey(opId)`, and one slot in the per-Space insertion-order array.
 *
 * Errors: every method rejects with `StorageError('closed')` after `close()`; a second
 * `close()` resolves. Calls take effect synchronously in call order, so each is atomic.
 */
export function memoryStorage(): Storage {
  let spaces: Map<string, SpaceState> | undefined = new Map();
  let meta: Map<string, Uint8Array> | undefined = new Map();

  function open(): { spaces: Map<string, SpaceState>; meta: Map<string, Uint8Array> } {
    if (spaces === undefined || meta === undefined) throw new StorageError('closed', 'storage is closed');
    return { spaces, meta };
  }

  // Rejects rather than throws, like a real medium would.
  function run<T>(f: () => T): Promise<T> {
    return new Promise((resolve) => {
      resolve(f());
    });
  }

  function spaceOf(space: SpaceId): SpaceState | undefined {
    return open().spaces.get(bytesKey(space));
  }

  return {
    putOp: (space, op, heads) =>
      run(() => {
        const all = open().spaces;
        const spaceKey = bytesKey(space);
        const opKey = bytesKey(op.opId);
        let s = all.get(spaceKey);
        if (s?.byId.has(opKey)) return false;
        if (s === undefined) {
          s = { id: space, byId: new Map(), order: [], heads: [] };
          all.set(spaceKey, s);
        }
        const stored: StoredOp = { opId: op.opId, sealed: op.sealed, op: op.op };
        s.byId.set(opKey, stored);
        s.order.push(stored);
        s.heads = [...heads].sort(compareBytes);
        return true;
      }),

    getOp: (space, opId) => run(() => spaceOf(space)?.byId.get(bytesKey(opId))),

    hasOp: (space, opId) => run(() => spaceOf(space)?.byId.has(bytesKey(opId)) ?? false),

    getHeads: (space) => run(() => [...(spaceOf(space)?.heads ?? [])]),

    listOps(space) {
      return {
        [Symbol.asyncIterator]() {
          // By index, so ops stored during the iteration are included, as in the IndexedDB store.
          let i = 0;
          return {
            next: () =>
              run((): IteratorResult<StoredOp, undefined> => {
                const op = spaceOf(space)?.order[i++];
                return op === undefined ? { done: true, value: undefined } : { done: false, value: op };
              }),
          };
        },
      };
    },

    countOps: (space) => run(() => spaceOf(space)?.order.length ?? 0),

    listSpaces: () => run(() => Array.from(open().spaces.values(), (s) => s.id)),

    getMeta: (key) => run(() => open().meta.get(key)),

    putMeta: (key, value) =>
      run(() => {
        open().meta.set(key, value);
      }),

    deleteMeta: (key) =>
      run(() => {
        open().meta.delete(key);
      }),

    close: () =>
      run(() => {
        spaces = undefined;
        meta = undefined;
      }),
  };
}
