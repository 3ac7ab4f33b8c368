import { pureJsCrypto } from '@chainsafe/libp2p-noise';
import fc from 'fast-check';
import { Uint8ArrayList } from 'uint8arraylist';
import { describe, expect, it } from 'vitest';
import sodium from 'sodium-native';
import {
  NATIVE_CIPHER_FROM_BYTES,
  type NoiseBytes,
  loadNodeNoiseCrypto,
  nodeOnlyNoiseCrypto,
  sodiumNoiseCrypto,
} from './noise-crypto.node.js';

/** The bytes as a plain Uint8Array (Node's cipher answers with Buffers). */
const bytesOf = (b: NoiseBytes): Uint8Array => Uint8Array.from(b instanceof Uint8Array ? b : b.subarray());

/** A message as noise may get it: whole, or cut into a list of parts at `cuts`. */
function shaped(message: Uint8Array, cuts: readonly number[]): NoiseBytes {
  if (cuts.length === 0) return message;
  const at = [...new Set(cuts.map((c) => c % (message.length + 1)))].sort((a, b) => a - b);
  const list = new Uint8ArrayList();
  let from = 0;
  for (const c of [...at, message.length]) {
    list.append(message.slice(from, c));
    from = c;
  }
  // Noise uses its own major version of uint8arraylist; the cipher reads a list only through
  // `subarray()`, which both versions have.
  return list as unknown as NoiseBytes;
}

const key = new Uint8Array(32).fill(7);
const ad = new Uint8Array(0);
const nonceOf = (n: number): Uint8Array => {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setUint32(4, n, true);
  return nonce;
};

// Sizes on both sides of the switch between libsodium and Node's cipher, and the usual frames.
const message = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 64 }),
  fc.uint8Array({ minLength: NATIVE_CIPHER_FROM_BYTES - 8, maxLength: NATIVE_CIPHER_FROM_BYTES + 8 }),
  fc.uint8Array({ minLength: 1000, maxLength: 5000 }),
);

it("loads libsodium's native build on this platform", async () => {
  const loaded = await loadNodeNoiseCrypto();
  expect(loaded).not.toBe(nodeOnlyNoiseCrypto);
});

describe.each([
  ['libsodium below 16 KiB, Node above', sodiumNoiseCrypto(sodium)],
  ["Node's alone (no native libsodium)", nodeOnlyNoiseCrypto],
])("Node hosts' noise cipher: %s", (_, nodeNoiseCrypto) => {
  it('gives the same bytes as the reference ChaCha20-Poly1305, whole or in parts, and opens them again', () => {
    fc.assert(
      fc.property(message, fc.array(fc.nat(6000), { maxLength: 6 }), fc.nat(1000), (m, cuts, n) => {
        const sealed = bytesOf(nodeNoiseCrypto.chaCha20Poly1305Encrypt(shaped(m, cuts), nonceOf(n), ad, key));
        const reference = bytesOf(pureJsCrypto.chaCha20Poly1305Encrypt(m, nonceOf(n), ad, key));
        expect(sealed).toEqual(reference);
        expect(sealed.length).toBe(m.length + 16);
        const opened = nodeNoiseCrypto.chaCha20Poly1305Decrypt(
          shaped(sealed, cuts),
          nonceOf(n),
          ad,
          key,
          new Uint8Array(m.length),
        );
        expect(bytesOf(opened)).toEqual(m);
      }),
      { numRuns: 120 },
    );
  });

  it('refuses a message changed in transit, sealed under another nonce or under another key', () => {
    fc.assert(
      fc.property(message, fc.nat(), (m, flip) => {
        const sealed = bytesOf(nodeNoiseCrypto.chaCha20Poly1305Encrypt(m, nonceOf(1), ad, key));
        const changed = sealed.slice();
        const i = flip % changed.length;
        changed[i] = (changed[i] ?? 0) ^ 0x01;
        const open = (bytes: Uint8Array, nonce: Uint8Array, k: Uint8Array): Uint8Array =>
          bytesOf(nodeNoiseCrypto.chaCha20Poly1305Decrypt(bytes, nonce, ad, k, new Uint8Array(m.length)));
        expect(() => open(changed, nonceOf(1), key)).toThrow();
        expect(() => open(sealed, nonceOf(2), key)).toThrow();
        expect(() => open(sealed, nonceOf(1), new Uint8Array(32).fill(8))).toThrow();
      }),
      { numRuns: 120 },
    );
  });
});
