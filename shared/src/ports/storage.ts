import type { OpId, SpaceId } from '../protocol/ids.js';

/** One accepted op as the device keeps it. */
export interface StoredOp {
  /** SHA-256 of `sealed`. */
  readonly opId: OpId;
  /** The sealed bytes exactly as received or sent: what sync serves to others. */
  readonly sealed: Uint8Array;
  /** The canonical signed op inside the seal, so state can be rebuilt without epoch keys. */
  readonly op: Uint8Array;
  /**
   * For a post, thread or edit: its readable content, opened (null or absent when this device
   * could not open it), so state is rebuilt without content keys either.
   */
  readonly content?: Uint8Array | null;
}

export type StorageErrorCode = 'closed' | 'quota' | 'io' | 'corrupt';

export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The device's durable store (ARCHITECTURE.md section 10). Every method is atomic: after a
 * crash a write is either complete or absent. Implementations: in-memory (tests), IndexedDB
 * (browser), files (CLI). All pass `runStorageTests`.
 *
 * Errors: operations reject with `StorageError` (`closed` after `close()`, `quota` when the
 * medium is full, `io` otherwise); nothing is half-written when they do.
 */
export interface Storage {
  /**
   * Stores an accepted op and sets the Space's heads, in one transaction. Storing an `opId`
   * that is already present changes nothing (not even the heads) and resolves `false`.
   */
  putOp(space: SpaceId, op: StoredOp, heads: readonly OpId[]): Promise<boolean>;
  /**
   * Stores several accepted ops, in order, and sets the Space's heads, all in one transaction
   * (group commit: one durable write for a batch the pipeline accepted together). Ops already
   * present, and repeats within `ops`, are skipped; when none is new nothing changes, not even
   * the heads. Resolves how many ops were stored.
   */
  putOps(space: SpaceId, ops: readonly StoredOp[], heads: readonly OpId[]): Promise<number>;
  getOp(space: SpaceId, opId: OpId): Promise<StoredOp | undefined>;
  hasOp(space: SpaceId, opId: OpId): Promise<boolean>;
  /** The Space's current heads, as last set by `putOp`, in canonical (sorted) order; `[]` if none. */
  getHeads(space: SpaceId): Promise<OpId[]>;
  /**
   * Every op of the Space in the order it was stored (a causal order), from the `from`-th on
   * (0-based; default 0, all of them): a reader that has the first `from` ops already (a state
   * checkpoint) reads only the rest. A `from` at or past the count lists nothing.
   */
  listOps(space: SpaceId, from?: number): AsyncIterable<StoredOp>;
  countOps(space: SpaceId): Promise<number>;
  /** The Spaces with at least one stored op. */
  listSpaces(): Promise<SpaceId[]>;
  /** Small values by key (cursors, settings, serialized state); `undefined` when absent. */
  getMeta(key: string): Promise<Uint8Array | undefined>;
  putMeta(key: string, value: Uint8Array): Promise<void>;
  deleteMeta(key: string): Promise<void>;
  close(): Promise<void>;
}
