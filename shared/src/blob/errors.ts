/**
 * The error family of the blob layer. Every failure of an upload or download rejects with a
 * `BlobError`, whose `code` is stable; `message` says which chunk and why.
 */

export type BlobErrorCode =
  /** Content, a reference or a chunk is larger than the limits allow (limits.ts). */
  | 'too-large'
  /** The MIME type given to an upload is longer than its limit or not well-formed text. */
  | 'bad-mime'
  /** A reference is malformed: hash or key not 32 bytes, size not a non-negative integer, MIME too long. */
  | 'bad-ref'
  /** A chunk is neither in the cache nor at the transport. */
  | 'missing'
  /** The bytes served for a chunk do not hash to its address. */
  | 'hash-mismatch'
  /** The manifest does not open with the reference's key: a wrong key or a wrong reference. */
  | 'bad-key'
  /** The manifest opens but is malformed, or disagrees with the reference (size, MIME). */
  | 'bad-manifest'
  /**
   * A data chunk hashes right but does not open under the blob's key at its position: a
   * chunk of another blob, or of another position, listed by the manifest.
   */
  | 'bad-chunk'
  /** A chunk's length is not the one its position in a blob of the manifest's size implies. */
  | 'size-mismatch'
  /** The transport failed (`cause` holds its error). */
  | 'transport';

export class BlobError extends Error {
  override readonly name = 'BlobError';
  constructor(
    readonly code: BlobErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
