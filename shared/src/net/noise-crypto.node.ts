/**
 * Noise's transport cipher for Node hosts (relay, CLI, benchmarks): the same ChaCha20-Poly1305
 * (IETF, 12-byte nonce) and the same bytes on the wire as noise's default, computed faster.
 *
 * - A message made of several parts (a turn's coalesced frames reach noise as a list: the muxer's
 *   header, then each frame's length, head and body) is joined into one buffer first. Noise's
 *   default hands Node's cipher one part at a time, and each `update` call has a fixed cost of a
 *   few microseconds: 37 µs to encrypt five 1 KiB frames that way, 15 µs joined.
 * - Messages under 16 KiB go through libsodium's native build (`sodium-native`, prebuilt for
 *   each platform): 1,100 bytes took 2.5–3.2 µs to encrypt or decrypt there, against 5.6–5.8 µs
 *   in libsodium's WebAssembly build and 11–12 µs in Node's own cipher (OpenSSL 3 costs several
 *   microseconds per message before the first byte); 4,400 bytes 7.1–7.9 µs against 12–16 µs.
 *   From 16 KiB Node's cipher is as fast or faster (65,000 bytes: 48 µs against 61–77 µs).
 *   Loops of 20,000 on the project's 2-vCPU machine.
 * - Where the native build cannot be loaded (a platform without a prebuilt binary), every message
 *   goes to Node's cipher: slower, never different.
 */
import { defaultCrypto, nodeCrypto } from '@chainsafe/libp2p-noise/crypto';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import type { SodiumAead } from 'sodium-native';

/** Bytes from which Node's native cipher is used; below it libsodium's. */
export const NATIVE_CIPHER_FROM_BYTES = 16 * 1024;

/** Poly1305's tag, appended to every sealed message. */
const TAG_BYTES = 16;

/** What noise hands the cipher: bytes, or a list of parts (noise's own copy of uint8arraylist). */
export type NoiseBytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0];

function flat(data: NoiseBytes): Uint8Array {
  // A list of one part returns that part; of several, one copy of their bytes.
  return data instanceof Uint8Array ? data : data.subarray();
}

/** A fresh buffer for the cipher's output; every byte of it is written before it is returned. */
function output(length: number): Uint8Array {
  const b = Buffer.allocUnsafe(length);
  return new Uint8Array(b.buffer, b.byteOffset, length);
}

/** Noise's cipher with libsodium's native build under `NATIVE_CIPHER_FROM_BYTES`, Node's above. */
export function sodiumNoiseCrypto(sodium: SodiumAead): ICryptoInterface {
  return {
    ...defaultCrypto,
    chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
      const bytes = flat(plaintext);
      if (bytes.byteLength >= NATIVE_CIPHER_FROM_BYTES)
        return nodeCrypto.chaCha20Poly1305Encrypt(bytes, nonce, ad, k);
      const out = output(bytes.byteLength + TAG_BYTES);
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, bytes, ad, null, nonce, k);
      return out;
    },
    chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
      const bytes = flat(ciphertext);
      if (bytes.byteLength >= NATIVE_CIPHER_FROM_BYTES) {
        return nodeCrypto.chaCha20Poly1305Decrypt(bytes, nonce, ad, k, dst);
      }
      if (bytes.byteLength < TAG_BYTES) throw new Error('ciphertext shorter than its tag');
      const out = output(bytes.byteLength - TAG_BYTES);
      // Throws on a message that does not authenticate, as noise expects of a cipher.
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, bytes, ad, nonce, k);
      return out;
    },
  };
}

/** Node's cipher for every message, with the parts joined (where `sodium-native` cannot load). */
export const nodeOnlyNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    return nodeCrypto.chaCha20Poly1305Encrypt(flat(plaintext), nonce, ad, k);
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    return nodeCrypto.chaCha20Poly1305Decrypt(flat(ciphertext), nonce, ad, k, dst);
  },
};

let loaded: Promise<ICryptoInterface> | undefined;

/** The cipher, once `sodium-native`'s binary is loaded (or Node's alone if it cannot be). */
export function loadNodeNoiseCrypto(): Promise<ICryptoInterface> {
  loaded ??= import('sodium-native').then(
    (m: { default: SodiumAead }) => sodiumNoiseCrypto(m.default),
    () => nodeOnlyNoiseCrypto,
  );
  return loaded;
}
