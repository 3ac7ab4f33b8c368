import { describe, expect, it } from 'vitest';
import type { Storage } from '../ports/storage.js';
import { StorageError } from '../ports/storage.js';
import { memoryStorage } from '../ports/storage.memory.js';
import { MAX_MAILBOX_MESSAGE_BYTES } from '../protocol/limits.js';
import { Outbox, OutboxError } from './outbox.js';

const A = new Uint8Array(32).fill(1);
const B = new Uint8Array(32).fill(2);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

function summary(outbox: Outbox): { id: number; address: number; message: string; commitEpoch?: number }[] {
  return outbox.pending().map((e) => ({
    id: e.id,
    address: e.address[0] ?? -1,
    message: str(e.message),
    ...(e.commitEpoch === undefined ? {} : { commitEpoch: e.commitEpoch }),
  }));
}

/** A storage whose `putMeta`/`deleteMeta` fail for keys the test picks, as a full disk would. */
function failingStorage(inner: Storage, fails: (op: 'put' | 'delete', key: string) => boolean): Storage {
  return {
    ...inner,
    putMeta: (key, value) =>
      fails('put', key) ? Promise.reject(new StorageError('quota', 'full')) : inner.putMeta(key, value),
    deleteMeta: (key) =>
      fails('delete', key) ? Promise.reject(new StorageError('io', 'broken')) : inner.deleteMeta(key),
  };
}

describe('Outbox', () => {
  it('persists an entry before enqueue resolves: a new Outbox over the same storage finds it', async () => {
    const storage = memoryStorage();
    const outbox = await Outbox.open(storage);
    const message = text('hello');
    const entry = await outbox.enqueue(A, message, { commitEpoch: 7 });
    message[0] = 0; // the caller's buffer is not kept
    // No close, no further call: what a crash right after enqueue leaves behind.
    const reopened = await Outbox.open(storage);
    expect(summary(reopened)).toEqual([{ id: entry.id, address: 1, message: 'hello', commitEpoch: 7 }]);
    expect(reopened.bytes).toBe(32 + 5);
  });

  it('keeps entries in enqueue order, removes them once sent, and never reuses an id after reopen', async () => {
    const storage = memoryStorage();
    const outbox = await Outbox.open(storage);
    const events: string[] = [];
    outbox.onChange((e) => events.push(`${e.kind}:${str(e.entry.message)}`));
    const [e1, e2, e3] = await Promise.all([
      outbox.enqueue(A, text('one')),
      outbox.enqueue(B, text('two')),
      outbox.enqueue(A, text('three')),
    ]);
    expect(summary(outbox).map((e) => e.message)).toEqual(['one', 'two', 'three']);

    expect(await outbox.markSent(e2.id, 'relay-1', 4)).toBe(true);
    expect(await outbox.markSent(e2.id, 'relay-2', 9)).toBe(false); // the other relay's ack came later
    expect(summary(outbox).map((e) => e.message)).toEqual(['one', 'three']);

    const reopened = await Outbox.open(storage);
    expect(summary(reopened).map((e) => e.message)).toEqual(['one', 'three']);
    const e4 = await reopened.enqueue(B, text('four'));
    expect(e4.id).toBeGreaterThan(e3.id);
    expect(await reopened.remove(e1.id)).toBe(true);
    expect(summary(await Outbox.open(storage)).map((e) => e.message)).toEqual(['three', 'four']);
    expect(events).toEqual(['enqueued:one', 'enqueued:two', 'enqueued:three', 'sent:two']);
  });

  it('refuses past the entry count with OutboxError full and changes nothing', async () => {
    const storage = memoryStorage();
    const outbox = await Outbox.open(storage, { maxEntries: 2 });
    await outbox.enqueue(A, text('one'));
    await outbox.enqueue(A, text('two'));
    const refused = await outbox.enqueue(A, text('three')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OutboxError);
    expect((refused as OutboxError).code).toBe('full');
    expect(outbox.length).toBe(2);
    expect(summary(await Outbox.open(storage)).map((e) => e.message)).toEqual(['one', 'two']);
    // The refused one took no id: room made by an ack is usable right away.
    await outbox.markSent(0, 'r', 1);
    expect((await outbox.enqueue(A, text('three'))).id).toBe(2);
  });

  it('refuses past the byte budget with OutboxError full, and an over-size message with tooLarge', async () => {
    const storage = memoryStorage();
    const outbox = await Outbox.open(storage, { maxBytes: 100 });
    await outbox.enqueue(A, new Uint8Array(60)); // 92 bytes with the address
    await expect(outbox.enqueue(A, new Uint8Array(1))).rejects.toMatchObject({
      name: 'OutboxError',
      code: 'full',
    });
    await expect(outbox.enqueue(A, new Uint8Array(MAX_MAILBOX_MESSAGE_BYTES + 1))).rejects.toMatchObject({
      name: 'OutboxError',
      code: 'tooLarge',
    });
    expect(outbox.length).toBe(1);
    expect((await Outbox.open(storage)).length).toBe(1);
  });

  it('an enqueue whose index write failed is not there after reopen, and its slot is reused cleanly', async () => {
    const inner = memoryStorage();
    let failIndex = true;
    const storage = failingStorage(inner, (op, key) => op === 'put' && key === 'outbox/index' && failIndex);
    const outbox = await Outbox.open(storage);
    await expect(outbox.enqueue(A, text('lost'))).rejects.toBeInstanceOf(StorageError);
    expect(outbox.length).toBe(0);
    expect((await Outbox.open(inner)).length).toBe(0);
    failIndex = false;
    await outbox.enqueue(A, text('kept'));
    expect(summary(await Outbox.open(inner)).map((e) => e.message)).toEqual(['kept']);
  });

  it('an entry deleted before its index update (crash in between) is skipped on reopen', async () => {
    const inner = memoryStorage();
    const outbox = await Outbox.open(inner);
    const e1 = await outbox.enqueue(A, text('one'));
    await outbox.enqueue(A, text('two'));
    const broken = await Outbox.open(
      failingStorage(inner, (op, key) => op === 'put' && key === 'outbox/index'),
    );
    await expect(broken.markSent(e1.id, 'r', 1)).rejects.toBeInstanceOf(StorageError);
    const reopened = await Outbox.open(inner);
    expect(summary(reopened).map((e) => e.message)).toEqual(['two']);
  });

  it('drops an entry that does not decode and refuses to open over a corrupt index', async () => {
    const storage = memoryStorage();
    const outbox = await Outbox.open(storage);
    const e1 = await outbox.enqueue(A, text('one'));
    await outbox.enqueue(A, text('two'));
    await storage.putMeta(`outbox/${e1.id}`, new Uint8Array([99, 0, 0]));
    const reopened = await Outbox.open(storage);
    expect(reopened.dropped).toBe(1);
    expect(summary(reopened).map((e) => e.message)).toEqual(['two']);

    await storage.putMeta('outbox/index', new Uint8Array(5));
    await expect(Outbox.open(storage)).rejects.toMatchObject({ name: 'OutboxError', code: 'corrupt' });
  });
});
