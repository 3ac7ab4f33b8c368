/**
 * The CLI's durable stores (ARCHITECTURE.md section 10) in one SQLite file: the op log
 * (`Storage`) and the chunk cache (`ChunkStore`). Each opener takes its own connection; both
 * may be given the same path, and every schema table lives in every file this code creates.
 *
 * Durability: WAL journal with `synchronous = FULL`, so a commit's WAL frames are fsync'd
 * before the call returns. better-sqlite3 is synchronous, so a method's promise settles only
 * after its transaction committed (or rolled back): a resolved write survives `kill -9` and
 * power loss. The price is that each write blocks the event loop for one fsync.
 *
 * Schema (version 2 in `PRAGMA user_version`, {@link APPLICATION_ID} in `PRAGMA application_id`),
 * all tables STRICT, so SQLite itself refuses a value of the wrong type:
 * - `ops`: one row per (space, op), `seq` = 0, 1, 2… per Space in store order; unique
 *   `(space, op_id)` finds an op and refuses a duplicate.
 * - `spaces`: per Space with ops, its op count (also the next `seq`).
 * - `heads`: per Space, its heads in canonical (sorted) order at `idx` 0, 1, 2…
 * - `meta`: small values by text key (stored as UTF-8, so keys must be well-formed strings).
 * - `chunk_entries` (hash, size, used) and `chunks` (hash, bytes): apart, so listing the entries
 *   reads no chunk bytes.
 * - `pins` (one row per manifest) and `pin_chunks` (its chunk hashes in order).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { ChunkEntry, ChunkPin, ChunkStore } from '../../shared/src/blob/chunkstore.js';
import { StorageError } from '../../shared/src/ports/storage.js';
import type { Storage, StoredOp } from '../../shared/src/ports/storage.js';
import { bytesKey, compareBytes } from '../../shared/src/protocol/ids.js';
import type { OpId, SpaceId } from '../../shared/src/protocol/ids.js';

/** Marks a file as ours in `PRAGMA application_id` ("Conc"), so a foreign SQLite file is refused. */
export const APPLICATION_ID = 0x436f6e63;
/** 2: ops keep their opened content (op format 2). */
const SCHEMA_VERSION = 2;
/** The 16 bytes every SQLite database file starts with. */
const SQLITE_MAGIC = 'SQLite format 3\0';
/**
 * Milliseconds SQLite waits for a lock held by another connection before failing with `io`.
 * Only another process can hold one across our calls (each call's transaction is synchronous),
 * and the wait blocks the event loop: fail fast.
 */
const BUSY_TIMEOUT_MS = 1000;
/** Ops read per query by `listOps`: bounds the memory held while a consumer iterates slowly. */
const LIST_BATCH = 500;

const SCHEMA = `
CREATE TABLE ops (
  space BLOB NOT NULL,
  seq INTEGER NOT NULL,
  op_id BLOB NOT NULL,
  sealed BLOB NOT NULL,
  op BLOB NOT NULL,
  content BLOB,
  PRIMARY KEY (space, seq),
  UNIQUE (space, op_id)
) STRICT;
CREATE TABLE spaces (space BLOB PRIMARY KEY, count INTEGER NOT NULL) STRICT, WITHOUT ROWID;
CREATE TABLE heads (
  space BLOB NOT NULL,
  idx INTEGER NOT NULL,
  head BLOB NOT NULL,
  PRIMARY KEY (space, idx)
) STRICT, WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
CREATE TABLE chunk_entries (
  hash BLOB PRIMARY KEY,
  size INTEGER NOT NULL,
  used INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE chunks (hash BLOB PRIMARY KEY, bytes BLOB NOT NULL) STRICT;
CREATE TABLE pins (manifest BLOB PRIMARY KEY) STRICT, WITHOUT ROWID;
CREATE TABLE pin_chunks (
  manifest BLOB NOT NULL,
  idx INTEGER NOT NULL,
  chunk BLOB NOT NULL,
  PRIMARY KEY (manifest, idx)
) STRICT, WITHOUT ROWID;
`;

/** Options of both openers. */
export interface SqliteOptions {
  /**
   * Bytes the database file may grow to (rounded down to whole pages, never below its current
   * size; the WAL beside it adds up to a few MiB between checkpoints). A write that needs more
   * rejects with `StorageError('quota')` and writes nothing. Applies to this connection only.
   * Default: no limit but the disk's.
   */
  readonly maxBytes?: number;
}

