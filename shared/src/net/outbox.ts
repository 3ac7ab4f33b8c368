/**
 * The outbox (ARCHITECTURE.md section 8): a message is persisted on the device before it is
 * sent, and stays until a relay acknowledged it, so nothing typed by a user is lost by a crash,
 * a closed tab or a dropped connection.
 *
 * Layout on the `Storage` port's meta keys, each `putMeta`/`deleteMeta` atomic on its own:
 * - `outbox/<id>`: one entry (see `encodeEntry`), `id` a decimal integer that only grows;
 * - `outbox/index`: the next id and the ids of the pending entries, in enqueue order.
 *
 * Write order makes every crash point safe: an entry is written before the index names it (a
 * crash between leaves an unnamed entry, which the next enqueue overwrites because the index
 * still holds the old next id), and it is deleted before the index drops it (a crash between
 * leaves a name without an entry, which `open` skips). An enqueue resolves only once both writes
 * are done. Writes go through one queue, so the index is never written from stale state.
 */
import type { Storage } from '../ports/storage.js';
import { MAX_MAILBOX_MESSAGE_BYTES } from '../protocol/limits.js';

/**
 * Entries. At most this many messages wait in the outbox. User ops are small and a person
 * offline for a day writes far fewer; past this, something is wrong (no relay accepts us) and
 * the UI must say so rather than let the queue grow. It also bounds the index to 8 KiB.
 */
export const MAX_OUTBOX_ENTRIES = 1000;

/**
 * Bytes (addresses plus messages). The outbox is held in memory as well as on disk; 16 MiB keeps
 * that affordable in a browser worker and still fits four messages of the largest size a
 * mailbox takes (`MAX_MAILBOX_MESSAGE_BYTES`).
 */
export const MAX_OUTBOX_BYTES = 16 * 1024 * 1024;

/** Bytes. A mailbox address is 32 bytes; one length byte allows up to 255. */
const MAX_ADDRESS_BYTES = 255;

const INDEX_KEY = 'outbox/index';
const ENTRY_PREFIX = 'outbox/';
const ENTRY_VERSION = 1;
const FLAG_COMMIT_EPOCH = 1;

export type OutboxErrorCode =
  /** The outbox holds `maxEntries` entries or `maxBytes` bytes already; nothing was added. */
  | 'full'
  /** The message is larger than any relay takes (`MAX_MAILBOX_MESSAGE_BYTES`), or the address is too long. */
  | 'tooLarge'
  /** The outbox index does not decode; the outbox cannot be opened. */
  | 'corrupt';

