import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { nodeAead } from '../crypto/aead.node.js';
import { webCryptoAead, type Aead } from '../ports/aead.js';
import { webRng } from '../ports/env.js';
import {
  DEFAULT_KDF_PARAMS,
  openWithPassphrase,
  SecretsError,
  sealWithoutPassphrase,
  sealWithPassphrase,
  WEAK_KDF_PARAMS,
  type KdfParams,
  type SecretsErrorCode,
} from './sealed-secrets.js';

const aead = webCryptoAead();
const deps = { aead, rng: webRng };
const PASS = 'correct horse battery staple';

// Offsets of the version-1 layout (see sealed-secrets.ts).
const VERSION_AT = 16;
const KDF_AT = 17;
const LENGTH_AT = 18;
const LOG2N_AT = 22;
const R_AT = 23;
const P_AT = 24;
const HEADER_BYTES = 53;

const bytes = (...xs: number[]): Uint8Array => Uint8Array.from(xs);

/** The SecretsError code `p` rejects with; fails the test if it resolves or throws anything else. */
async function codeOf(p: Promise<unknown>): Promise<SecretsErrorCode> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SecretsError);
    return (e as SecretsError).code;
  }
  throw new Error('expected a SecretsError, but it opened');
}

/** An Aead that counts decryptions: zero means no key was derived for it either. */
function countingAead(): { aead: Aead; decrypts: () => number } {
  let n = 0;
  return {
    aead: {
      encrypt: (k, nonce, ad, plain) => aead.encrypt(k, nonce, ad, plain),
      decrypt: (k, nonce, ad, sealed) => {
        n++;
        return aead.decrypt(k, nonce, ad, sealed);
      },
    },
    decrypts: () => n,
  };
}

function withByte(sealed: Uint8Array, at: number, value: number): Uint8Array {
  const out = sealed.slice();
  out[at] = value;
  return out;
}

