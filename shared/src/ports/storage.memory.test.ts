import { describe, expect, it } from 'vitest';
import type { OpId, SpaceId } from '../protocol/ids.js';
import { runStorageTests } from './storage.conformance.js';
import { memoryStorage } from './storage.memory.js';

runStorageTests('memory', () => Promise.resolve(memoryStorage()));

describe('memoryStorage', () => {
  it('keeps and returns the caller’s arrays without copying them, as documented', async () => {
    const store = memoryStorage();
    const space = new Uint8Array(16) as SpaceId;
    const op = {
      opId: new Uint8Array(32).fill(1) as OpId,
      sealed: new Uint8Array([1, 2]),
      op: new Uint8Array([3]),
    };
    const value = new Uint8Array([7]);
    await store.putOp(space, op, [op.opId]);
    await store.putMeta('k', value);
    const got = await store.getOp(space, op.opId);
    expect(got?.sealed).toBe(op.sealed);
    expect(got?.op).toBe(op.op);
    expect(await store.getMeta('k')).toBe(value);
    await store.close();
  });
});
