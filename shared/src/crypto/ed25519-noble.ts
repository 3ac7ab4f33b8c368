import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import type { Ed25519, SigningKey } from '../ports/crypto.js';
import { KEY_BYTES, SIG_BYTES } from '../protocol/ids.js';

interface Held {
  readonly seed: Uint8Array;
  readonly extractable: boolean;
}

/**
 * Ed25519 in pure JavaScript (@noble/ed25519 with SHA-512 from @noble/hashes), for
 * environments without WebCrypto Ed25519. Same semantics as `webCryptoEd25519`: `exportSeed`
 * throws an `Error` for a non-extractable key or one this instance did not make (the seed of
 * a non-extractable key is still in JS memory; "non-extractable" only closes the API).
 *
 * Verification uses the library's strict mode (`zip215: false`: canonical encodings only,
 * small-order public keys rejected), the closest it offers to WebCrypto's RFC 8032 checks.
 *
 * Configures `@noble/ed25519`'s module-wide `hashes` (idempotent: always the same SHA-512).
 */
export function nobleEd25519(): Ed25519 {
  ed.hashes.sha512 = sha512;
  ed.hashes.sha512Async = (m) => Promise.resolve(sha512(m));
  const held = new WeakMap<SigningKey, Held>();

  async function fromSeed(seed: Uint8Array, extractable: boolean): Promise<SigningKey> {
    if (seed.length !== KEY_BYTES) throw new RangeError(`Ed25519 seed must be ${KEY_BYTES} bytes`);
    const own = seed.slice();
    const publicKey = await ed.getPublicKeyAsync(own);
    const key: SigningKey = {
      publicKey,
      sign: (msg: Uint8Array) => ed.signAsync(msg, own),
    };
    held.set(key, { seed: own, extractable });
    return key;
  }

  return {
    generate: (options?: { extractable?: boolean }) =>
      fromSeed(ed.utils.randomSecretKey(), options?.extractable ?? false),

    fromSeed: (seed: Uint8Array, options?: { extractable?: boolean }) =>
      fromSeed(seed, options?.extractable ?? false),

    exportSeed(key: SigningKey): Promise<Uint8Array> {
      const h = held.get(key);
      if (h === undefined) {
        return Promise.reject(new Error('exportSeed: the key was not made by this Ed25519 instance'));
      }
      if (!h.extractable) return Promise.reject(new Error('exportSeed: the key is not extractable'));
      return Promise.resolve(h.seed.slice());
    },

    async verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): Promise<boolean> {
      if (publicKey.length !== KEY_BYTES || sig.length !== SIG_BYTES) return false;
      try {
        return await ed.verifyAsync(sig, msg, publicKey, { zip215: false });
      } catch {
        return false;
      }
    },
  };
}