describe('sealed secrets with a passphrase', () => {
  it('round-trips, records the KDF parameters, and never repeats salt or nonce', async () => {
    const payload = bytes(1, 2, 3, 4, 5);
    const a = await sealWithPassphrase(payload, PASS, deps, WEAK_KDF_PARAMS);
    const b = await sealWithPassphrase(payload, PASS, deps, WEAK_KDF_PARAMS);
    expect(await openWithPassphrase(a, PASS, { aead })).toEqual(payload);
    expect(new TextDecoder().decode(a.subarray(0, 16))).toBe('conclave-secrets');
    expect([a[VERSION_AT], a[KDF_AT], a[LOG2N_AT], a[R_AT], a[P_AT]]).toEqual([1, 1, 10, 8, 1]);
    expect(a.length).toBe(HEADER_BYTES + payload.length + 16);
    expect(a.subarray(25, HEADER_BYTES)).not.toEqual(b.subarray(25, HEADER_BYTES));
    expect(await openWithPassphrase(b, PASS, { aead })).toEqual(payload);
  });

  it('round-trips an empty payload', async () => {
    const sealed = await sealWithPassphrase(new Uint8Array(0), PASS, deps, WEAK_KDF_PARAMS);
    expect(await openWithPassphrase(sealed, PASS, { aead })).toEqual(new Uint8Array(0));
  });

  it('opens across AEAD implementations (WebCrypto and Node)', async () => {
    const payload = webRng.randomBytes(100);
    const web = await sealWithPassphrase(payload, PASS, deps, WEAK_KDF_PARAMS);
    const node = await sealWithPassphrase(payload, PASS, { aead: nodeAead(), rng: webRng }, WEAK_KDF_PARAMS);
    expect(await openWithPassphrase(web, PASS, { aead: nodeAead() })).toEqual(payload);
    expect(await openWithPassphrase(node, PASS, { aead })).toEqual(payload);
  });

  it('reports a wrong passphrase as wrong-passphrase, naming damage as the other cause', async () => {
    const sealed = await sealWithPassphrase(bytes(9), PASS, deps, WEAK_KDF_PARAMS);
    const err = await openWithPassphrase(sealed, 'Correct horse battery staple', { aead }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SecretsError);
    expect(err).toMatchObject({
      name: 'SecretsError',
      code: 'wrong-passphrase',
      message: 'wrong passphrase, or the file was damaged',
    });
    expect(await codeOf(openWithPassphrase(sealed, '', { aead }))).toBe('wrong-passphrase');
  });

  it('normalises the passphrase (NFC), so a decomposed é opens what a precomposed one sealed', async () => {
    const sealed = await sealWithPassphrase(bytes(7), 'caf\u00e9', deps, WEAK_KDF_PARAMS);
    expect(await openWithPassphrase(sealed, 'cafe\u0301', { aead })).toEqual(bytes(7));
  });

  it('rejects every single-byte change of the header and the ciphertext', async () => {
    const sealed = await sealWithPassphrase(bytes(0xaa, 0xbb, 0xcc, 0xdd), PASS, deps, WEAK_KDF_PARAMS);
    // What a change at each position must produce, by region of the layout.
    const expected = (i: number): SecretsErrorCode =>
      i < VERSION_AT
        ? 'corrupt' // magic
        : i === VERSION_AT
          ? 'unsupported-version'
          : i < LOG2N_AT
            ? 'corrupt' // kdf 0x01 -> 0x00 fails the checksum; a changed length disagrees with the size
            : i === P_AT
              ? 'corrupt' // p 1 -> 0 is out of bounds
              : 'wrong-passphrase'; // log2N 10 -> 11, r 8 -> 9, salt, nonce, ciphertext, tag
    for (let i = 0; i < sealed.length; i++) {
      const flipped = withByte(sealed, i, (sealed[i] as number) ^ 0x01);
      expect({ i, code: await codeOf(openWithPassphrase(flipped, PASS, { aead })) }).toEqual({
        i,
        code: expected(i),
      });
    }
  });

  it('rejects every truncation and an extension as corrupt, before deriving a key', async () => {
    const sealed = await sealWithPassphrase(bytes(1, 2, 3), PASS, deps, WEAK_KDF_PARAMS);
    const spy = countingAead();
    for (let n = 0; n < sealed.length; n++) {
      expect({ n, code: await codeOf(openWithPassphrase(sealed.subarray(0, n), PASS, spy)) }).toEqual({
        n,
        code: 'corrupt',
      });
    }
    const longer = new Uint8Array(sealed.length + 1);
    longer.set(sealed);
    expect(await codeOf(openWithPassphrase(longer, PASS, spy))).toBe('corrupt');
    expect(spy.decrypts()).toBe(0);
  });

  it('rejects garbage as corrupt, and never throws anything but a SecretsError (property, seeded)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 120 }), async (junk) => {
        expect(await codeOf(openWithPassphrase(junk, PASS, { aead }))).toBe('corrupt');
      }),
      { numRuns: 200, seed: 7 },
    );
    const magic = new TextEncoder().encode('conclave-secrets');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 120 }), fc.boolean(), async (tail, nullPass) => {
        const input = new Uint8Array(magic.length + 1 + tail.length);
        input.set(magic);
        input[magic.length] = 1;
        input.set(tail, magic.length + 1);
        expect(await codeOf(openWithPassphrase(input, nullPass ? null : PASS, { aead }))).toBe('corrupt');
      }),
      { numRuns: 200, seed: 8 },
    );
  });

  it('refuses out-of-bounds KDF parameters as corrupt before deriving a key', async () => {
    const sealed = await sealWithPassphrase(bytes(1), PASS, deps, WEAK_KDF_PARAMS);
    const hostile: [log2N: number, r: number, p: number][] = [
      [9, 8, 1], // N below 2^10
      [21, 1, 1], // N above 2^20
      [255, 8, 1],
      [0, 8, 1],
      [10, 0, 1],
      [10, 33, 1],
      [10, 8, 0],
      [10, 8, 17],
      [20, 32, 16], // each within its bound: 4 GiB and 512x the default's work
      [20, 3, 1], // 384 MiB: over the memory cap
      [17, 8, 16], // 128 MiB, but 16x the default's work
    ];
    const spy = countingAead();
    for (const [log2N, r, p] of hostile) {
      const file = withByte(withByte(withByte(sealed, LOG2N_AT, log2N), R_AT, r), P_AT, p);
      expect({ log2N, r, p, code: await codeOf(openWithPassphrase(file, PASS, spy)) }).toEqual({
        log2N,
        r,
        p,
        code: 'corrupt',
      });
      // Bounds come before the passphrase question, so a probe with null says the same.
      expect(await codeOf(openWithPassphrase(file, null, spy))).toBe('corrupt');
    }
    expect(spy.decrypts()).toBe(0);
  });

  it('refuses to seal with parameters it would refuse to open, and with an empty passphrase', async () => {
    const bad: KdfParams[] = [
      { N: 2 ** 9, r: 8, p: 1 },
      { N: 2 ** 21, r: 1, p: 1 },
      { N: 3000, r: 8, p: 1 },
      { N: 2 ** 10, r: 0, p: 1 },
      { N: 2 ** 10, r: 8.5, p: 1 },
      { N: 2 ** 10, r: 8, p: 17 },
      { N: 2 ** 20, r: 8, p: 1 },
    ];
    for (const params of bad) {
      await expect(sealWithPassphrase(bytes(1), PASS, deps, params)).rejects.toThrow(RangeError);
    }
    await expect(sealWithPassphrase(bytes(1), '', deps, WEAK_KDF_PARAMS)).rejects.toThrow(RangeError);
    await expect(sealWithPassphrase(bytes(1), 'a\uD800b', deps, WEAK_KDF_PARAMS)).rejects.toThrow(RangeError);
  });

  it('reports an unknown version as unsupported-version, for both kinds of container', async () => {
    const sealed = await sealWithPassphrase(bytes(1), PASS, deps, WEAK_KDF_PARAMS);
    const plain = sealWithoutPassphrase(bytes(1));
    for (const v of [0, 2, 255]) {
      const err = await openWithPassphrase(withByte(sealed, VERSION_AT, v), PASS, { aead }).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'unsupported-version' });
      expect((err as Error).message).toContain(`version ${v}`);
      expect(await codeOf(openWithPassphrase(withByte(plain, VERSION_AT, v), null, { aead }))).toBe(
        'unsupported-version',
      );
    }
    // An unknown kdf is damage in version 1 (a new kdf comes with a new version).
    expect(await codeOf(openWithPassphrase(withByte(sealed, KDF_AT, 2), PASS, { aead }))).toBe('corrupt');
  });

  it('round-trips random payloads and passphrases (property, seeded, N = 2^10)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 24 }),
        async (payload, passphrase) => {
          const sealed = await sealWithPassphrase(payload, passphrase, deps, WEAK_KDF_PARAMS);
          expect(await openWithPassphrase(sealed, passphrase, { aead })).toEqual(payload);
          expect(await codeOf(openWithPassphrase(sealed, `${passphrase}!`, { aead }))).toBe(
            'wrong-passphrase',
          );
        },
      ),
      { numRuns: 25, seed: 42 },
    );
  });

  // One derivation at the default cost (about 1.3 s here): it proves noble accepts the real
  // parameters under our maxmem. Opening runs the same derivation again, so the round trip is
  // left to the cheap tests above rather than doubling the time.
  it('seals with the default parameters (N = 2^17, r = 8, p = 1) and records them', async () => {
    const sealed = await sealWithPassphrase(webRng.randomBytes(64), PASS, deps);
    expect(DEFAULT_KDF_PARAMS).toEqual({ N: 2 ** 17, r: 8, p: 1 });
    expect([sealed[LOG2N_AT], sealed[R_AT], sealed[P_AT]]).toEqual([17, 8, 1]);
    expect(await codeOf(openWithPassphrase(sealed, null, { aead }))).toBe('passphrase-required');
  });
});

