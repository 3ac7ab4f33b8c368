/**
 * The relay's durable store (ARCHITECTURE.md §8 mailboxes, §7 blobs, §10 storage): one SQLite
 * database per relay, `dir/relay.sqlite`, in WAL mode. A write is acknowledged only once the WAL
 * frames of its commit are on disk (fdatasync of the WAL file), so an acknowledged write survives
 * `kill -9` and power loss.
 *
 * Where the fsync runs: SQLite's `synchronous = FULL` would fsync the WAL inside every commit, on
 * the event loop, which then waits for the disk (0.6–2.5 ms a commit here; at 1,000 appends a
 * second that was about 45 % of the loop's time). Instead SQLite runs with `synchronous = NORMAL`
 * (commits write the WAL without syncing it; checkpoints still sync) and the store syncs the WAL
 * file itself on libuv's thread pool after each group commit. The commits' callers and the append
 * listener hear of a write only after the sync that covers it, and reads of seqs stop below the
 * first seq not yet synced, so nothing that a power cut could still undo is ever acknowledged,
 * pushed or served with its seq. Commits made while a sync runs are covered by the next one.
 * The one exception is an append's own `committed` callback, run right after its commit: the
 * relay passes a new message on to the other relays from there (direct copies, gossip), so their
 * storing overlaps this sync instead of following it (no seq travels with a copy).
 * Reads by hash (`getByHash`, `hasMessage`) may see a message whose commit is not yet synced: it
 * has no seq there, and whoever fetches it by its hash can check it against that hash.
 *
 * It holds bytes it cannot read: mailbox messages are sealed ops, blobs are encrypted chunks.
 * Nothing here decodes them; the protocol handlers validate sizes before calling in.
 *
 * Schema (version 1, in `PRAGMA user_version`):
 * - `mailboxes`: one row per address ever appended to; keeps `last_seq` after its messages are
 *   pruned (so seqs are never reused), running `count`/`bytes`, the arrival time of its oldest
 *   retained message (`head_received`, drives age pruning) and `epoch_floor` (see `append`).
 * - `messages`: `(address, seq)` unique, `(hash, address)` unique (dedup, `getByHash`).
 * - `epochs`: the winning message of each `(address, commitEpoch)`.
 * - `blobs`, `blob_owners` (bytes per uploader), `blob_totals` (one row).
 */
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { nodeSha256 } from '../../shared/src/crypto/sha256.node.js';

/** Limits enforced by the store. All byte counts are bytes of stored payload (not SQLite pages). */
export interface StoreLimits {
  /** Milliseconds a message is kept after it arrived; older messages are removed by `prune()`. */
  retentionMs: number;
  /**
   * Bytes of messages kept per address; `prune()` removes the oldest ones beyond it. After a
   * prune, every address holds at most this many bytes, so it must be well above the largest
   * message a handler accepts.
   */
  maxMailboxBytes: number;
  /** Bytes of blobs one uploader (owner = a peer id string) may store; checked on `putBlob`. */
  maxBlobBytesPerOwner: number;
  /** Bytes of blobs the whole store may hold; checked on `putBlob`. */
  maxBlobStoreBytes: number;
}

/**
 * The outcome of `append`.
 * - `appended`: durable at `seq`; `hash` is SHA-256 of the message (32 bytes). `duplicate` is true
 *   when the same (address, message) was already stored: `seq` is its existing seq and nothing was
 *   written.
 * - `refused`/`epoch-taken`: another message already won this (address, commitEpoch).
 */
export type AppendOutcome =
  | { kind: 'appended'; seq: number; hash: Uint8Array; duplicate: boolean }
  | { kind: 'refused'; reason: 'epoch-taken' };

/**
 * The outcome of `putBlob`: `stored` (new and durable), `exists` (already held, under its first
 * uploader's quota; nothing written) or refused: `hash-mismatch` (SHA-256(bytes) is not the hash),
 * `owner-quota` (the uploader's bytes would exceed `maxBlobBytesPerOwner`), `store-quota` (the
 * store's would exceed `maxBlobStoreBytes`). A refused put writes nothing.
 */
export type BlobPutOutcome =
  | { kind: 'stored' | 'exists' }
  | { kind: 'refused'; reason: 'hash-mismatch' | 'owner-quota' | 'store-quota' };

/** A mailbox message with its per-address sequence number. */
export interface StoredMessage {
  seq: number;
  message: Uint8Array;
}

