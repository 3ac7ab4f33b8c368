import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from './ids.js';
import { fromBase58, fromMultibase, toBase58, toMultibase } from './multibase.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function hex(h: string): Uint8Array {
  const b = fromHex(h);
  if (b === undefined) throw new Error(`bad hex: ${h}`);
  return b;
}

/** Bitcoin Core's base58_encode_decode.json vectors: hex, base58. */
const VECTORS: [string, string][] = [
  ['', ''],
  ['61', '2g'],
  ['626262', 'a3gV'],
  ['636363', 'aPEr'],
  ['73696d706c792061206c6f6e6720737472696e67', '2cFupjhnEsSn59qHXstmK2ffpLv2'],
  ['00eb15231dfceb60925886b67d065299925915aeb172c06647', '1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L'],
  ['516b6fcd0f', 'ABnLTmg'],
  ['bf4f89001e670274dd', '3SEo3LWLoPntC'],
  ['572e4794', '3EFU7m'],
  ['ecac89cad93923c02321', 'EJDM8drfXA6uyA'],
  ['10c8511e', 'Rt5zm'],
  ['00000000000000000000', '1111111111'],
];

describe('base58btc and multibase', () => {
  it('encodes "Hello World!" as in the multibase spec', () => {
    expect(toBase58(utf8('Hello World!'))).toBe('2NEpo7TZRRrLZSi2U');
    expect(toMultibase(utf8('Hello World!'))).toBe('z2NEpo7TZRRrLZSi2U');
    expect(toMultibase(utf8('yes mani !'))).toBe('z7paNL19xttacUY');
    expect(fromMultibase('z2NEpo7TZRRrLZSi2U')).toEqual(utf8('Hello World!'));
  });

  for (const [h, b58] of VECTORS) {
    it(`matches the vector ${h === '' ? '(empty)' : h}`, () => {
      expect(toBase58(hex(h))).toBe(b58);
      expect(toHex(fromBase58(b58) ?? new Uint8Array([0xde, 0xad]))).toBe(h);
    });
  }

  it('maps leading zero bytes to leading 1s', () => {
    expect(toMultibase(new Uint8Array([0, 0, 0, 1]))).toBe('z1112');
    expect(toMultibase(new Uint8Array([0]))).toBe('z1');
    expect(toMultibase(new Uint8Array(0))).toBe('z');
    expect(fromMultibase('z111')).toEqual(new Uint8Array(3));
    expect(fromMultibase('z')).toEqual(new Uint8Array(0));
    expect(toMultibase(hex('0000287fb4cd'))).toBe('z11233QC4');
  });

  it('returns undefined for a wrong or missing prefix', () => {
    for (const s of ['', '2NEpo7TZRRrLZSi2U', 'Z2NEpo7TZRRrLZSi2U', 'f68656c6c6f', 'm SGVsbG8']) {
      expect(fromMultibase(s)).toBeUndefined();
    }
  });

  it('returns undefined for characters outside the alphabet', () => {
    for (const s of [
      'z0',
      'zO',
      'zI',
      'zl',
      'z2NEpo7T+RRrLZSi2U',
      'z ',
      'z2NEpo7TZRRrLZSi2U\n',
      'zé',
      'z\u{1F600}',
    ]) {
      expect(fromMultibase(s)).toBeUndefined();
    }
  });

  it('round-trips any bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const text = toMultibase(bytes);
        expect(text).toMatch(/^z[1-9A-HJ-NP-Za-km-z]*$/);
        expect(toHex(fromMultibase(text) ?? new Uint8Array([0xde, 0xad]))).toBe(toHex(bytes));
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips bytes with many leading zeros (property)', () => {
    fc.assert(
      fc.property(fc.nat(10), fc.uint8Array({ maxLength: 40 }), (zeros, rest) => {
        const bytes = new Uint8Array([...new Uint8Array(zeros), ...rest]);
        expect(toHex(fromMultibase(toMultibase(bytes)) ?? new Uint8Array([0xde, 0xad]))).toBe(toHex(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes any valid text back to itself and never throws on junk (property)', () => {
    const b58char = fc.constantFrom(
      ...Array.from('123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'),
    );
    fc.assert(
      fc.property(fc.array(b58char, { maxLength: 60 }), (chars) => {
        const text = 'z' + chars.join('');
        const bytes = fromMultibase(text);
        expect(bytes).toBeDefined();
        expect(toMultibase(bytes ?? new Uint8Array(0))).toBe(text);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 40, unit: 'grapheme' }), (s) => {
        const bytes = fromMultibase(s);
        if (bytes !== undefined) expect(toMultibase(bytes)).toBe(s);
      }),
      { numRuns: 300 },
    );
  });
});
