import { sha256 } from '../crypto/sha256.js';
import { bytesKey, equalBytes, toHex } from '../protocol/ids.js';
import { BlobError } from './errors.js';
import { MAX_CHUNK_CIPHERTEXT_BYTES } from './limits.js';
import type { BlobTransport } from './transport.js';

/**
 * A `BlobTransport` in memory, checking uploads as a relay does (hash and size). For tests and
 * for a peer without relays. Keeps copies, so a caller's later change to an array it gave or
 * got changes nothing stored. `delete` and `size` let tests simulate a relay that lost a chunk.
 */
export class MemoryBlobTransport implements BlobTransport {
  readonly #chunks = new Map<string, Uint8Array>();

  put(hash: Uint8Array, chunk: Uint8Array): Promise<void> {
    if (chunk.length > MAX_CHUNK_CIPHERTEXT_BYTES) {
      return Promise.reject(new BlobError('too-large', `chunk of ${chunk.length} bytes`));
    }
    if (!equalBytes(sha256(chunk), hash)) {
      return Promise.reject(new BlobError('hash-mismatch', `chunk is not ${toHex(hash)}`));
    }
    const k = bytesKey(hash);
    if (!this.#chunks.has(k)) this.#chunks.set(k, chunk.slice());
    return Promise.resolve();
  }

  get(hash: Uint8Array): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#chunks.get(bytesKey(hash))?.slice());
  }

  /** Forgets the chunk under `hash`; whether it was there. */
  delete(hash: Uint8Array): boolean {
    return this.#chunks.delete(bytesKey(hash));
  }

  /** Chunks held. */
  get size(): number {
    return this.#chunks.size;
  }
}