/** Options of {@link RelayStore.append}. */
export interface AppendOptions {
  /**
   * The MLS epoch a commit is for (a non-negative safe integer). Soft sequencing: the first
   * message appended for (address, commitEpoch) wins, later different messages are refused.
   */
  commitEpoch?: number;
  /** Arrival time in Unix milliseconds, for retention; defaults to `Date.now()`. */
  now?: number;
  /**
   * Called once, synchronously, right after the message was committed and before the sync that
   * makes it durable, and only when it is new here (not a duplicate, not refused, and not when
   * the commit failed). Whatever it starts may outlive a crash that loses the message here, so it
   * must only make copies that are harmless to have twice (the relay copies and gossips the
   * message to other relays from here: the sender re-sends until acknowledged, and relays dedupe
   * by hash).
   * It must not throw.
   */
  committed?: () => void;
}

/** Totals over the whole store; byte counts are payload bytes. */
export interface StoreStats {
  /** Addresses holding at least one message. */
  addresses: number;
  messages: number;
  messageBytes: number;
  blobs: number;
  blobBytes: number;
}

export type StoreErrorCode = 'io' | 'corrupt' | 'closed';

/**
 * The store's error family. `io`: the disk or SQLite failed (the failed operation wrote nothing);
 * `corrupt`: the file is not a relay database this code can read; `closed`: used after `close()`.
 * After a failed sync of the WAL the store takes no more writes (every later write rejects `io`):
 * the writes of the commits that sync covered were rejected but may be on disk, as after a crash,
 * and a retried append of one of them is then found as a duplicate after a restart.
 * The SQLite error, if any, is the `cause`.
 */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** File name of the database inside the store's directory. */
export const STORE_FILE = 'relay.sqlite';

const SCHEMA_VERSION = 1;

/** Writes per group commit: bounds one transaction's duration (and event-loop stall). */
const MAX_BATCH_WRITES = 4096;
/** Payload bytes per group commit, for the same reason; a larger single write still goes alone. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/**
 * Milliseconds SQLite waits for a lock held by another connection before failing with `io`.
 * Only an outside process can hold one (the relay is the single writer): fail fast rather than
 * stall the event loop.
 */
const BUSY_TIMEOUT_MS = 1000;
/**
 * Pages (4 KiB) the WAL may grow to before SQLite checkpoints it into the database (64 MiB; the
 * default is 1,000). Every append touches a random leaf of the hash index, so one group commit
 * dirties up to one index page per message; checkpointing rarely writes each hot page once instead
 * of once per commit. Measured: about 3x the append rate of the default with 1 KiB messages.
 */
const WAL_AUTOCHECKPOINT_PAGES = 16_384;
/** Bytes the WAL file is truncated to after a checkpoint, so disk use stays bounded. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
/** SQLite page cache in KiB (32 MiB): holds the hot index pages; the bound on the store's memory. */
const CACHE_KIB = 32 * 1024;

const SCHEMA = `
CREATE TABLE mailboxes (
  address BLOB PRIMARY KEY,
  last_seq INTEGER NOT NULL,
  count INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  head_received INTEGER,
  epoch_floor INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX mailboxes_head ON mailboxes (head_received);
CREATE TABLE messages (
  address BLOB NOT NULL,
  seq INTEGER NOT NULL,
  hash BLOB NOT NULL,
  received INTEGER NOT NULL,
  size INTEGER NOT NULL,
  body BLOB NOT NULL
);
CREATE UNIQUE INDEX messages_seq ON messages (address, seq);
CREATE UNIQUE INDEX messages_hash ON messages (hash, address);
CREATE TABLE epochs (
  address BLOB NOT NULL,
  epoch INTEGER NOT NULL,
  hash BLOB NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (address, epoch)
) WITHOUT ROWID;
CREATE TABLE blobs (
  hash BLOB NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  size INTEGER NOT NULL,
  body BLOB NOT NULL
);
CREATE TABLE blob_owners (owner TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE blob_totals (id INTEGER PRIMARY KEY CHECK (id = 0), count INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT INTO blob_totals VALUES (0, 0, 0);
`;

type Db = Database.Database;
type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;

interface MailboxRow {
  last_seq: number;
  count: number;
  epoch_floor: number;
}

/**
 * Told of every new message right after the sync that made its commit durable, in seq order,
 * before any caller's promise settles. Reads by seq (`readAfter`, `lastSeq`, `firstSeq`) stop
 * below the first message not yet synced, so nothing can read a seq the listener was not told of.
 */
export type AppendListener = (address: Uint8Array, seq: number, message: Uint8Array) => void;

/**
 * Syncs a file's data to disk and calls back (Node's `fs.fdatasync`; tests pass one that waits
 * or fails, to see what the store does meanwhile).
 */
export type SyncFile = (fd: number, done: (error: Error | null) => void) => void;

