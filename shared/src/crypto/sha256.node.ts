import { createHash } from 'node:crypto';

/** SHA-256 over Node's native binding, for Node hosts: the same bytes as `sha256`, about 3x faster. */
export function nodeSha256(data: Uint8Array): Uint8Array {
  // Copied out of the Buffer so no pooled memory is kept alive by the id.
  return new Uint8Array(createHash('sha256').update(data).digest());
}
