import { describe, expect, it } from 'vitest';
import type { Ed25519 } from '../ports/crypto.js';
import { toHex } from '../protocol/ids.js';
import { nobleEd25519 } from './ed25519-noble.js';
import { webCryptoEd25519 } from './ed25519-webcrypto.js';
import { Point } from '@noble/ed25519';
import { SMALL_ORDER_KEYS, hex, runEd25519Tests } from './ed25519.conformance.js';

runEd25519Tests('webcrypto', () => webCryptoEd25519());
runEd25519Tests('noble', () => nobleEd25519());

describe('Ed25519 cross-check: webcrypto and noble agree', () => {
  const pairs: [string, Ed25519, Ed25519][] = [
    ['webcrypto → noble', webCryptoEd25519(), nobleEd25519()],
    ['noble → webcrypto', nobleEd25519(), webCryptoEd25519()],
  ];
  for (const [name, signer, verifier] of pairs) {
    it(`${name}: signatures verify across implementations`, async () => {
      for (let i = 0; i < 20; i++) {
        const key = await signer.generate();
        const msg = crypto.getRandomValues(new Uint8Array(i * 37));
        const sig = await key.sign(msg);
        expect(await verifier.verify(key.publicKey, msg, sig)).toBe(true);
        const bad = sig.slice();
        bad[i % 64] = (bad[i % 64] ?? 0) ^ 0x80;
        expect(await verifier.verify(key.publicKey, msg, bad)).toBe(false);
      }
    });
  }

  it('derives the same public key and signature from the same seed', async () => {
    const w = webCryptoEd25519();
    const n = nobleEd25519();
    for (let i = 0; i < 10; i++) {
      const seed = crypto.getRandomValues(new Uint8Array(32));
      const msg = crypto.getRandomValues(new Uint8Array(300));
      const kw = await w.fromSeed(seed);
      const kn = await n.fromSeed(seed);
      expect(toHex(kw.publicKey)).toBe(toHex(kn.publicKey));
      expect(toHex(await kw.sign(msg))).toBe(toHex(await kn.sign(msg)));
    }
  });

  it('moves an extractable seed from one implementation to the other', async () => {
    const w = webCryptoEd25519();
    const n = nobleEd25519();
    const kw = await w.generate({ extractable: true });
    const kn = await n.fromSeed(await w.exportSeed(kw), { extractable: true });
    expect(toHex(kn.publicKey)).toBe(toHex(kw.publicKey));
    const back = await w.fromSeed(await n.exportSeed(kn));
    expect(toHex(back.publicKey)).toBe(toHex(kw.publicKey));
  });

  it('agrees on every small-order key: the list is complete and both reject them', async () => {
    const w = webCryptoEd25519();
    const n = nobleEd25519();
    const listed = new Set<string>(SMALL_ORDER_KEYS);
    const order8 = Point.fromBytes(hex(SMALL_ORDER_KEYS[3]));
    let p = Point.ZERO;
    for (let i = 0; i < 8; i++, p = p.add(order8)) {
      const enc = p.toBytes();
      enc[31] = (enc[31] ?? 0) & 0x7f;
      expect(listed.has(toHex(enc))).toBe(true);
    }
    expect(p.equals(Point.ZERO)).toBe(true);
    for (const h of SMALL_ORDER_KEYS) expect(Point.fromBytes(hex(h), true).isSmallOrder()).toBe(true);
    for (const h of SMALL_ORDER_KEYS) {
      for (const [rh, msg] of [
        [SMALL_ORDER_KEYS[1], 'x'],
        [h, 'y'],
      ] as const) {
        const sig = new Uint8Array([...hex(rh), ...new Uint8Array(32)]);
        const m = new TextEncoder().encode(msg);
        expect([await w.verify(hex(h), m, sig), await n.verify(hex(h), m, sig)]).toEqual([false, false]);
      }
    }
  });
});