/** A group commit whose WAL frames are written but not yet synced to disk. */
interface Unsynced {
  readonly batch: readonly PendingWrite[];
  readonly settle: readonly (() => void)[];
  readonly fresh: readonly Fresh[];
}

/** A new message of a commit, with the caller's `committed` callback. */
interface Fresh {
  readonly address: Uint8Array;
  readonly seq: number;
  readonly message: Uint8Array;
  readonly committed: (() => void) | undefined;
}

/** Key of an address in the maps of unsynced seqs. */
function addressKey(address: Uint8Array): string {
  return Buffer.from(address.buffer, address.byteOffset, address.byteLength).toString('latin1');
}

/** A write waiting for the next group commit. */
interface PendingWrite {
  readonly bytes: number;
  /** Runs inside the transaction; returns what to do once it committed. */
  readonly apply: () => () => void;
  readonly fail: (error: StoreError) => void;
}

/** SHA-256 with Node's one-shot binding (no hash object per message). */
const sha256 = nodeSha256;

/** A plain Uint8Array view of a Buffer (same memory), so callers never get Buffer semantics. */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function toStoreError(error: unknown, what: string): StoreError {
  if (error instanceof StoreError) return error;
  const code = error instanceof Database.SqliteError ? error.code : '';
  const corrupt = code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB';
  const detail = error instanceof Error ? error.message : String(error);
  return new StoreError(corrupt ? 'corrupt' : 'io', `${what}: ${detail}`, { cause: error });
}

/**
 * Mailboxes and blobs on disk. One instance per directory and process; every method is
 * synchronous except the writes, which are group-committed.
 *
 * Invariants: per address, seqs are 1, 2, 3… dense and never reused, also after pruning; retained
 * messages of an address are the contiguous range `firstSeq..lastSeq`; no (address, message) is
 * stored twice; a resolved write is durable; a rejected write wrote nothing.
 */
