// `sodium-native` ships no types; Conclave uses only its ChaCha20-Poly1305 (noise-crypto.node.ts).
declare module 'sodium-native' {
  /** The two functions of `sodium-native` used here (it ships no types of its own). */
  export interface SodiumAead {
    /** Seals `message` into `ciphertext` (message length + 16 bytes); returns the bytes written. */
    crypto_aead_chacha20poly1305_ietf_encrypt(
      ciphertext: Uint8Array,
      message: Uint8Array,
      ad: Uint8Array | null,
      nsec: null,
      nonce: Uint8Array,
      key: Uint8Array,
    ): number;
    /** Opens `ciphertext` into `message`; throws when it does not authenticate. */
    crypto_aead_chacha20poly1305_ietf_decrypt(
      message: Uint8Array,
      nsec: null,
      ciphertext: Uint8Array,
      ad: Uint8Array | null,
      nonce: Uint8Array,
      key: Uint8Array,
    ): number;
  }
  const sodium: SodiumAead;
  export default sodium;
}
