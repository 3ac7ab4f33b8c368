import { SealError } from '../protocol/errors.js';
import { bufferSource, bytesKey } from '../protocol/ids.js';

/**
 * AES-256-GCM with a raw 32-byte key, 12-byte nonce and associated data: what seals ops
 * (ARCHITECTURE.md section 3). A port because its cost dominates the pipeline after signature
 * checks, and each host has its fastest implementation: WebCrypto in browsers (`webCryptoAead`),
 * the native binding in Node hosts (`nodeAead` in aead.node.ts).
 */
export interface Aead {
  /** Ciphertext with the 16-byte tag appended. */
  encrypt(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plain: Uint8Array): Promise<Uint8Array>;
  /** The plaintext; rejects with `SealError('bad-seal')` when authentication fails. */
  decrypt(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Promise<Uint8Array>;
  /**
   * `decrypt` done at once, for hosts whose implementation is synchronous underneath (Node's
   * binding): the pipeline then opens an op without a promise hop. Throws what `decrypt` rejects with.
   */
  readonly decryptSync?: (
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    sealed: Uint8Array,
  ) => Uint8Array;
}

/** AES-GCM over SubtleCrypto, caching imported keys (one per epoch). */
export function webCryptoAead(subtle: SubtleCrypto = globalThis.crypto.subtle): Aead {
  const keys = new Map<string, Promise<CryptoKey>>();
  const imported = (raw: Uint8Array): Promise<CryptoKey> => {
    if (raw.length !== 32) return Promise.reject(new SealError('bad-seal', 'an epoch key is 32 bytes'));
    const k = bytesKey(raw);
    let p = keys.get(k);
    if (p === undefined) {
      if (keys.size >= 256) keys.clear();
      p = subtle.importKey('raw', bufferSource(raw), 'AES-GCM', false, ['encrypt', 'decrypt']);
      keys.set(k, p);
    }
    return p;
  };
  return {
    async encrypt(key, nonce, ad, plain) {
      const params = { name: 'AES-GCM', iv: bufferSource(nonce), additionalData: bufferSource(ad) };
      return new Uint8Array(await subtle.encrypt(params, await imported(key), bufferSource(plain)));
    },
    async decrypt(key, nonce, ad, sealed) {
      const params = { name: 'AES-GCM', iv: bufferSource(nonce), additionalData: bufferSource(ad) };
      const k = await imported(key);
      try {
        return new Uint8Array(await subtle.decrypt(params, k, bufferSource(sealed)));
      } catch {
        throw new SealError('bad-seal', 'authentication failed');
      }
    },
  };
}