export class RelayStore {
  private readonly queue: PendingWrite[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private closed = false;
  private appendListener: AppendListener | undefined;
  /** New messages of the transaction in progress, for the listener once it is synced. */
  private committing: Fresh[] = [];
  /** Group commits waiting for a sync of the WAL, oldest first. */
  private unsynced: Unsynced[] = [];
  /** Commits a sync in progress covers (the first ones of `unsynced`); 0 when none runs. */
  private syncing = 0;
  /** Per address with committed but unsynced messages: the first and the last of their seqs. */
  private readonly unsyncedSeqs = new Map<string, { first: number; last: number }>();
  /** Whether the transaction in progress wrote anything. */
  private wrote = false;
  /** Set when a sync of the WAL failed: every later write rejects with it. */
  private failed: StoreError | undefined;
  private readonly commit: Database.Transaction<(batch: readonly PendingWrite[]) => (() => void)[]>;

  private readonly s: {
    mailbox: Stmt<[Uint8Array], MailboxRow>;
    insertMailbox: Stmt<[Uint8Array, number, number]>;
    bumpMailbox: Stmt<[number, Uint8Array]>;
    bumpEmptyMailbox: Stmt<[number, number, Uint8Array]>;
    seqOfHash: Stmt<[Uint8Array, Uint8Array], { seq: number }>;
    insertMessage: Stmt<[Uint8Array, number, Uint8Array, number, number, Uint8Array]>;
    epoch: Stmt<[Uint8Array, number], { hash: Uint8Array; seq: number }>;
    insertEpoch: Stmt<[Uint8Array, number, Uint8Array, number]>;
    readAfter: Stmt<[Uint8Array, number, number], { seq: number; body: Uint8Array }>;
    lastSeq: Stmt<[Uint8Array], { last_seq: number }>;
    firstSeq: Stmt<[Uint8Array], { seq: number }>;
    byHash: Stmt<[Uint8Array], { body: Uint8Array }>;
    hasMessage: Stmt<[Uint8Array, Uint8Array], { one: number }>;
    expiredHeads: Stmt<[number], { address: Uint8Array }>;
    oversized: Stmt<[number], { address: Uint8Array; bytes: number }>;
    scan: Stmt<[Uint8Array], { seq: number; received: number; size: number }>;
    deleteUpTo: Stmt<[Uint8Array, number]>;
    headAfter: Stmt<[Uint8Array, number], { received: number }>;
    shrinkMailbox: Stmt<[number, number, number | null, Uint8Array]>;
    maxPrunedEpoch: Stmt<[Uint8Array, number], { epoch: number | null }>;
    deleteEpochsUpTo: Stmt<[Uint8Array, number]>;
    raiseFloor: Stmt<[number, Uint8Array]>;
    blob: Stmt<[Uint8Array], { body: Uint8Array }>;
    hasBlob: Stmt<[Uint8Array], { one: number }>;
    ownerBytes: Stmt<[string], { bytes: number }>;
    blobTotals: Stmt<[], { count: number; bytes: number }>;
    insertBlob: Stmt<[Uint8Array, string, number, Uint8Array]>;
    addOwnerBytes: Stmt<[string, number, number]>;
    addBlobTotals: Stmt<[number]>;
    mailboxStats: Stmt<[], { addresses: number; messages: number | null; bytes: number | null }>;
    addresses: Stmt<[], { address: Uint8Array }>;
  };

  private constructor(
    private readonly db: Db,
    private readonly limits: StoreLimits,
    /** The WAL file, opened for syncing it (SQLite writes it through its own descriptor). */
    private readonly walFd: number,
    private readonly syncFile: SyncFile,
  ) {
    const p = <P extends unknown[], R = unknown>(sql: string): Stmt<P, R> => db.prepare<P, R>(sql);
    this.s = {
      mailbox: p('SELECT last_seq, count, epoch_floor FROM mailboxes WHERE address = ?'),
      insertMailbox: p('INSERT INTO mailboxes VALUES (?, 1, 1, ?, ?, -1)'),
      bumpMailbox: p(
        'UPDATE mailboxes SET last_seq = last_seq + 1, count = count + 1, bytes = bytes + ? WHERE address = ?',
      ),
      // Separate statement so the common append does not touch the head_received index.
      bumpEmptyMailbox: p(
        'UPDATE mailboxes SET last_seq = last_seq + 1, count = 1, bytes = ?, head_received = ? WHERE address = ?',
      ),
      seqOfHash: p('SELECT seq FROM messages WHERE hash = ? AND address = ?'),
      insertMessage: p('INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)'),
      epoch: p('SELECT hash, seq FROM epochs WHERE address = ? AND epoch = ?'),
      insertEpoch: p('INSERT INTO epochs VALUES (?, ?, ?, ?)'),
      readAfter: p('SELECT seq, body FROM messages WHERE address = ? AND seq > ? ORDER BY seq LIMIT ?'),
      lastSeq: p('SELECT last_seq FROM mailboxes WHERE address = ?'),
      firstSeq: p('SELECT seq FROM messages WHERE address = ? ORDER BY seq LIMIT 1'),
      byHash: p('SELECT body FROM messages WHERE hash = ? LIMIT 1'),
      hasMessage: p('SELECT 1 AS one FROM messages WHERE hash = ? AND address = ?'),
      expiredHeads: p('SELECT address FROM mailboxes WHERE head_received < ?'),
      oversized: p('SELECT address, bytes FROM mailboxes WHERE bytes > ?'),
      scan: p('SELECT seq, received, size FROM messages WHERE address = ? ORDER BY seq'),
      deleteUpTo: p('DELETE FROM messages WHERE address = ? AND seq <= ?'),
      headAfter: p('SELECT received FROM messages WHERE address = ? AND seq > ? ORDER BY seq LIMIT 1'),
      shrinkMailbox: p(
        'UPDATE mailboxes SET count = count - ?, bytes = bytes - ?, head_received = ? WHERE address = ?',
      ),
      maxPrunedEpoch: p('SELECT max(epoch) AS epoch FROM epochs WHERE address = ? AND seq <= ?'),
      deleteEpochsUpTo: p('DELETE FROM epochs WHERE address = ? AND seq <= ?'),
      raiseFloor: p('UPDATE mailboxes SET epoch_floor = max(epoch_floor, ?) WHERE address = ?'),
      blob: p('SELECT body FROM blobs WHERE hash = ?'),
      hasBlob: p('SELECT 1 AS one FROM blobs WHERE hash = ?'),
      ownerBytes: p('SELECT bytes FROM blob_owners WHERE owner = ?'),
      blobTotals: p('SELECT count, bytes FROM blob_totals WHERE id = 0'),
      insertBlob: p('INSERT INTO blobs VALUES (?, ?, ?, ?)'),
      addOwnerBytes: p(
        'INSERT INTO blob_owners VALUES (?, ?) ON CONFLICT (owner) DO UPDATE SET bytes = bytes + ?',
      ),
      addBlobTotals: p('UPDATE blob_totals SET count = count + 1, bytes = bytes + ? WHERE id = 0'),
      mailboxStats: p(
        'SELECT count(*) AS addresses, sum(count) AS messages, sum(bytes) AS bytes FROM mailboxes WHERE count > 0',
      ),
      addresses: p('SELECT address FROM mailboxes WHERE count > 0 ORDER BY address'),
    };
    this.commit = db.transaction((batch: readonly PendingWrite[]) => batch.map((w) => w.apply()));
  }

  /**
   * Opens (creating if needed) the store in `dir` (created too) as `dir/relay.sqlite`.
   * Throws StoreError `io` when the directory or file cannot be created or opened, `corrupt` when
   * the file is not a SQLite database or has a newer schema than this code.
   */
  static open(dir: string, limits: StoreLimits, options: { syncFile?: SyncFile } = {}): RelayStore {
    let db: Db | undefined;
    try {
      mkdirSync(dir, { recursive: true });
      const database = new Database(join(dir, STORE_FILE), { timeout: BUSY_TIMEOUT_MS });
      db = database;
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new StoreError('io', `cannot enable WAL (journal_mode is ${String(mode)})`);
      // Commits are synced by the store itself, off the event loop (see the head of this file).
      db.pragma('synchronous = NORMAL');
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
      db.pragma(`cache_size = ${-CACHE_KIB}`);
      const version = db.pragma('user_version', { simple: true });
      if (version === 0) {
        const init = db.transaction(() => {
          database.exec(SCHEMA);
          database.pragma(`user_version = ${SCHEMA_VERSION}`);
        });
        init.immediate();
      } else if (version !== SCHEMA_VERSION) {
        throw new StoreError('corrupt', `unknown schema version ${String(version)} in ${dir}`);
      }
      // The WAL file exists once the database is open in WAL mode (created empty if not yet);
      // syncing the directory makes a newly created WAL file's name survive a power cut.
      const walFd = openSync(join(dir, `${STORE_FILE}-wal`), 'a');
      try {
        const dirFd = openSync(dir, 'r');
        try {
          fsyncSync(dirFd);
        } finally {
          closeSync(dirFd);
        }
      } catch (error) {
        closeSync(walFd);
        throw error;
      }
      return new RelayStore(database, limits, walFd, options.syncFile ?? fdatasync);
    } catch (error) {
      db?.close();
      throw toStoreError(error, `cannot open the store in ${dir}`);
    }
  }

  /**
   * Appends `message` to the mailbox of `address` and resolves once it is durable (committed, and
   * the WAL synced to disk). Appends arriving in the same event-loop turn are group-committed in one
   * transaction, in call order; each caller gets its own outcome.
   *
   * Dedup: if the same message is already stored at this address, resolves `appended` with
   * `duplicate: true` and its existing seq. (A message already pruned is appended anew.)
   *
   * `commitEpoch` (soft sequencing): the first message for (address, commitEpoch) wins; any other
   * message for it is refused `epoch-taken`, also when the winner was since pruned (the store then
   * refuses every commitEpoch up to the highest pruned one). The same winning message again is a
   * duplicate as above.
   *
   * Rejects: StoreError `closed` after `close()`; StoreError `io` when the transaction failed (the
   * whole batch is rejected and nothing of it was written); RangeError for a `commitEpoch` that is
   * not a non-negative safe integer or a `now` that is not finite.
   */
  append(address: Uint8Array, message: Uint8Array, options?: AppendOptions): Promise<AppendOutcome> {
    if (this.closed) return Promise.reject(new StoreError('closed', 'the store is closed'));
    if (this.failed !== undefined) return Promise.reject(this.failed);
    const epoch = options?.commitEpoch;
    if (epoch !== undefined && !(Number.isSafeInteger(epoch) && epoch >= 0)) {
      return Promise.reject(new RangeError(`commitEpoch must be a non-negative safe integer: ${epoch}`));
    }
    const now = options?.now ?? Date.now();
    if (!Number.isFinite(now)) return Promise.reject(new RangeError(`now must be finite: ${now}`));
    const hash = sha256(message);
    const committed = options?.committed;
    return this.enqueue(message.length, () =>
      this.applyAppend(address, message, hash, epoch, Math.floor(now), committed),
    );
  }

  private applyAppend(
    address: Uint8Array,
    message: Uint8Array,
    hash: Uint8Array,
    epoch: number | undefined,
    now: number,
    committed: (() => void) | undefined,
  ): AppendOutcome {
    const s = this.s;
    const existing = s.seqOfHash.get(hash, address);
    if (existing) return { kind: 'appended', seq: existing.seq, hash, duplicate: true };
    const box = s.mailbox.get(address);
    if (epoch !== undefined) {
      if (box && epoch <= box.epoch_floor) return { kind: 'refused', reason: 'epoch-taken' };
      const winner = s.epoch.get(address, epoch);
      if (winner) {
        return equalBytes(winner.hash, hash)
          ? { kind: 'appended', seq: winner.seq, hash, duplicate: true }
          : { kind: 'refused', reason: 'epoch-taken' };
      }
    }
    const seq = (box?.last_seq ?? 0) + 1;
    if (!box) s.insertMailbox.run(address, message.length, now);
    else if (box.count === 0) s.bumpEmptyMailbox.run(message.length, now, address);
    else s.bumpMailbox.run(message.length, address);
    this.wrote = true;
    s.insertMessage.run(address, seq, hash, now, message.length, message);
    if (epoch !== undefined) s.insertEpoch.run(address, epoch, hash, seq);
    this.committing.push({ address, seq, message, committed });
    return { kind: 'appended', seq, hash, duplicate: false };
  }

  /**
   * Sets the one listener told of every new message once it is durable (see {@link AppendListener});
   * `undefined` removes it. Duplicates and refused appends are not new messages.
   */
  onAppended(listener: AppendListener | undefined): void {
    this.appendListener = listener;
  }

  /**
   * Messages of `address` with seq > `afterSeq`, oldest first: at most `limit` of them and at most
   * `maxBytes` message bytes in total, except that the first one is returned whatever its size
   * (so a reader always progresses). Empty when there are none (or `limit` < 1). Messages whose
   * commit is not yet synced to disk are not returned (see the head of this file).
   */
  readAfter(address: Uint8Array, afterSeq: number, limit: number, maxBytes: number): StoredMessage[] {
    this.assertOpen();
    const out: StoredMessage[] = [];
    if (!(limit >= 1)) return out;
    const below = this.unsyncedSeqs.get(addressKey(address))?.first ?? Infinity;
    let bytes = 0;
    for (const row of this.s.readAfter.iterate(address, afterSeq, Math.floor(limit))) {
      if (row.seq >= below) break;
      if (out.length > 0 && bytes + row.body.length > maxBytes) break;
      bytes += row.body.length;
      out.push({ seq: row.seq, message: plain(row.body) });
    }
    return out;
  }

  /**
   * The highest seq ever assigned at `address` (also if since pruned) whose commit is synced to
   * disk; 0 when never appended to.
   */
  lastSeq(address: Uint8Array): number {
    this.assertOpen();
    const unsynced = this.unsyncedSeqs.get(addressKey(address));
    if (unsynced !== undefined) return unsynced.first - 1;
    return this.s.lastSeq.get(address)?.last_seq ?? 0;
  }

  /** The oldest retained seq of `address`, or `lastSeq + 1` when it holds no message. */
  firstSeq(address: Uint8Array): number {
    this.assertOpen();
    const after = this.lastSeq(address) + 1;
    return Math.min(this.s.firstSeq.get(address)?.seq ?? after, after);
  }

  /**
   * A retained message by the SHA-256 of its bytes (32 bytes), at any address: for
   * `/conclave/sync/1`, where an OpId is the SHA-256 of the sealed op.
   */
  getByHash(hash: Uint8Array): Uint8Array | undefined {
    this.assertOpen();
    const row = this.s.byHash.get(hash);
    return row && plain(row.body);
  }

  /** Whether `address` retains the message whose SHA-256 is `hash`. */
  hasMessage(address: Uint8Array, hash: Uint8Array): boolean {
    this.assertOpen();
    return this.s.hasMessage.get(hash, address) !== undefined;
  }

  /**
   * Stores a blob chunk under `hash` = SHA-256(`bytes`), counted against `owner`'s quota, and
   * resolves once durable (group-committed with appends). See {@link BlobPutOutcome}; the hash is
   * checked first, then existence, then the owner's quota, then the store's.
   * Rejects with StoreError `closed` or `io` like `append`.
   */
  putBlob(hash: Uint8Array, bytes: Uint8Array, owner: string): Promise<BlobPutOutcome> {
    if (this.closed) return Promise.reject(new StoreError('closed', 'the store is closed'));
    if (this.failed !== undefined) return Promise.reject(this.failed);
    if (!equalBytes(sha256(bytes), hash)) {
      return Promise.resolve({ kind: 'refused', reason: 'hash-mismatch' });
    }
    return this.enqueue(bytes.length, (): BlobPutOutcome => {
      const s = this.s;
      if (s.hasBlob.get(hash)) return { kind: 'exists' };
      const size = bytes.length;
      if ((s.ownerBytes.get(owner)?.bytes ?? 0) + size > this.limits.maxBlobBytesPerOwner) {
        return { kind: 'refused', reason: 'owner-quota' };
      }
      if ((s.blobTotals.get()?.bytes ?? 0) + size > this.limits.maxBlobStoreBytes) {
        return { kind: 'refused', reason: 'store-quota' };
      }
      this.wrote = true;
      s.insertBlob.run(hash, owner, size, bytes);
      s.addOwnerBytes.run(owner, size, size);
      s.addBlobTotals.run(size);
      return { kind: 'stored' };
    });
  }

  /** The blob chunk stored under `hash`, if any. */
  getBlob(hash: Uint8Array): Uint8Array | undefined {
    this.assertOpen();
    const row = this.s.blob.get(hash);
    return row && plain(row.body);
  }

  /** Whether a blob chunk is stored under `hash`. */
  hasBlob(hash: Uint8Array): boolean {
    this.assertOpen();
    return this.s.hasBlob.get(hash) !== undefined;
  }

  /**
   * Enforces retention, in one transaction, and returns how many messages (and message bytes) it
   * removed. Per address it removes a prefix of the log: the messages that arrived before
   * `now - retentionMs` (up to the first one that did not: with a clock that went backwards a
   * stale message may wait behind a newer one), then the oldest ones while the address holds more
   * than `maxMailboxBytes`. Seqs are untouched: `lastSeq` stays, `firstSeq` moves up.
   * Commit-epoch records of removed messages are dropped; the address's epoch floor rises to the
   * highest of them, so those epochs stay taken. `now` is Unix milliseconds.
   * Throws StoreError `closed`, or `io` (nothing removed).
   */
  prune(now: number): { messages: number; bytes: number } {
    this.assertOpen();
    const s = this.s;
    const cutoff = now - this.limits.retentionMs;
    let messages = 0;
    let bytes = 0;
    const removePrefix = (address: Uint8Array, upTo: number, count: number, size: number): void => {
      if (count === 0) return;
      s.deleteUpTo.run(address, upTo);
      s.shrinkMailbox.run(count, size, s.headAfter.get(address, upTo)?.received ?? null, address);
      const epoch = s.maxPrunedEpoch.get(address, upTo)?.epoch ?? null;
      if (epoch !== null) {
        s.deleteEpochsUpTo.run(address, upTo);
        s.raiseFloor.run(epoch, address);
      }
      messages += count;
      bytes += size;
    };
    const run = this.db.transaction(() => {
      for (const { address } of s.expiredHeads.all(cutoff)) {
        let upTo = 0;
        let count = 0;
        let size = 0;
        for (const row of s.scan.iterate(address)) {
          if (row.received >= cutoff) break;
          upTo = row.seq;
          count++;
          size += row.size;
        }
        removePrefix(address, upTo, count, size);
      }
      for (const box of s.oversized.all(this.limits.maxMailboxBytes)) {
        const excess = box.bytes - this.limits.maxMailboxBytes;
        let upTo = 0;
        let count = 0;
        let size = 0;
        for (const row of s.scan.iterate(box.address)) {
          if (size >= excess) break;
          upTo = row.seq;
          count++;
          size += row.size;
        }
        removePrefix(box.address, upTo, count, size);
      }
    });
    try {
      run.immediate();
    } catch (error) {
      throw toStoreError(error, 'prune failed');
    }
    return { messages, bytes };
  }

  /** Totals of retained messages and stored blobs. */
  stats(): StoreStats {
    this.assertOpen();
    const m = this.s.mailboxStats.get();
    const b = this.s.blobTotals.get();
    return {
      addresses: m?.addresses ?? 0,
      messages: m?.messages ?? 0,
      messageBytes: m?.bytes ?? 0,
      blobs: b?.count ?? 0,
      blobBytes: b?.bytes ?? 0,
    };
  }

  /** Every address that retains at least one message, in bytewise order (replication, catch-up). */
  addresses(): Uint8Array[] {
    this.assertOpen();
    return this.s.addresses.all().map((r) => plain(r.address));
  }

  /**
   * Commits the pending writes (their promises settle as usual), then closes the database.
   * Later calls to any method throw or reject StoreError `closed`; a second `close()` does nothing.
   */
  close(): void {
    if (this.closed) return;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    while (this.queue.length > 0) this.flush();
    // Everything committed is synced here, on this thread, before the database closes.
    if (this.failed === undefined && this.unsynced.length > 0) {
      try {
        fdatasyncSync(this.walFd);
        this.synced(this.unsynced.length);
      } catch (error) {
        this.syncFailed(error);
      }
    }
    this.closed = true;
    this.db.close();
    // A sync still running on the thread pool closes the file when it returns.
    if (this.syncing === 0) closeSync(this.walFd);
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreError('closed', 'the store is closed');
  }

  private enqueue<T>(bytes: number, work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        bytes,
        apply: () => {
          const result = work();
          return () => {
            resolve(result);
          };
        },
        fail: reject,
      });
      this.schedule();
    });
  }

  /**
   * Commits the queue at the end of this event-loop turn, unless a sync runs: then the writes wait
   * for it to return and go in the next group commit (as with SQLite syncing inside its commits,
   * where writes gathered while the loop waited for the disk; here the loop keeps serving).
   */
  private schedule(): void {
    if (this.syncing > 0) return;
    this.scheduled ??= setImmediate(() => {
      this.scheduled = undefined;
      if (this.syncing > 0) return;
      this.flush();
      if (this.queue.length > 0) this.schedule();
    });
  }

  /** Commits one batch from the head of the queue in one transaction (one sync). */
  private flush(): void {
    let n = 0;
    let bytes = 0;
    for (const w of this.queue) {
      if (n > 0 && (n >= MAX_BATCH_WRITES || bytes + w.bytes > MAX_BATCH_BYTES)) break;
      n++;
      bytes += w.bytes;
    }
    const batch = this.queue.splice(0, n);
    if (this.failed !== undefined) {
      for (const w of batch) w.fail(this.failed);
      return;
    }
    let settle: (() => void)[];
    this.committing = [];
    this.takeWrote();
    try {
      settle = this.commit.immediate(batch);
    } catch (error) {
      this.committing = [];
      const failure = toStoreError(error, 'write failed');
      for (const w of batch) w.fail(failure);
      return;
    }
    const fresh = this.committing;
    this.committing = [];
    const wrote = this.takeWrote();
    // No commit is made while a sync runs (see `schedule`), so the commits before this one are
    // synced (except when `close` commits what is left): one of only duplicates and refusals
    // has nothing to wait for.
    if (!wrote && this.unsynced.length === 0) {
      for (const f of settle) f();
      return;
    }
    for (const m of fresh) {
      const key = addressKey(m.address);
      const seqs = this.unsyncedSeqs.get(key);
      if (seqs === undefined) this.unsyncedSeqs.set(key, { first: m.seq, last: m.seq });
      else seqs.last = m.seq;
    }
    this.unsynced.push({ batch, settle, fresh });
    this.sync();
    // The sync runs on the thread pool meanwhile.
    for (const m of fresh) m.committed?.();
  }

  /** Whether the transaction wrote anything since the last call (and clears it). */
  private takeWrote(): boolean {
    const wrote = this.wrote;
    this.wrote = false;
    return wrote;
  }

  /**
   * Syncs the WAL on libuv's thread pool, covering every commit made so far; commits made while
   * it runs wait for the next one, which starts when it returns. One sync runs at a time.
   */
  private sync(): void {
    if (this.syncing > 0 || this.unsynced.length === 0 || this.closed || this.failed !== undefined) return;
    const covered = this.unsynced.length;
    this.syncing = covered;
    this.syncFile(this.walFd, (error) => {
      this.syncing = 0;
      if (this.closed) {
        // close() synced (or failed) what this covered, on its own.
        closeSync(this.walFd);
        return;
      }
      if (error === null) this.synced(covered);
      else this.syncFailed(error);
      // What arrived meanwhile is committed now, so the next sync covers it.
      if (this.queue.length > 0) this.schedule();
      this.sync();
    });
  }

  /**
   * The first `count` commits are on disk: tells the listener of their new messages (in seq
   * order), then settles their callers. Settling only queues the callers' continuations; the
   * listener runs before any of them.
   */
  private synced(count: number): void {
    const done = this.unsynced.splice(0, count);
    const listener = this.appendListener;
    for (const c of done) {
      for (const m of c.fresh) {
        const key = addressKey(m.address);
        const seqs = this.unsyncedSeqs.get(key);
        if (seqs !== undefined) {
          if (seqs.last <= m.seq) this.unsyncedSeqs.delete(key);
          else seqs.first = m.seq + 1;
        }
        if (listener !== undefined) listener(m.address, m.seq, m.message);
      }
      for (const f of c.settle) f();
    }
  }

  /**
   * A sync failed: the store takes no more writes, and every commit not known to be on disk is
   * rejected (its messages are never announced; after a restart they may be there, as after a
   * crash).
   */
  private syncFailed(error: unknown): void {
    this.failed = toStoreError(error, 'syncing the write-ahead log failed');
    for (const c of this.unsynced.splice(0)) for (const w of c.batch) w.fail(this.failed);
    for (const w of this.queue.splice(0)) w.fail(this.failed);
  }
}