/** Options of {@link openSqliteStorage}. */
export interface SqliteStorageOptions extends SqliteOptions {
  /**
   * Test-only: called inside `putOp`'s transaction after the op's row is written and before the
   * heads are, so a test can throw there and check that nothing is kept.
   */
  readonly afterOpWrite?: () => void;
}

type Db = Database.Database;
/** A row as SQLite returns it: checked by the readers below before anything trusts it. */
type Row = Readonly<Record<string, unknown>>;
type Stmt<P extends unknown[]> = Database.Statement<P, Row>;

/**
 * Opens (creating it if absent) the op store in the SQLite file at `path`.
 *
 * Rejects with `StorageError`: `corrupt` when the file is not a SQLite database, is another
 * application's database, or has a schema version this code does not know (the file is left
 * untouched in all three cases); `io` when it cannot be created or opened. Rejects with
 * `RangeError` for a `maxBytes` that is not a positive safe integer. Once open, methods reject as the port says: `closed` after `close()`, `quota` when the disk
 * (or `maxBytes`) is full, `corrupt` when SQLite finds the file damaged or a record read back
 * is not of the shape written, `io` otherwise. A failed write wrote nothing.
 */
export function openSqliteStorage(path: string, options: SqliteStorageOptions = {}): Promise<Storage> {
  return open(path, options, 'storage', (conn) => sqliteStorage(conn, options));
}

/**
 * Opens (creating it if absent) the chunk store in the SQLite file at `path`, which may be the
 * same file as the op store's. Errors as {@link openSqliteStorage}.
 */
export function openSqliteChunkStore(path: string, options: SqliteOptions = {}): Promise<ChunkStore> {
  return open(path, options, 'chunk store', sqliteChunkStore);
}

function open<T>(
  path: string,
  options: SqliteOptions,
  what: string,
  build: (conn: Connection) => T,
): Promise<T> {
  const bad = optionsError(options);
  if (bad !== undefined) return Promise.reject(bad);
  try {
    return Promise.resolve(openDatabase(path, options, `the ${what} at ${path}`, build));
  } catch (e) {
    return Promise.reject(toStorageError(e, `cannot open the ${what} at ${path}`));
  }
}

function optionsError(options: SqliteOptions): RangeError | undefined {
  const max = options.maxBytes;
  return max === undefined || (Number.isSafeInteger(max) && max > 0)
    ? undefined
    : new RangeError(`maxBytes must be a positive safe integer: ${max}`);
}

