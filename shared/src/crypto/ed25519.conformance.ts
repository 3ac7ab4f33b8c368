import { describe, expect, it } from 'vitest';
import type { Ed25519 } from '../ports/crypto.js';
import { fromHex, toHex } from '../protocol/ids.js';

/** RFC 8032 section 7.1, TEST 1 and TEST 2: seed, public key, message, signature (hex). */
export const RFC8032_VECTORS = [
  {
    name: 'TEST 1',
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b' +
      'd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2',
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c' +
      '387b2eaeb4302aeeb00d291612bb0c00',
  },
] as const;

/**
 * The eight small-order points' encodings, sign bit clear, with the non-canonical ones
 * (y = p - 1 is canonical; y = p and p + 1 are not). Keys no honest party generates.
 */
export const SMALL_ORDER_KEYS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
] as const;

/** Hex to bytes, throwing on bad hex (test data only). */
export function hex(h: string): Uint8Array {
  const b = fromHex(h);
  if (b === undefined) throw new Error(`bad hex: ${h}`);
  return b;
}

function flip(b: Uint8Array, i: number): Uint8Array {
  const out = b.slice();
  out[i] = (out[i] ?? 0) ^ 0x01;
  return out;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/**
 * The conformance suite of the `Ed25519` port: every implementation runs it. `make` returns
 * a fresh instance for each test.
 */
export function runEd25519Tests(name: string, make: () => Ed25519): void {
  describe(`Ed25519 conformance: ${name}`, () => {
    it('signs and verifies a round trip with a generated key', async () => {
      const ed = make();
      const key = await ed.generate();
      const msg = utf8('hello conclave');
      const sig = await key.sign(msg);
      expect(key.publicKey.length).toBe(32);
      expect(sig.length).toBe(64);
      expect(await ed.verify(key.publicKey, msg, sig)).toBe(true);
    });

    it('generates distinct keys', async () => {
      const ed = make();
      const a = await ed.generate();
      const b = await ed.generate();
      expect(toHex(a.publicKey)).not.toBe(toHex(b.publicKey));
    });

    for (const v of RFC8032_VECTORS) {
      it(`matches RFC 8032 ${v.name} exactly (seed → public key → signature)`, async () => {
        const ed = make();
        const key = await ed.fromSeed(hex(v.seed));
        expect(toHex(key.publicKey)).toBe(v.publicKey);
        const sig = await key.sign(hex(v.msg));
        expect(toHex(sig)).toBe(v.sig);
        expect(await ed.verify(hex(v.publicKey), hex(v.msg), hex(v.sig))).toBe(true);
      });
    }

    it('is deterministic: the same key and message give the same signature', async () => {
      const ed = make();
      const key = await ed.generate();
      const msg = utf8('same');
      expect(toHex(await key.sign(msg))).toBe(toHex(await key.sign(msg)));
    });

    it('rejects a tampered message, signature or key', async () => {
      const ed = make();
      const key = await ed.generate();
      const other = await ed.generate();
      const msg = utf8('a message of some length');
      const sig = await key.sign(msg);
      expect(await ed.verify(key.publicKey, flip(msg, 3), sig)).toBe(false);
      expect(await ed.verify(key.publicKey, utf8(''), sig)).toBe(false);
      expect(await ed.verify(key.publicKey, msg, flip(sig, 0))).toBe(false);
      expect(await ed.verify(key.publicKey, msg, flip(sig, 40))).toBe(false);
      expect(await ed.verify(flip(key.publicKey, 5), msg, sig)).toBe(false);
      expect(await ed.verify(other.publicKey, msg, sig)).toBe(false);
      expect(await ed.verify(key.publicKey, msg, sig)).toBe(true);
    });

    it('verifies false, never throws, for malformed lengths and values', async () => {
      const ed = make();
      const key = await ed.generate();
      const msg = utf8('m');
      const sig = await key.sign(msg);
      const cases: [Uint8Array, Uint8Array][] = [
        [key.publicKey.subarray(0, 31), sig],
        [new Uint8Array([...key.publicKey, 0]), sig],
        [new Uint8Array(0), sig],
        [key.publicKey, sig.subarray(0, 63)],
        [key.publicKey, new Uint8Array([...sig, 0])],
        [key.publicKey, new Uint8Array(0)],
        [new Uint8Array(0), new Uint8Array(0)],
        [new Uint8Array(32).fill(0xff), sig],
        [key.publicKey, new Uint8Array(64).fill(0xff)],
      ];
      for (const [pk, s] of cases) await expect(ed.verify(pk, msg, s)).resolves.toBe(false);
    });

    it('rejects small-order public keys, even with a signature the group equation accepts', async () => {
      const ed = make();
      const identitySig = hex('01' + '00'.repeat(63));
      for (const h of SMALL_ORDER_KEYS) {
        for (const signBit of [0, 0x80]) {
          const pk = hex(h);
          pk[31] = (pk[31] ?? 0) | signBit;
          for (const msg of [utf8(''), utf8('forged')]) {
            expect(await ed.verify(pk, msg, identitySig)).toBe(false);
            expect(await ed.verify(pk, msg, new Uint8Array([...pk, ...new Uint8Array(32)]))).toBe(false);
          }
        }
      }
    });

    it('round-trips an extractable key through exportSeed and fromSeed', async () => {
      const ed = make();
      const key = await ed.generate({ extractable: true });
      const seed = await ed.exportSeed(key);
      expect(seed.length).toBe(32);
      const again = await ed.fromSeed(seed, { extractable: true });
      expect(toHex(again.publicKey)).toBe(toHex(key.publicKey));
      expect(toHex(await ed.exportSeed(again))).toBe(toHex(seed));
      const msg = utf8('restored');
      expect(toHex(await again.sign(msg))).toBe(toHex(await key.sign(msg)));
    });

    it('refuses to export a non-extractable key (the default) or a foreign one', async () => {
      const ed = make();
      await expect(ed.exportSeed(await ed.generate())).rejects.toThrow(/not extractable/);
      await expect(ed.exportSeed(await ed.fromSeed(hex(RFC8032_VECTORS[0].seed)))).rejects.toThrow(
        /not extractable/,
      );
      await expect(ed.exportSeed(await make().generate({ extractable: true }))).rejects.toThrow();
      const nonExtractable = await ed.fromSeed(hex(RFC8032_VECTORS[0].seed));
      expect(toHex(nonExtractable.publicKey)).toBe(RFC8032_VECTORS[0].publicKey);
    });

    it('rejects a seed that is not 32 bytes', async () => {
      const ed = make();
      await expect(ed.fromSeed(new Uint8Array(31))).rejects.toThrow(RangeError);
      await expect(ed.fromSeed(new Uint8Array(64))).rejects.toThrow(RangeError);
    });

    it('verifies many keys and messages concurrently', async () => {
      const ed = make();
      const keys = await Promise.all(Array.from({ length: 8 }, () => ed.generate()));
      const items = await Promise.all(
        Array.from({ length: 64 }, async (_, i) => {
          const key = keys[i % keys.length];
          if (key === undefined) throw new Error('unreachable');
          const msg = utf8(`message ${i}`);
          return { key, msg, sig: await key.sign(msg) };
        }),
      );
      const good = await Promise.all(items.map((x) => ed.verify(x.key.publicKey, x.msg, x.sig)));
      expect(good.every((b) => b)).toBe(true);
      const swapped = await Promise.all(
        items.map((x, i) => ed.verify(x.key.publicKey, items[(i + 1) % items.length]?.msg ?? x.msg, x.sig)),
      );
      expect(swapped.some((b) => b)).toBe(false);
    });

    it('verifies and signs with subarray views of a larger buffer', async () => {
      const ed = make();
      const key = await ed.generate();
      const msg = utf8('inside');
      const sig = await key.sign(msg);
      const big = new Uint8Array(200);
      big.set(key.publicKey, 10);
      big.set(sig, 50);
      big.set(msg, 120);
      const pk = big.subarray(10, 42);
      const s = big.subarray(50, 114);
      const m = big.subarray(120, 120 + msg.length);
      expect(await ed.verify(pk, m, s)).toBe(true);
      expect(toHex(await key.sign(m))).toBe(toHex(sig));
    });

    // Only for implementations that offer `verifyParts` (the others have nothing to test here).
    if (make().verifyParts !== undefined)
      it('verifies a message given in parts exactly as the joined message', async () => {
        const ed = make();
        const verifyParts = ed.verifyParts?.bind(ed);
        if (verifyParts === undefined) throw new Error('verifyParts went away');
        const key = await ed.generate();
        const msg = utf8('a message signed whole and checked in pieces');
        const sig = await key.sign(msg);
        const changed = flip(msg, 3);
        const cuts = [0, 1, 7, msg.length - 1, msg.length];
        for (const a of cuts)
          for (const b of cuts.filter((c) => c >= a)) {
            const split = (m: Uint8Array): Uint8Array[] => [
              m.subarray(0, a),
              m.subarray(a, b),
              m.subarray(b),
            ];
            expect(await verifyParts(key.publicKey, split(msg), sig)).toBe(true);
            expect(await verifyParts(key.publicKey, split(changed), sig)).toBe(false);
          }
        // Pieces out of order, a piece too many, none at all, another signature.
        expect(await verifyParts(key.publicKey, [msg.subarray(5), msg.subarray(0, 5)], sig)).toBe(false);
        expect(await verifyParts(key.publicKey, [msg, utf8('!')], sig)).toBe(false);
        expect(await verifyParts(key.publicKey, [], sig)).toBe(false);
        expect(await verifyParts(key.publicKey, [msg], flip(sig, 9))).toBe(false);
      });
  });
}
