/**
 * Child process of the crash test in storage.sqlite.test.ts (not a module of the CLI).
 * Usage: `node --import tsx cli/src/testing/sqlite-writer.ts FILE`
 *
 * Opens the op store and the chunk store on FILE (two connections, one file) and, for i = 0, 1,
 * 2…, stores {@link crashOp}(i) with itself as the only head, sets meta `last` to i and stores
 * {@link crashChunk}(i). It prints the line `<i> <opId hex>` only after all three resolved, so
 * every printed line is a write the stores promised was durable. The test kills it with SIGKILL.
 */
import { createHash } from 'node:crypto';
import { toHex } from '../../../shared/src/protocol/ids.js';
import type { OpId, SpaceId } from '../../../shared/src/protocol/ids.js';
import type { StoredOp } from '../../../shared/src/ports/storage.js';
import { openSqliteChunkStore, openSqliteStorage } from '../storage.sqlite.js';

/** Writes before exiting normally (the test kills the process long before). */
const MAX_WRITES = 100_000;

export const CRASH_SPACE = Uint8Array.from({ length: 16 }, (_, i) => 0xc0 + i) as SpaceId;
export const LAST_KEY = 'last';

/** The op written at step `i`: distinct content of varying size; `opId` is SHA-256 of `sealed`. */
export function crashOp(i: number): StoredOp {
  const op = Uint8Array.from({ length: 16 + (i % 700) }, (_, j) => (i * 31 + j * 7) & 0xff);
  new DataView(op.buffer).setUint32(0, i);
  const sealed = new Uint8Array(op.length + 12);
  sealed.set(op, 12);
  return { opId: new Uint8Array(createHash('sha256').update(sealed).digest()) as OpId, sealed, op };
}

/** The chunk written at step `i`, stored under the hash of its op. */
export function crashChunk(i: number): Uint8Array {
  return Uint8Array.from({ length: 100 + (i % 5000) }, (_, j) => (i + j * 13) & 0xff);
}

/** Meta `last` as written at step `i`. */
export function lastValue(i: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, i);
  return b;
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined) throw new Error('usage: sqlite-writer.ts FILE');
  const storage = await openSqliteStorage(file);
  const chunks = await openSqliteChunkStore(file);
  for (let i = 0; i < MAX_WRITES; i++) {
    const op = crashOp(i);
    if (!(await storage.putOp(CRASH_SPACE, op, [op.opId]))) throw new Error(`op ${i} was already stored`);
    await storage.putMeta(LAST_KEY, lastValue(i));
    await chunks.put(op.opId, crashChunk(i), i);
    process.stdout.write(`${i} ${toHex(op.opId)}\n`);
  }
  await chunks.close();
  await storage.close();
}

if (process.argv[1]?.endsWith('sqlite-writer.ts') === true) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
