/**
 * Where encrypted chunks go and come from: the relays (ARCHITECTURE.md section 7). A port, so
 * the blob code runs the same over the network and in tests. The network implementation
 * speaks `/conclave/blob/1` to the client's relays (it comes with the sync clients, section
 * 8); {@link MemoryBlobTransport} serves tests.
 *
 * A transport moves opaque ciphertext by address and is trusted for nothing: the caller
 * verifies every chunk it gets against its hash (section 12: a relay reads nothing, and
 * whatever it alters is detected).
 */
export interface BlobTransport {
  /**
   * Stores `chunk` under `hash`, which is SHA-256(chunk). Resolves once the chunk is stored
   * (a relay: durably). Storing a chunk that is already present resolves and changes nothing.
   *
   * Errors: rejects with `BlobError('hash-mismatch')` if `hash` is not the chunk's SHA-256,
   * `BlobError('too-large')` for a chunk over `MAX_CHUNK_CIPHERTEXT_BYTES`; with any other
   * error when the chunk could not be stored.
   */
  put(hash: Uint8Array, chunk: Uint8Array): Promise<void>;
  /**
   * The chunk stored under `hash`, or `undefined` when no source has it. The bytes are
   * unverified: they may be anything. Rejects when the transport itself fails.
   */
  get(hash: Uint8Array): Promise<Uint8Array | undefined>;
}
