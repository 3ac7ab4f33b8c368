/**
 * Signatures. Ed25519 everywhere (user keys, device keys, op signatures). Implementations:
 * `webcrypto` (SubtleCrypto, async, the default) and `noble` (pure JS, for environments
 * without WebCrypto Ed25519). Both must pass `runEd25519Tests`.
 */

/** A private key that can sign; the private bytes may be unreachable (non-extractable). */
export interface SigningKey {
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** A 64-byte Ed25519 signature over `msg`. */
  sign(msg: Uint8Array): Promise<Uint8Array>;
}

export interface Ed25519 {
  /** A new random key pair. `extractable` keys can be exported with {@link exportSeed}. */
  generate(options?: { extractable?: boolean }): Promise<SigningKey>;
  /** The key pair of a 32-byte seed (the RFC 8032 private key). */
  fromSeed(seed: Uint8Array, options?: { extractable?: boolean }): Promise<SigningKey>;
  /** The 32-byte seed of an extractable key; throws for a non-extractable one. */
  exportSeed(key: SigningKey): Promise<Uint8Array>;
  /**
   * Whether `sig` is a valid signature of `msg` by `publicKey`. Never throws for malformed
   * keys or signatures: they verify `false`.
   */
  verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): Promise<boolean>;
  /**
   * Optional: `verify` of the message made of `parts` joined in order, for callers whose signed
   * bytes are pieces of a larger buffer. An implementation that copies the message anyway (into
   * a batch for another thread) saves the caller joining them first. Same answers as `verify`.
   */
  verifyParts?(publicKey: Uint8Array, parts: readonly Uint8Array[], sig: Uint8Array): Promise<boolean>;
}
