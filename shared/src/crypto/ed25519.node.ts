import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import type { Ed25519 } from '../ports/crypto.js';
import { KEY_BYTES, SIG_BYTES, bytesKey, concatBytes, fromHex } from '../protocol/ids.js';
import { VERIFY_KEY_CACHE_ENTRIES } from '../protocol/limits.js';
import { isSmallOrder, webCryptoEd25519 } from './ed25519-webcrypto.js';

/** DER prefix of a SubjectPublicKeyInfo for Ed25519 (RFC 8410); the 32-byte key follows. */
const SPKI_PREFIX = fromHex('302a300506032b6570032100') ?? new Uint8Array(0);

/**
 * Ed25519 for Node hosts: keys and signing as `webCryptoEd25519`, verification through Node's
 * `crypto.verify` with a callback, which runs the same OpenSSL check on libuv's thread pool
 * without WebCrypto's argument normalisation and promise jobs on the calling thread. Same
 * answers (it runs the same conformance suite, small-order keys rejected alike).
 */
export function nodeEd25519(): Ed25519 {
  const base = webCryptoEd25519();
  const cache = new Map<string, KeyObject | undefined>();
  const keyObject = (publicKey: Uint8Array): KeyObject | undefined => {
    const k = bytesKey(publicKey);
    if (cache.has(k)) {
      const hit = cache.get(k);
      cache.delete(k);
      cache.set(k, hit);
      return hit;
    }
    let ko: KeyObject | undefined;
    if (!isSmallOrder(publicKey)) {
      try {
        ko = createPublicKey({
          key: Buffer.from(concatBytes(SPKI_PREFIX, publicKey)),
          format: 'der',
          type: 'spki',
        });
      } catch {
        ko = undefined;
      }
    }
    cache.set(k, ko);
    if (cache.size > VERIFY_KEY_CACHE_ENTRIES) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    return ko;
  };
  return {
    generate: (o) => base.generate(o),
    fromSeed: (seed, o) => base.fromSeed(seed, o),
    exportSeed: (key) => base.exportSeed(key),
    verify(publicKey, msg, sig) {
      if (publicKey.length !== KEY_BYTES || sig.length !== SIG_BYTES) return Promise.resolve(false);
      const ko = keyObject(publicKey);
      if (ko === undefined) return Promise.resolve(false);
      return new Promise((resolve) => {
        try {
          verify(null, msg, ko, sig, (err, ok) => {
            resolve(err === null && ok);
          });
        } catch {
          resolve(false);
        }
      });
    },
  };
}