describe('sealed secrets without a passphrase', () => {
  it('round-trips with a null passphrase, the payload in the clear', async () => {
    const payload = new TextEncoder().encode('identity key bytes');
    const sealed = sealWithoutPassphrase(payload);
    expect(sealed[KDF_AT]).toBe(0);
    expect(sealed.subarray(LOG2N_AT, LOG2N_AT + payload.length)).toEqual(payload);
    const opened = await openWithPassphrase(sealed, null, { aead });
    expect(opened).toEqual(payload);
    opened[0] = 0; // a copy, not a view into the container
    expect(sealed[LOG2N_AT]).toBe(payload[0]);
    expect(await openWithPassphrase(sealWithoutPassphrase(new Uint8Array(0)), null, { aead })).toEqual(
      new Uint8Array(0),
    );
  });

  it('refuses to open with a passphrase (not-protected), and asks for one the other way round', async () => {
    const plain = sealWithoutPassphrase(bytes(1, 2));
    expect(await codeOf(openWithPassphrase(plain, PASS, { aead }))).toBe('not-protected');
    const spy = countingAead();
    const sealed = await sealWithPassphrase(bytes(1, 2), PASS, deps, WEAK_KDF_PARAMS);
    const err = await openWithPassphrase(sealed, null, spy).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'SecretsError', code: 'passphrase-required' });
    expect(spy.decrypts()).toBe(0);
  });

  it('rejects every single-byte change and every truncation as corrupt (or a version change)', async () => {
    const plain = sealWithoutPassphrase(bytes(0x10, 0x20, 0x30));
    for (let i = 0; i < plain.length; i++) {
      const flipped = withByte(plain, i, (plain[i] as number) ^ 0x01);
      const code = await codeOf(openWithPassphrase(flipped, null, { aead }));
      expect({ i, code }).toEqual({ i, code: i === VERSION_AT ? 'unsupported-version' : 'corrupt' });
    }
    for (let n = 0; n < plain.length; n++) {
      expect(await codeOf(openWithPassphrase(plain.subarray(0, n), null, { aead }))).toBe('corrupt');
    }
  });

  it('records the payload length in the header', () => {
    const plain = sealWithoutPassphrase(new Uint8Array(300));
    expect(new DataView(plain.buffer, LENGTH_AT, 4).getUint32(0)).toBe(300);
  });
});

describe('size limits', () => {
  it('refuses to seal more than 16 MiB and to open a larger container', async () => {
    const big = new Uint8Array(16 * 1024 * 1024);
    expect(() => sealWithoutPassphrase(big)).toThrow(RangeError);
    await expect(sealWithPassphrase(big, PASS, deps, WEAK_KDF_PARAMS)).rejects.toThrow(RangeError);
    const huge = new Uint8Array(16 * 1024 * 1024 + 1);
    huge.set(sealWithoutPassphrase(bytes(1)));
    expect(await codeOf(openWithPassphrase(huge, null, { aead }))).toBe('corrupt');
  });
});
