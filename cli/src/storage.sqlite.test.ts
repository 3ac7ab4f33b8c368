import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { runChunkStoreTests } from '../../shared/src/blob/chunkstore.conformance.js';
import { runStorageTests } from '../../shared/src/ports/storage.conformance.js';
import { StorageError } from '../../shared/src/ports/storage.js';
import type { Storage, StoredOp } from '../../shared/src/ports/storage.js';
import { toHex } from '../../shared/src/protocol/ids.js';
import type { OpId, SpaceId } from '../../shared/src/protocol/ids.js';
import { APPLICATION_ID, openSqliteChunkStore, openSqliteStorage } from './storage.sqlite.js';
import { CRASH_SPACE, LAST_KEY, crashChunk, crashOp, lastValue } from './testing/sqlite-writer.js';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'conclave-cli-sqlite-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
const freshFile = (): string => join(dir, `store-${++files}.sqlite`);

runStorageTests('SQLite file', () => openSqliteStorage(freshFile()));

runChunkStoreTests('SQLite file', () => {
  const file = freshFile();
  return () => openSqliteChunkStore(file);
});

const space = Uint8Array.from({ length: 16 }, (_, i) => i + 1) as SpaceId;

function makeOp(n: number, size = 40): StoredOp {
  const sealed = Uint8Array.from({ length: size }, (_, i) => (i * n + 3) & 0xff);
  return {
    opId: Uint8Array.from({ length: 32 }, (_, i) => (i + n * 31) & 0xff) as OpId,
    sealed,
    op: sealed.slice(8),
  };
}