function sqliteStorage(conn: Connection, options: SqliteStorageOptions): Storage {
  const db = conn.db;
  const p = <P extends unknown[]>(sql: string): Stmt<P> => db.prepare<P, Row>(sql);
  const s = {
    hasOp: p<[Uint8Array, Uint8Array]>('SELECT 1 AS one FROM ops WHERE space = ? AND op_id = ?'),
    getOp: p<[Uint8Array, Uint8Array]>('SELECT sealed, op, content FROM ops WHERE space = ? AND op_id = ?'),
    listOps: p<[Uint8Array, number, number]>(
      'SELECT seq, op_id, sealed, op, content FROM ops WHERE space = ? AND seq > ? ORDER BY seq LIMIT ?',
    ),
    insertOp: p<[Uint8Array, number, Uint8Array, Uint8Array, Uint8Array, Uint8Array | null]>(
      'INSERT INTO ops (space, seq, op_id, sealed, op, content) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    count: p<[Uint8Array]>('SELECT count FROM spaces WHERE space = ?'),
    setCount: p<[Uint8Array, number]>(
      'INSERT INTO spaces (space, count) VALUES (?, ?) ON CONFLICT (space) DO UPDATE SET count = excluded.count',
    ),
    spaces: p<[]>('SELECT space FROM spaces'),
    heads: p<[Uint8Array]>('SELECT head FROM heads WHERE space = ? ORDER BY idx'),
    clearHeads: p<[Uint8Array]>('DELETE FROM heads WHERE space = ?'),
    insertHead: p<[Uint8Array, number, Uint8Array]>('INSERT INTO heads (space, idx, head) VALUES (?, ?, ?)'),
    getMeta: p<[string]>('SELECT value FROM meta WHERE key = ?'),
    putMeta: p<[string, Uint8Array]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    deleteMeta: p<[string]>('DELETE FROM meta WHERE key = ?'),
  };

  const countOf = (space: Uint8Array): number => {
    const row = s.count.get(space);
    return row === undefined ? 0 : count(row, 'count');
  };

  const putOp = db.transaction((space: Uint8Array, op: StoredOp, heads: readonly Uint8Array[]): boolean => {
    if (s.hasOp.get(space, op.opId) !== undefined) return false;
    const seq = countOf(space);
    s.insertOp.run(space, seq, op.opId, op.sealed, op.op, op.content ?? null);
    options.afterOpWrite?.();
    s.setCount.run(space, seq + 1);
    s.clearHeads.run(space);
    for (const [i, head] of heads.entries()) s.insertHead.run(space, i, head);
    return true;
  });

  const putOps = db.transaction(
    (space: Uint8Array, ops: readonly StoredOp[], heads: readonly Uint8Array[]): number => {
      let seq = countOf(space);
      let stored = 0;
      for (const op of ops) {
        if (s.hasOp.get(space, op.opId) !== undefined) continue;
        s.insertOp.run(space, seq++, op.opId, op.sealed, op.op, op.content ?? null);
        if (stored++ === 0) options.afterOpWrite?.();
      }
      if (stored === 0) return 0;
      s.setCount.run(space, seq);
      s.clearHeads.run(space);
      for (const [i, head] of heads.entries()) s.insertHead.run(space, i, head);
      return stored;
    },
  );

  async function* listFrom(space: Uint8Array, from: number): AsyncGenerator<StoredOp> {
    let after = Math.max(0, from) - 1;
    for (;;) {
      // A batch per query, never a cursor held across a yield: the consumer may write meanwhile.
      const batch = await conn.run('listOps', () => s.listOps.all(space, after, LIST_BATCH));
      for (const row of batch) {
        after = count(row, 'seq');
        yield {
          opId: bytes(row, 'op_id') as OpId,
          sealed: bytes(row, 'sealed'),
          op: bytes(row, 'op'),
          content: optionalBytes(row, 'content'),
        };
      }
      if (batch.length < LIST_BATCH) return;
    }
  }

  return {
    putOp: (space, op, heads) =>
      conn.run('putOp', () => putOp.immediate(space, op, [...heads].sort(compareBytes))),

    putOps: (space, ops, heads) =>
      conn.run('putOps', () => putOps.immediate(space, ops, [...heads].sort(compareBytes))),

    getOp: (space, opId) =>
      conn.run('getOp', () => {
        const row = s.getOp.get(space, opId);
        return row === undefined
          ? undefined
          : {
              opId: opId.slice() as OpId,
              sealed: bytes(row, 'sealed'),
              op: bytes(row, 'op'),
              content: optionalBytes(row, 'content'),
            };
      }),

    hasOp: (space, opId) => conn.run('hasOp', () => s.hasOp.get(space, opId) !== undefined),

    getHeads: (space) => conn.run('getHeads', () => s.heads.all(space).map((r) => bytes(r, 'head') as OpId)),

    // Copied now: the generator's body runs only at the first `next()`.
    listOps: (space, from = 0) => listFrom(space.slice(), from),

    countOps: (space) => conn.run('countOps', () => countOf(space)),

    listSpaces: () => conn.run('listSpaces', () => s.spaces.all().map((r) => bytes(r, 'space') as SpaceId)),

    getMeta: (key) =>
      conn.run('getMeta', () => {
        const row = s.getMeta.get(key);
        return row === undefined ? undefined : bytes(row, 'value');
      }),

    putMeta: (key, value) =>
      conn.run('putMeta', () => {
        s.putMeta.run(key, value);
      }),

    deleteMeta: (key) =>
      conn.run('deleteMeta', () => {
        s.deleteMeta.run(key);
      }),

    close: () => conn.close(),
  };
}

function sqliteChunkStore(conn: Connection): ChunkStore {
  const db = conn.db;
  const p = <P extends unknown[]>(sql: string): Stmt<P> => db.prepare<P, Row>(sql);
  const s = {
    get: p<[Uint8Array]>('SELECT bytes FROM chunks WHERE hash = ?'),
    putChunk: p<[Uint8Array, Uint8Array]>(
      'INSERT INTO chunks (hash, bytes) VALUES (?, ?) ON CONFLICT (hash) DO UPDATE SET bytes = excluded.bytes',
    ),
    putEntry: p<[Uint8Array, number, number]>(
      'INSERT INTO chunk_entries (hash, size, used) VALUES (?, ?, ?) ' +
        'ON CONFLICT (hash) DO UPDATE SET size = excluded.size, used = excluded.used',
    ),
    deleteChunk: p<[Uint8Array]>('DELETE FROM chunks WHERE hash = ?'),
    deleteEntry: p<[Uint8Array]>('DELETE FROM chunk_entries WHERE hash = ?'),
    touch: p<[number, Uint8Array]>('UPDATE chunk_entries SET used = ? WHERE hash = ?'),
    entries: p<[]>('SELECT hash, size, used FROM chunk_entries'),
    putPin: p<[Uint8Array]>('INSERT INTO pins (manifest) VALUES (?) ON CONFLICT (manifest) DO NOTHING'),
    deletePin: p<[Uint8Array]>('DELETE FROM pins WHERE manifest = ?'),
    deletePinChunks: p<[Uint8Array]>('DELETE FROM pin_chunks WHERE manifest = ?'),
    insertPinChunk: p<[Uint8Array, number, Uint8Array]>(
      'INSERT INTO pin_chunks (manifest, idx, chunk) VALUES (?, ?, ?)',
    ),
    pins: p<[]>('SELECT manifest FROM pins'),
    pinChunks: p<[]>('SELECT manifest, chunk FROM pin_chunks ORDER BY manifest, idx'),
  };

  const put = db.transaction((hash: Uint8Array, chunk: Uint8Array, used: number) => {
    s.putChunk.run(hash, chunk);
    s.putEntry.run(hash, chunk.length, used);
  });
  const remove = db.transaction((hashes: readonly Uint8Array[]) => {
    for (const h of hashes) {
      s.deleteChunk.run(h);
      s.deleteEntry.run(h);
    }
  });
  const touch = db.transaction((uses: readonly { hash: Uint8Array; used: number }[]) => {
    for (const u of uses) s.touch.run(u.used, u.hash);
  });
  const putPin = db.transaction((manifest: Uint8Array, chunks: readonly Uint8Array[]) => {
    s.putPin.run(manifest);
    s.deletePinChunks.run(manifest);
    for (const [i, c] of chunks.entries()) s.insertPinChunk.run(manifest, i, c);
  });
  const deletePin = db.transaction((manifest: Uint8Array) => {
    s.deletePin.run(manifest);
    s.deletePinChunks.run(manifest);
  });
  // Both reads in one transaction, so a pin and its chunks are of the same moment.
  const readPins = db.transaction((): ChunkPin[] => {
    const pins = new Map<string, { manifest: Uint8Array; chunks: Uint8Array[] }>();
    for (const row of s.pins.all()) {
      const manifest = bytes(row, 'manifest');
      pins.set(bytesKey(manifest), { manifest, chunks: [] });
    }
    for (const row of s.pinChunks.all()) {
      const pin = pins.get(bytesKey(bytes(row, 'manifest')));
      if (pin === undefined) throw new StorageError('corrupt', 'a pin chunk has no pin');
      pin.chunks.push(bytes(row, 'chunk'));
    }
    return [...pins.values()];
  });

  return {
    get: (hash) =>
      conn.run('get', () => {
        const row = s.get.get(hash);
        return row === undefined ? undefined : bytes(row, 'bytes');
      }),

    put: (hash, chunk, used) =>
      conn.run('put', () => {
        put.immediate(hash, chunk, used);
      }),

    delete: (hashes) =>
      conn.run('delete', () => {
        remove.immediate(hashes);
      }),

    touch: (uses) =>
      conn.run('touch', () => {
        touch.immediate(uses);
      }),

    entries: () =>
      conn.run('entries', () =>
        s.entries
          .all()
          .map((r): ChunkEntry => ({ hash: bytes(r, 'hash'), size: count(r, 'size'), used: stamp(r) })),
      ),

    putPin: (pin) =>
      conn.run('putPin', () => {
        putPin.immediate(pin.manifest, pin.chunks);
      }),

    deletePin: (manifest) =>
      conn.run('deletePin', () => {
        deletePin.immediate(manifest);
      }),

    pins: () => conn.run('pins', () => readPins.deferred()),

    close: () => conn.close(),
  };
}

/** One open connection and its closed state; every method goes through `run`. */
class Connection {
  private open = true;

  constructor(
    readonly db: Db,
    private readonly name: string,
  ) {}

  /** Runs `f` now (synchronously, so it is atomic); settles with its result or a `StorageError`. */
  run<T>(what: string, f: () => T): Promise<T> {
    if (!this.open) return Promise.reject(new StorageError('closed', `${this.name} is closed`));
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(toStorageError(e, `${this.name}: ${what} failed`));
    }
  }

  close(): Promise<void> {
    if (!this.open) return Promise.resolve();
    this.open = false;
    try {
      this.db.close();
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(toStorageError(e, `${this.name}: close failed`));
    }
  }
}