export class OutboxError extends Error {
  override readonly name = 'OutboxError';
  constructor(
    readonly code: OutboxErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface OutboxEntry {
  /** Unique in this outbox's storage, growing in enqueue order. */
  readonly id: number;
  readonly address: Uint8Array;
  readonly message: Uint8Array;
  /** Set for a commit on that MLS epoch (soft sequencing, section 6.3). */
  readonly commitEpoch?: number;
}

export type OutboxEvent =
  | { readonly kind: 'enqueued'; readonly entry: OutboxEntry }
  /** A relay acknowledged the entry (`seq` at `relay`); it is gone from the outbox. */
  | { readonly kind: 'sent'; readonly entry: OutboxEntry; readonly relay: string; readonly seq: number }
  /** The entry was removed without an acknowledgement (`remove`), e.g. a commit refused as `epoch-taken`. */
  | { readonly kind: 'removed'; readonly entry: OutboxEntry };

export interface OutboxLimits {
  /** Default `MAX_OUTBOX_ENTRIES`. */
  readonly maxEntries?: number;
  /** Default `MAX_OUTBOX_BYTES`. */
  readonly maxBytes?: number;
}

function entrySize(address: Uint8Array, message: Uint8Array): number {
  return address.length + message.length;
}

/** `[version, flags, address length, address…, (commit epoch: float64 BE)?, message…]` */
function encodeEntry(address: Uint8Array, message: Uint8Array, commitEpoch: number | undefined): Uint8Array {
  const epochBytes = commitEpoch === undefined ? 0 : 8;
  const out = new Uint8Array(3 + address.length + epochBytes + message.length);
  out[0] = ENTRY_VERSION;
  out[1] = commitEpoch === undefined ? 0 : FLAG_COMMIT_EPOCH;
  out[2] = address.length;
  out.set(address, 3);
  let o = 3 + address.length;
  if (commitEpoch !== undefined) {
    new DataView(out.buffer).setFloat64(o, commitEpoch);
    o += 8;
  }
  out.set(message, o);
  return out;
}

function decodeEntry(id: number, bytes: Uint8Array): OutboxEntry | undefined {
  if (bytes.length < 3 || bytes[0] !== ENTRY_VERSION) return undefined;
  const flags = bytes[1] ?? 0;
  const addressLength = bytes[2] ?? 0;
  if ((flags & ~FLAG_COMMIT_EPOCH) !== 0) return undefined;
  let o = 3 + addressLength;
  if (bytes.length < o) return undefined;
  const address = bytes.slice(3, o);
  let commitEpoch: number | undefined;
  if ((flags & FLAG_COMMIT_EPOCH) !== 0) {
    if (bytes.length < o + 8) return undefined;
    commitEpoch = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat64(o);
    if (!Number.isSafeInteger(commitEpoch) || commitEpoch < 0) return undefined;
    o += 8;
  }
  if (bytes.length - o > MAX_MAILBOX_MESSAGE_BYTES) return undefined;
  const message = bytes.slice(o);
  return commitEpoch === undefined ? { id, address, message } : { id, address, message, commitEpoch };
}

/** `[next id, pending ids…]`, each a float64 BE. */
function encodeIndex(next: number, ids: readonly number[]): Uint8Array {
  const out = new Uint8Array(8 * (ids.length + 1));
  const view = new DataView(out.buffer);
  view.setFloat64(0, next);
  ids.forEach((id, i) => {
    view.setFloat64(8 * (i + 1), id);
  });
  return out;
}

function decodeIndex(bytes: Uint8Array, maxEntries: number): { next: number; ids: number[] } {
  const count = bytes.length / 8 - 1;
  // Generous: an index written under a larger limit still opens (and is then over the bound).
  if (!Number.isInteger(count) || count < 0 || count > Math.max(maxEntries, MAX_OUTBOX_ENTRIES) * 4) {
    throw new OutboxError('corrupt', 'outbox index has a bad length');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const next = view.getFloat64(0);
  const ids: number[] = [];
  let previous = -1;
  for (let i = 1; i <= count; i++) {
    const id = view.getFloat64(8 * i);
    if (!Number.isSafeInteger(id) || id <= previous || id >= next) {
      throw new OutboxError('corrupt', 'outbox index holds a bad id');
    }
    ids.push(id);
    previous = id;
  }
  if (!Number.isSafeInteger(next) || next < 0)
    throw new OutboxError('corrupt', 'outbox index has a bad next id');
  return { next, ids };
}

/**
 * The persisted queue of messages waiting for a relay's acknowledgement. Open with
 * `Outbox.open(storage)`; one `Outbox` per `Storage` at a time.
 *
 * Errors: `enqueue` rejects with `OutboxError` (`full`, `tooLarge`) having changed nothing; storage
 * failures reject with the port's `StorageError`, and then the entry may or may not be kept.
 */
export class Outbox {
  private readonly entries = new Map<number, OutboxEntry>();
  private readonly listeners = new Set<(event: OutboxEvent) => void>();
  private size = 0;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly storage: Storage,
    private next: number,
    private readonly maxEntries: number,
    private readonly maxBytes: number,
  ) {}

  /**
   * Loads the pending entries from `storage`. Entries that no longer decode are dropped from the
   * index (counted in `dropped`): they could never be sent.
   *
   * @throws OutboxError `corrupt` when the index does not decode.
   */
  static async open(storage: Storage, limits: OutboxLimits = {}): Promise<Outbox> {
    const maxEntries = limits.maxEntries ?? MAX_OUTBOX_ENTRIES;
    const maxBytes = limits.maxBytes ?? MAX_OUTBOX_BYTES;
    const raw = await storage.getMeta(INDEX_KEY);
    const { next, ids } = raw === undefined ? { next: 0, ids: [] } : decodeIndex(raw, maxEntries);
    const outbox = new Outbox(storage, next, maxEntries, maxBytes);
    let missing = 0;
    for (const id of ids) {
      const bytes = await storage.getMeta(ENTRY_PREFIX + String(id));
      const entry = bytes === undefined ? undefined : decodeEntry(id, bytes);
      if (entry === undefined) {
        missing++;
        if (bytes !== undefined) outbox.dropped++;
        continue;
      }
      outbox.entries.set(id, entry);
      outbox.size += entrySize(entry.address, entry.message);
    }
    if (missing > 0) await outbox.writeIndex();
    return outbox;
  }

  /** Entries found undecodable by `open` and dropped. */
  dropped = 0;

  /** Pending entries. */
  get length(): number {
    return this.entries.size;
  }

  /** Bytes of the pending entries, as counted against `maxBytes`. */
  get bytes(): number {
    return this.size;
  }

  /** The pending entries, oldest first. */
  pending(): OutboxEntry[] {
    return [...this.entries.values()];
  }

  has(entryId: number): boolean {
    return this.entries.has(entryId);
  }

  /** Calls `listener` after every change; returns the function that stops it. */
  onChange(listener: (event: OutboxEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Adds a message for `address`; resolves once it is durable in storage.
   *
   * @throws OutboxError `full` past `maxEntries`/`maxBytes`, `tooLarge` for a message no relay takes.
   */
  enqueue(
    address: Uint8Array,
    message: Uint8Array,
    options: { commitEpoch?: number } = {},
  ): Promise<OutboxEntry> {
    const commitEpoch = options.commitEpoch;
    if (message.length > MAX_MAILBOX_MESSAGE_BYTES || address.length > MAX_ADDRESS_BYTES) {
      return Promise.reject(new OutboxError('tooLarge', 'message or address larger than a relay takes'));
    }
    if (commitEpoch !== undefined && (!Number.isSafeInteger(commitEpoch) || commitEpoch < 0)) {
      return Promise.reject(new RangeError('commitEpoch must be a non-negative safe integer'));
    }
    return this.serial(async () => {
      const size = entrySize(address, message);
      if (this.entries.size + 1 > this.maxEntries) {
        throw new OutboxError('full', `outbox holds ${this.entries.size} entries (limit ${this.maxEntries})`);
      }
      if (this.size + size > this.maxBytes) {
        throw new OutboxError('full', `outbox holds ${this.size} bytes (limit ${this.maxBytes})`);
      }
      const id = this.next;
      const encoded = encodeEntry(address, message, commitEpoch);
      await this.storage.putMeta(ENTRY_PREFIX + String(id), encoded);
      const ids = [...this.entries.keys(), id];
      await this.storage.putMeta(INDEX_KEY, encodeIndex(id + 1, ids));
      this.next = id + 1;
      const entry = decodeEntry(id, encoded);
      if (entry === undefined) throw new Error('outbox entry does not round-trip');
      this.entries.set(id, entry);
      this.size += size;
      this.emit({ kind: 'enqueued', entry });
      return entry;
    });
  }

  /**
   * Records that `relay` acknowledged the entry with `seq`, and removes it. Resolves `false` when
   * the entry was no longer pending (another relay's ack came first).
   */
  markSent(entryId: number, relay: string, seq: number): Promise<boolean> {
    return this.serial(async () => {
      const entry = await this.drop(entryId);
      if (entry === undefined) return false;
      this.emit({ kind: 'sent', entry, relay, seq });
      return true;
    });
  }

  /** Removes an entry that needs no acknowledgement any more; `false` when it was not pending. */
  remove(entryId: number): Promise<boolean> {
    return this.serial(async () => {
      const entry = await this.drop(entryId);
      if (entry === undefined) return false;
      this.emit({ kind: 'removed', entry });
      return true;
    });
  }

  private async drop(entryId: number): Promise<OutboxEntry | undefined> {
    const entry = this.entries.get(entryId);
    if (entry === undefined) return undefined;
    await this.storage.deleteMeta(ENTRY_PREFIX + String(entryId));
    this.entries.delete(entryId);
    this.size -= entrySize(entry.address, entry.message);
    await this.writeIndex();
    return entry;
  }

  private writeIndex(): Promise<void> {
    return this.storage.putMeta(INDEX_KEY, encodeIndex(this.next, [...this.entries.keys()]));
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private emit(event: OutboxEvent): void {
    for (const listener of [...this.listeners]) {
      // A throwing listener is the application's bug: report it, but the outbox is already written.
      try {
        listener(event);
      } catch (e) {
        queueMicrotask(() => {
          throw e instanceof Error ? e : new Error(String(e));
        });
      }
    }
  }
}
