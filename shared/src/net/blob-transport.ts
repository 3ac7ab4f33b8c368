/**
 * Blobs over the relays (ARCHITECTURE.md section 7): the `BlobTransport` of blob.ts on a
 * `RelayPool`, which stores each chunk at the first relay that takes it (the relays copy it to
 * the replicas of its hash) and fetches it from the first that has it, checking its hash.
 */
import type { BlobTransport } from '../blob/transport.js';
import type { RelayPool } from './pool.js';

export function relayBlobTransport(pool: Pick<RelayPool, 'putBlob' | 'getBlob'>): BlobTransport {
  return {
    put: (hash, chunk) => pool.putBlob(hash, chunk),
    get: (hash) => pool.getBlob(hash),
  };
}