/**
 * Opens the file as a database of this schema, creating it (owner-only) if absent, and builds a
 * store on it; closes it again if anything fails. Checks the header, then the application id and
 * schema version, before anything writes: a file that is not ours is refused unchanged (setting
 * WAL mode alone would rewrite its header).
 */
function openDatabase<T>(
  path: string,
  options: SqliteOptions,
  name: string,
  build: (conn: Connection) => T,
): T {
  ensureSqliteFile(path);
  let db: Db | undefined;
  try {
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    const appId = db.pragma('application_id', { simple: true });
    const version = db.pragma('user_version', { simple: true });
    if (appId === 0 && version === 0) {
      const tables = db.prepare<[], Row>('SELECT count(*) AS n FROM sqlite_schema').get();
      if (tables?.['n'] !== 0) throw notOurs(path, 'it holds tables of another application');
    } else if (appId !== APPLICATION_ID) {
      throw notOurs(path, `its application id is ${String(appId)}`);
    } else if (version !== SCHEMA_VERSION) {
      throw notOurs(path, `its schema version ${String(version)} is not ${SCHEMA_VERSION}`);
    }

    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal')
      throw new StorageError('io', `cannot enable WAL on ${path} (journal mode ${String(mode)})`);
    db.pragma('synchronous = FULL');
    if (version === 0) {
      const database = db;
      database
        .transaction(() => {
          // Checked again under the write lock: another process may have created it meanwhile.
          if (database.pragma('user_version', { simple: true }) !== 0) return;
          database.exec(SCHEMA);
          database.pragma(`application_id = ${APPLICATION_ID}`);
          database.pragma(`user_version = ${SCHEMA_VERSION}`);
        })
        .immediate();
    }
    if (options.maxBytes !== undefined) {
      const pageSize = db.pragma('page_size', { simple: true });
      if (typeof pageSize !== 'number' || pageSize <= 0) throw new StorageError('io', 'no page size');
      db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
    }
    return build(new Connection(db, name));
  } catch (e) {
    db?.close();
    throw e;
  }
}