async function snapshot(store: Storage): Promise<{ ops: string[]; heads: string[]; count: number }> {
  const ops: string[] = [];
  for await (const op of store.listOps(space))
    ops.push(`${toHex(op.opId)} ${toHex(op.sealed)} ${toHex(op.op)}`);
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

/** Writes behind the stores' back, as a damaged file or another program would. */
function raw(file: string, write: (db: Database.Database) => void): void {
  const db = new Database(file);
  try {
    write(db);
  } finally {
    db.close();
  }
}

describe('openSqliteStorage and openSqliteChunkStore', () => {
  const h = Uint8Array.from({ length: 32 }, (_, i) => i);

  it('keep every op, heads, meta, chunk and pin across close and reopen, both in one file', async () => {
    const file = freshFile();
    const other = Uint8Array.from({ length: 16 }, () => 0xcc) as SpaceId;
    const ops = [makeOp(1), makeOp(2), makeOp(3, 70_000)];

    const storage = await openSqliteStorage(file);
    const chunks = await openSqliteChunkStore(file);
    for (const op of ops) await storage.putOp(space, op, [op.opId]);
    await storage.putOp(other, ops[0] as StoredOp, []);
    await storage.putMeta('cursor', new Uint8Array([5, 6]));
    await chunks.put(h, new Uint8Array([7, 8, 9]), 42);
    await chunks.putPin({ manifest: h, chunks: [h, h] });
    const before = await snapshot(storage);
    await storage.close();
    await chunks.close();

    const storage2 = await openSqliteStorage(file);
    const chunks2 = await openSqliteChunkStore(file);
    expect(await snapshot(storage2)).toEqual(before);
    expect((await storage2.listSpaces()).map(toHex).sort()).toEqual([toHex(space), toHex(other)].sort());
    expect(toHex((await storage2.getMeta('cursor')) ?? new Uint8Array(0))).toBe('0506');
    expect(toHex((await chunks2.get(h)) ?? new Uint8Array(0))).toBe('070809');
    expect(await chunks2.entries()).toEqual([{ hash: h, size: 3, used: 42 }]);
    expect(await chunks2.pins()).toEqual([{ manifest: h, chunks: [h, h] }]);
    // The order continues where it stopped, and a known op is still a duplicate.
    expect(await storage2.putOp(space, ops[1] as StoredOp, [])).toBe(false);
    const next = makeOp(4);
    expect(await storage2.putOp(space, next, [next.opId])).toBe(true);
    expect((await snapshot(storage2)).count).toBe(4);
    expect((await snapshot(storage2)).ops.at(-1)).toBe(
      `${toHex(next.opId)} ${toHex(next.sealed)} ${toHex(next.op)}`,
    );
    await storage2.close();
    await chunks2.close();
  });

  it('create an owner-only file in WAL mode, marked as Conclave’s', async () => {
    const file = freshFile();
    const storage = await openSqliteStorage(file);
    await storage.putMeta('k', new Uint8Array([1]));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const peek = new Database(file, { readonly: true });
    expect(peek.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(peek.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    peek.close();
    await storage.close();
  });

  describe('refuse a file that is not theirs with "corrupt", leaving it byte-identical', () => {
    async function expectRefused(file: string, message: RegExp): Promise<void> {
      const before = readFileSync(file);
      for (const opening of [openSqliteStorage(file), openSqliteChunkStore(file)]) {
        const e = await rejection(opening);
        expect(e.code).toBe('corrupt');
        expect(e.message).toMatch(message);
      }
      expect(readFileSync(file).equals(before)).toBe(true);
      expect(existsSync(`${file}-wal`)).toBe(false);
      expect(existsSync(`${file}-journal`)).toBe(false);
    }

    it('garbage bytes', async () => {
      const file = freshFile();
      writeFileSync(
        file,
        Uint8Array.from({ length: 8192 }, (_, i) => (i * 7919 + 13) & 0xff),
      );
      await expectRefused(file, /is not a SQLite database/);
    });

    it('text, and a file shorter than a SQLite header', async () => {
      const text = freshFile();
      writeFileSync(text, 'this is not a sqlite database, just some text\n'.repeat(100));
      await expectRefused(text, /is not a SQLite database/);
      const short = freshFile();
      writeFileSync(short, 'SQLite');
      await expectRefused(short, /is not a SQLite database/);
    });

    it('a SQLite database of another application', async () => {
      const file = freshFile();
      raw(file, (db) => {
        db.exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hello')");
      });
      await expectRefused(file, /not a Conclave storage database: it holds tables of another application/);
      const marked = freshFile();
      raw(marked, (db) => {
        db.pragma('application_id = 1234');
      });
      await expectRefused(marked, /application id is 1234/);
    });

    it('a newer schema version', async () => {
      const file = freshFile();
      const s = await openSqliteStorage(file);
      await s.close();
      raw(file, (db) => {
        db.pragma('user_version = 3');
      });
      await expectRefused(file, /schema version 3 is not 2/);
    });
  });

  it('report a file SQLite finds damaged as "corrupt"', async () => {
    const file = freshFile();
    const s = await openSqliteStorage(file);
    for (let i = 1; i <= 50; i++) await s.putOp(space, makeOp(i, 2000), []);
    await s.close();
    // Keep the 100-byte header, damage every page after it.
    const bytes = readFileSync(file);
    bytes.fill(0xa5, 100);
    writeFileSync(file, bytes);
    const e = await openSqliteStorage(file).then(
      async (reopened) => {
        try {
          return await rejection(snapshot(reopened));
        } finally {
          await reopened.close();
        }
      },
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(StorageError);
    expect((e as StorageError).code).toBe('corrupt');
  });

  it('reject records not of the shape written with "corrupt"', async () => {
    const file = freshFile();
    const storage = await openSqliteStorage(file);
    const chunks = await openSqliteChunkStore(file);
    const op = makeOp(1);
    await storage.putOp(space, op, [op.opId]);
    await chunks.put(h, new Uint8Array([1, 2, 3]), 1);
    raw(file, (db) => {
      db.prepare('UPDATE spaces SET count = -1').run();
      db.prepare('UPDATE chunk_entries SET used = ?').run(2n ** 60n);
      db.prepare('INSERT INTO pin_chunks VALUES (?, 0, ?)').run(new Uint8Array([9]), h);
    });
    expect((await rejection(storage.countOps(space))).code).toBe('corrupt');
    expect((await rejection(storage.putOp(space, makeOp(2), []))).code).toBe('corrupt');
    expect((await rejection(chunks.entries())).code).toBe('corrupt');
    expect((await rejection(chunks.pins())).code).toBe('corrupt');
    // What was not damaged still reads.
    expect(toHex((await chunks.get(h)) ?? new Uint8Array(0))).toBe('010203');
    expect(await storage.hasOp(space, op.opId)).toBe(true);
    await storage.close();
    await chunks.close();
  });

  for (const [method, n] of [
    ['putOp', 1],
    ['putOps', 3],
  ] as const) {
    it(`keep no op nor heads when ${method} of ${n} fails between its writes, and allow a retry`, async () => {
      let armed = false;
      const store = await openSqliteStorage(freshFile(), {
        afterOpWrite: () => {
          if (armed) throw new Error('interrupted');
        },
      });
      const first = makeOp(1);
      await store.putOp(space, first, [first.opId]);
      const before = await snapshot(store);
      const batch = Array.from({ length: n }, (_, i) => makeOp(i + 2));
      const write = (): Promise<unknown> =>
        method === 'putOp'
          ? store.putOp(space, batch[0] as StoredOp, [batch[0]?.opId ?? first.opId, first.opId])
          : store.putOps(space, batch, [first.opId]);
      armed = true;
      const e = await rejection(write());
      armed = false;
      expect(e.code).toBe('io');
      expect(e.cause).toBeInstanceOf(Error);
      expect(await snapshot(store)).toEqual(before);
      for (const op of batch) expect(await store.hasOp(space, op.opId)).toBe(false);
      await write();
      expect((await snapshot(store)).count).toBe(n + 1);
      await store.close();
    });
  }

  it('reject with "quota" when the file would outgrow maxBytes, writing nothing', async () => {
    const file = freshFile();
    const store = await openSqliteStorage(file, { maxBytes: 256 * 1024 });
    const chunks = await openSqliteChunkStore(file, { maxBytes: 256 * 1024 });
    let n = 0;
    let error: StorageError | undefined;
    let before = await snapshot(store);
    while (error === undefined && n < 100) {
      const op = makeOp(++n, 30_000);
      before = await snapshot(store);
      error = await store.putOp(space, op, [op.opId]).then(
        () => undefined,
        (e: unknown) => e as StorageError,
      );
    }
    expect(error).toBeInstanceOf(StorageError);
    expect(error?.code).toBe('quota');
    expect(await snapshot(store)).toEqual(before);
    expect(await store.hasOp(space, makeOp(n, 30_000).opId)).toBe(false);
    expect((await rejection(chunks.put(h, new Uint8Array(100_000), 1))).code).toBe('quota');
    expect(await chunks.entries()).toEqual([]);
    // Reads still work, and a write that fits still succeeds.
    await store.putMeta('small', new Uint8Array([1]));
    expect(await store.getMeta('small')).toEqual(new Uint8Array([1]));
    await store.close();
    await chunks.close();
  });

  it('reject a maxBytes that is not a positive safe integer with RangeError', async () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN]) {
      await expect(openSqliteStorage(freshFile(), { maxBytes })).rejects.toThrow(RangeError);
      await expect(openSqliteChunkStore(freshFile(), { maxBytes })).rejects.toThrow(RangeError);
    }
  });

  it('reject with "io" when the file cannot be created', async () => {
    const e = await rejection(openSqliteStorage(join(dir, 'no such folder', 'x.sqlite')));
    expect(e.code).toBe('io');
    expect((await rejection(openSqliteChunkStore(dir))).code).toBe('io');
  });
});

describe('a writer killed with SIGKILL in the middle of its writes', () => {
  /** Acknowledged steps after which the writer is killed; it keeps writing until then. */
  const KILL_AFTER = 300;

  it('loses none of the writes it acknowledged, and the stores open cleanly', async () => {
    const file = freshFile();
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/src/testing/sqlite-writer.ts', file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let lines = 0;
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      const s = d.toString();
      out += s;
      for (const c of s) if (c === '\n') lines++;
      if (lines >= KILL_AFTER) child.kill('SIGKILL');
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) =>
      child.on('close', (c, s) => {
        done([c, s]);
      }),
    );
    clearTimeout(guard);
    expect(err).toBe('');
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGKILL' });

    // Every complete line is an acknowledged step; a torn last line is ignored.
    const acks = out.split('\n').slice(0, -1);
    expect(acks.length).toBeGreaterThanOrEqual(KILL_AFTER);
    for (const [i, line] of acks.entries()) expect(line).toBe(`${i} ${toHex(crashOp(i).opId)}`);

    const storage = await openSqliteStorage(file);
    const chunks = await openSqliteChunkStore(file);
    try {
      // At least every acknowledged op, maybe a few more written but not yet printed: in order,
      // with no gap and nothing that was not written.
      const count = await storage.countOps(CRASH_SPACE);
      expect(count).toBeGreaterThanOrEqual(acks.length);
      let i = 0;
      for await (const op of storage.listOps(CRASH_SPACE)) {
        const want = crashOp(i++);
        expect(toHex(op.opId)).toBe(toHex(want.opId));
        expect(toHex(op.sealed)).toBe(toHex(want.sealed));
        expect(toHex(op.op)).toBe(toHex(want.op));
      }
      expect(i).toBe(count);
      expect((await storage.getHeads(CRASH_SPACE)).map(toHex)).toEqual([toHex(crashOp(count - 1).opId)]);

      const last = await storage.getMeta(LAST_KEY);
      const lastStep = last === undefined ? -1 : new DataView(last.buffer, last.byteOffset).getUint32(0);
      expect(lastStep).toBeGreaterThanOrEqual(acks.length - 1);
      expect(lastStep).toBeLessThan(count);
      expect(toHex(last ?? new Uint8Array(0))).toBe(toHex(lastValue(lastStep)));

      const entries = await chunks.entries();
      expect(entries.length).toBeGreaterThanOrEqual(acks.length);
      expect(entries.length).toBeLessThanOrEqual(count);
      for (let k = 0; k < acks.length; k++) {
        const chunk = await chunks.get(crashOp(k).opId);
        expect(toHex(chunk ?? new Uint8Array(0)), `chunk ${k}`).toBe(toHex(crashChunk(k)));
      }

      // The stores take new writes after the crash.
      const next = crashOp(count);
      expect(await storage.putOp(CRASH_SPACE, next, [next.opId])).toBe(true);
    } finally {
      await storage.close();
      await chunks.close();
    }
  });
});
