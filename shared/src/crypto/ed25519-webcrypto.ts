import type { Ed25519, SigningKey } from '../ports/crypto.js';
import { KEY_BYTES, SIG_BYTES, bufferSource, bytesKey, concatBytes, fromHex } from '../protocol/ids.js';
import { VERIFY_KEY_CACHE_ENTRIES } from '../protocol/limits.js';
import { fromBase64Url } from '../protocol/base64url.js';

/** DER prefix of a PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410); the 32-byte seed follows. */
const PKCS8_PREFIX = fromHex('302e020100300506032b657004220420') ?? new Uint8Array(0);

const ALG = { name: 'Ed25519' } as const;

/**
 * Encodings of the eight small-order points, canonical or not, sign bit cleared (libsodium's
 * list). WebCrypto (OpenSSL, BoringSSL) accepts them as public keys, for which forged
 * signatures verify (the identity key accepts R = identity, S = 0 for any message); noble's
 * strict mode rejects them, and peers must agree on which ops are valid.
 */
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((h) => fromHex(h) ?? new Uint8Array(0));

export function isSmallOrder(publicKey: Uint8Array): boolean {
  return SMALL_ORDER.some((bad) => {
    for (let i = 0; i < 31; i++) if (publicKey[i] !== bad[i]) return false;
    return ((publicKey[31] ?? 0) & 0x7f) === bad[31];
  });
}

interface Held {
  readonly privateKey: CryptoKey;
}

/**
 * Ed25519 over WebCrypto (`SubtleCrypto` with the `Ed25519` algorithm: Node 20+, Chromium,
 * Firefox, Safari 17+). Keys are non-extractable unless asked otherwise; `exportSeed` throws
 * an `Error` for a non-extractable key or one this instance did not make. `verify` keeps
 * imported public keys in an LRU of {@link VERIFY_KEY_CACHE_ENTRIES} entries per instance,
 * and rejects small-order public keys like noble's strict mode does.
 *
 * @param subtle The SubtleCrypto to use; `globalThis.crypto.subtle` by default.
 * @throws TypeError when no SubtleCrypto is available.
 */
export function webCryptoEd25519(subtle?: SubtleCrypto): Ed25519 {
  const s = subtle ?? globalThis.crypto.subtle;
  const held = new WeakMap<SigningKey, Held>();
  const cache = new Map<string, Promise<CryptoKey | undefined>>();

  function wrap(privateKey: CryptoKey, publicKey: Uint8Array): SigningKey {
    const key: SigningKey = {
      publicKey,
      async sign(msg: Uint8Array): Promise<Uint8Array> {
        return new Uint8Array(await s.sign(ALG, privateKey, bufferSource(msg)));
      },
    };
    held.set(key, { privateKey });
    return key;
  }

  function publicCryptoKey(publicKey: Uint8Array): Promise<CryptoKey | undefined> {
    const k = bytesKey(publicKey);
    const hit = cache.get(k);
    if (hit !== undefined) {
      cache.delete(k);
      cache.set(k, hit);
      return hit;
    }
    const imported = isSmallOrder(publicKey)
      ? Promise.resolve(undefined)
      : s.importKey('raw', bufferSource(publicKey), ALG, false, ['verify']).then(
          (ck) => ck,
          () => undefined,
        );
    cache.set(k, imported);
    if (cache.size > VERIFY_KEY_CACHE_ENTRIES) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    return imported;
  }

  async function importSeed(seed: Uint8Array, extractable: boolean): Promise<CryptoKey> {
    const pkcs8 = concatBytes(PKCS8_PREFIX, seed);
    try {
      return await s.importKey('pkcs8', bufferSource(pkcs8), ALG, extractable, ['sign']);
    } finally {
      pkcs8.fill(0);
    }
  }

  return {
    async generate(options?: { extractable?: boolean }): Promise<SigningKey> {
      const pair = await s.generateKey(ALG, options?.extractable ?? false, ['sign', 'verify']);
      const raw = new Uint8Array(await s.exportKey('raw', pair.publicKey));
      return wrap(pair.privateKey, raw);
    },

    async fromSeed(seed: Uint8Array, options?: { extractable?: boolean }): Promise<SigningKey> {
      if (seed.length !== KEY_BYTES) throw new RangeError(`Ed25519 seed must be ${KEY_BYTES} bytes`);
      // WebCrypto cannot derive a public key from a private one except through a JWK export,
      // which needs an extractable key; the key handed out is re-imported as asked.
      const temp = await importSeed(seed, true);
      const jwk = await s.exportKey('jwk', temp);
      const publicKey = jwk.x === undefined ? undefined : fromBase64Url(jwk.x);
      if (publicKey?.length !== KEY_BYTES) throw new Error('WebCrypto returned a JWK without a valid x');
      const extractable = options?.extractable ?? false;
      return wrap(extractable ? temp : await importSeed(seed, false), publicKey);
    },

    async exportSeed(key: SigningKey): Promise<Uint8Array> {
      const h = held.get(key);
      if (h === undefined) throw new Error('exportSeed: the key was not made by this Ed25519 instance');
      if (!h.privateKey.extractable) throw new Error('exportSeed: the key is not extractable');
      const jwk = await s.exportKey('jwk', h.privateKey);
      const seed = jwk.d === undefined ? undefined : fromBase64Url(jwk.d);
      if (seed?.length !== KEY_BYTES) throw new Error('WebCrypto returned a JWK without a valid d');
      return seed;
    },

    async verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): Promise<boolean> {
      if (publicKey.length !== KEY_BYTES || sig.length !== SIG_BYTES) return false;
      try {
        const ck = await publicCryptoKey(publicKey);
        if (ck === undefined) return false;
        return await s.verify(ALG, ck, bufferSource(sig), bufferSource(msg));
      } catch {
        return false;
      }
    },
  };
}
