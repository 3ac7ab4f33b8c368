import { bytesKey, compareBytes, concatBytes, keyBytes } from '../protocol/ids.js';
import type { OpId, SpaceId } from '../protocol/ids.js';
import { StorageError } from './storage.js';
import type { Storage, StoredOp } from './storage.js';

/** Ops in columns by insertion number: no per-op record object and no kept OpId array. */
interface SpaceState {
  readonly id: SpaceId;
  /** `bytesKey(opId)` → insertion number. */
  readonly byId: Map<string, number>;
  readonly keys: string[];
  readonly sealed: Uint8Array[];
  /** The signed op, followed by its opened content when it has one. */
  readonly op: Uint8Array[];
  /** Where the signed op ends in `op[i]` (its length when there is no content). */
  readonly opEnd: number[];
  heads: readonly OpId[];
}

function stored(s: SpaceState, i: number): StoredOp | undefined {
  const key = s.keys[i];
  if (key === undefined) return undefined;
  const both = s.op[i] as Uint8Array;
  const end = s.opEnd[i] as number;
  const op = end === both.length ? both : both.subarray(0, end);
  const out = { opId: keyBytes(key) as OpId, sealed: s.sealed[i] as Uint8Array, op };
  return end === both.length ? out : { ...out, content: both.subarray(end) };
}

/**
 * A `Storage` held in memory: for tests and for peers that need no persistence. Nothing
 * survives the process; `close()` drops everything.
 *
 * Few copies: `putOp` and `putMeta` keep the caller's `sealed`, `op` and meta `Uint8Array`s (an
 * op with opened content is kept as one array of both, copied once), and `getOp`, `listOps` and
 * `getMeta` hand back those arrays or views of them (the `opId` is rebuilt). Callers must never
 * mutate a byte array after giving it to the store or receiving it from it (the rest of the
 * core never does). Only the heads array itself is copied (and sorted), so pushing to it
 * changes nothing stored.
 *
 * Per op it keeps one Map entry keyed by `bytesKey(opId)` and one slot in each of four
 * columns (key, sealed, op and content, where the op ends).
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
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  function spaceOf(space: SpaceId): SpaceState | undefined {
    return open().spaces.get(bytesKey(space));
  }

  function spaceFor(space: SpaceId): SpaceState {
    const all = open().spaces;
    const spaceKey = bytesKey(space);
    let s = all.get(spaceKey);
    if (s === undefined) {
      s = { id: space, byId: new Map(), keys: [], sealed: [], op: [], opEnd: [], heads: [] };
      all.set(spaceKey, s);
    }
    return s;
  }

  /** Appends `op` unless present; whether it was new. */
  function add(s: SpaceState, op: StoredOp): boolean {
    const opKey = bytesKey(op.opId);
    if (s.byId.has(opKey)) return false;
    s.byId.set(opKey, s.keys.length);
    s.keys.push(opKey);
    s.sealed.push(op.sealed);
    // One array for the op and its content: a typed array costs more heap than its bytes.
    const content = op.content ?? undefined;
    s.op.push(content === undefined || content.length === 0 ? op.op : concatBytes(op.op, content));
    s.opEnd.push(op.op.length);
    return true;
  }

  return {
    putOp: (space, op, heads) =>
      run(() => {
        const s = spaceFor(space);
        if (!add(s, op)) return false;
        s.heads = [...heads].sort(compareBytes);
        return true;
      }),

    putOps: (space, ops, heads) =>
      run(() => {
        if (ops.length === 0) return 0;
        const s = spaceFor(space);
        let stored = 0;
        for (const op of ops) if (add(s, op)) stored++;
        if (stored > 0) s.heads = [...heads].sort(compareBytes);
        return stored;
      }),

    getOp: (space, opId) =>
      run(() => {
        const s = spaceOf(space);
        const i = s?.byId.get(bytesKey(opId));
        return s === undefined || i === undefined ? undefined : stored(s, i);
      }),

    hasOp: (space, opId) => run(() => spaceOf(space)?.byId.has(bytesKey(opId)) ?? false),

    getHeads: (space) => run(() => [...(spaceOf(space)?.heads ?? [])]),

    listOps(space, from = 0) {
      return {
        [Symbol.asyncIterator]() {
          // By index, so ops stored during the iteration are included, as in the IndexedDB store.
          let i = Math.max(0, from);
          return {
            next: () =>
              run((): IteratorResult<StoredOp, undefined> => {
                const s = spaceOf(space);
                const op = s === undefined ? undefined : stored(s, i++);
                return op === undefined ? { done: true, value: undefined } : { done: false, value: op };
              }),
          };
        },
      };
    },

    countOps: (space) => run(() => spaceOf(space)?.keys.length ?? 0),

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