/**
 * Creates `path` with owner-only permissions if absent (SQLite gives its WAL the same mode), or
 * checks that the existing file starts like a SQLite database; an empty file is one to SQLite.
 */
function ensureSqliteFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (created) {
      if (!isErrno(created, 'EEXIST')) throw created;
    }
    return;
  }
  try {
    const head = Buffer.alloc(SQLITE_MAGIC.length);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n > 0 && (n < head.length || head.toString('latin1') !== SQLITE_MAGIC)) {
      throw new StorageError(
        'corrupt',
        `${path} is not a SQLite database (its first bytes are not SQLite's)`,
      );
    }
  } finally {
    closeSync(fd);
  }
}

function notOurs(path: string, why: string): StorageError {
  return new StorageError('corrupt', `${path} is not a Conclave storage database: ${why}`);
}

function isErrno(e: unknown, code: string): boolean {
  return e instanceof Error && 'code' in e && e.code === code;
}

/** Maps a failure to the port's codes; SQLite's error stays the `cause`. */
function toStorageError(e: unknown, what: string): StorageError {
  if (e instanceof StorageError) return e;
  const code = e instanceof Database.SqliteError ? e.code : '';
  const detail = e instanceof Error ? e.message : String(e);
  const kind =
    code === 'SQLITE_FULL'
      ? 'quota'
      : code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB'
        ? 'corrupt'
        : 'io';
  return new StorageError(kind, `${what}: ${detail}`, { cause: e });
}

/** A BLOB column as a plain `Uint8Array` the caller owns (not a Buffer, whose `slice` shares memory). */
function bytes(row: Row, column: string): Uint8Array {
  const v = row[column];
  if (!(v instanceof Uint8Array)) throw new StorageError('corrupt', `a "${column}" value is not bytes`);
  // A view of the same memory when the Buffer owns all of it, else a copy of just its bytes.
  return v.byteOffset === 0 && v.byteLength === v.buffer.byteLength
    ? new Uint8Array(v.buffer, 0, v.byteLength)
    : new Uint8Array(v);
}

/** A count, seq or size column: a non-negative safe integer. */
function count(row: Row, column: string): number {
  const v = row[column];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new StorageError('corrupt', `a "${column}" value is not a count`);
  }
  return v;
}

/** The `used` stamp of a chunk entry: any safe integer. */
function stamp(row: Row): number {
  const v = row['used'];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw new StorageError('corrupt', 'a "used" value is not a safe integer');
  }
  return v;
}

/** A nullable BLOB column: `null` when NULL, else as {@link bytes}. */
function optionalBytes(row: Row, column: string): Uint8Array | null {
  return row[column] === null ? null : bytes(row, column);
}
