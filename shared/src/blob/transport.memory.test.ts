import { describe, expect, it } from 'vitest';
import { sha256 } from '../crypto/sha256.js';
import { toHex } from '../protocol/ids.js';
import { BlobError } from './errors.js';
import { MAX_CHUNK_CIPHERTEXT_BYTES } from './limits.js';
import { MemoryBlobTransport } from './transport.memory.js';

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e: unknown = await p.then(
    () => expect.fail('expected a rejection'),
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(BlobError);
  return (e as BlobError).code;
}

describe('MemoryBlobTransport', () => {
  const chunk = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const hash = sha256(chunk);

  it('serves what was put by its hash, and nothing for an unknown hash', async () => {
    const t = new MemoryBlobTransport();
    await t.put(hash, chunk);
    await t.put(hash, chunk);
    expect(t.size).toBe(1);
    expect(toHex((await t.get(hash)) ?? new Uint8Array(0))).toBe(toHex(chunk));
    expect(await t.get(sha256(new Uint8Array([1])))).toBeUndefined();
  });

  it('refuses, as a relay does, a chunk that is not its hash’s or is over the chunk limit', async () => {
    const t = new MemoryBlobTransport();
    expect(await codeOf(t.put(sha256(new Uint8Array([1])), chunk))).toBe('hash-mismatch');
    const big = new Uint8Array(MAX_CHUNK_CIPHERTEXT_BYTES + 1);
    expect(await codeOf(t.put(sha256(big), big))).toBe('too-large');
    const largest = new Uint8Array(MAX_CHUNK_CIPHERTEXT_BYTES);
    await t.put(sha256(largest), largest);
    expect(t.size).toBe(1);
  });

  it('keeps its own copies, and forgets a deleted chunk', async () => {
    const t = new MemoryBlobTransport();
    const given = chunk.slice();
    await t.put(hash, given);
    given.fill(0);
    (await t.get(hash))?.fill(0);
    expect(toHex((await t.get(hash)) ?? new Uint8Array(0))).toBe(toHex(chunk));
    expect(t.delete(hash)).toBe(true);
    expect(await t.get(hash)).toBeUndefined();
    expect(t.delete(hash)).toBe(false);
  });
});
