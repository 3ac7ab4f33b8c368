import { type KeyObject, createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import type { Aead } from '../ports/aead.js';
import { SealError } from '../protocol/errors.js';

/**
 * AES-256-GCM over Node's native binding, for Node hosts (CLI, relay tools, benchmarks). Same
 * bytes as `webCryptoAead`; synchronous underneath, so it avoids a thread hop per op.
 */
export function nodeAead(): Aead {
  return {
    encrypt(key, nonce, ad, plain) {
      if (key.length !== 32) return Promise.reject(new SealError('bad-seal', 'an epoch key is 32 bytes'));
      const c = createCipheriv('aes-256-gcm', key, nonce);
      c.setAAD(ad);
      const body = c.update(plain);
      const tail = c.final();
      const out = new Uint8Array(body.length + tail.length + 16);
      out.set(body);
      out.set(tail, body.length);
      out.set(c.getAuthTag(), body.length + tail.length);
      return Promise.resolve(out);
    },
    decrypt(key, nonce, ad, sealed) {
      try {
        return Promise.resolve(decryptSync(key, nonce, ad, sealed));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    decryptSync,
  };
}

function decryptSync(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Uint8Array {
  try {
    if (key.length !== 32 || sealed.length < 16) throw new Error('short');
    const d = createDecipheriv('aes-256-gcm', secretKey(key), nonce);
    keepShape ??= createDecipheriv('aes-256-gcm', createSecretKey(new Uint8Array(32)), new Uint8Array(12));
    d.setAAD(ad);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const body = d.update(sealed.subarray(0, sealed.length - 16));
    // GCM hands out all plaintext from update(); final() only checks the tag.
    const tail = d.final();
    if (tail.length === 0) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    const out = new Uint8Array(body.length + tail.length);
    out.set(body);
    out.set(tail, body.length);
    return out;
  } catch {
    throw new SealError('bad-seal', 'authentication failed');
  }
}

/**
 * Node's key object for each key array the pipeline opens with. The replica keeps one array per
 * epoch and content key and opens every op of the epoch with it; a prepared key object spares
 * each decryption the key's conversion (0.5–1.6 µs of the 7–9 µs a decryption of 1 KiB took
 * on the 2-core VM of BENCHMARKS.md, in a loop of 100,000). Keyed by the array itself, so a key
 * is never looked up by its bytes and a dropped key array drops its entry; key arrays are never
 * changed after they are made (CONVENTIONS.md).
 */
const keyObjects = new WeakMap<Uint8Array, KeyObject>();

function secretKey(key: Uint8Array): KeyObject {
  let k = keyObjects.get(key);
  if (k === undefined) {
    k = createSecretKey(key);
    keyObjects.set(key, k);
  }
  return k;
}

/**
 * One decipher that lives as long as the process, with a key of zeros, never used. V8 keeps the
 * shape (hidden class) of Node's decipher objects only while one exists; every decipher the
 * pipeline makes is dropped when its op is open, so a full garbage collection in a quiet moment
 * dropped the shape and the compiled code of `decryptSync` and of Node's cipher functions, and
 * the next burst of ops compiled them again (`--trace-deopt`: "weak objects").
 */
let keepShape: unknown;
