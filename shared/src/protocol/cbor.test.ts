import fc from 'fast-check';
import { HEAD_BOUNDARIES, expectCodecError } from './codec.testing.js';
import { describe, expect, it } from 'vitest';
import {
  type CborMap,
  type CborValue,
  type DecodeLimits,
  DEFAULT_LIMITS,
  decode,
  encode,
  tryDecode,
} from './cbor.js';
import { type CodecErrorCode, CodecError } from './errors.js';
import { fromHex, toHex } from './ids.js';
import { MAX_ARRAY_LENGTH, MAX_DEPTH, MAX_STRING_BYTES } from './limits.js';

function hex(h: string): Uint8Array {
  const b = fromHex(h.replace(/\s+/g, ''));
  if (b === undefined) throw new Error(`bad hex in test: ${h}`);
  return b;
}

function nested(levels: number, inner: CborValue): CborValue {
  let v = inner;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

// ---------- arbitraries for the supported subset ----------

const arbInt: fc.Arbitrary<number> = fc.oneof(
  fc.integer(),
  fc.maxSafeInteger(),
  fc.constantFrom(
    ...HEAD_BOUNDARIES,
    -1,
    -24,
    -25,
    -0x100,
    -0x101,
    -0x10000,
    -0x10001,
    -0x100000000,
    -0x100000001,
    Number.MIN_SAFE_INTEGER,
  ),
);

const arbCborText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'grapheme-ascii' }),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: fc.constantFrom('a', '\u0000', 'é', '€', '\uFEFF', '\uFFFD', '😀', '👩‍👩‍👧') }),
);

const arbScalar: fc.Arbitrary<CborValue> = fc.oneof(
  arbInt,
  arbCborText,
  fc.uint8Array({ maxLength: 64 }),
  fc.boolean(),
  fc.constant(null),
);

const arbKey: fc.Arbitrary<number | string> = fc.oneof(arbInt, arbCborText);

const { value: arbValue } = fc.letrec<{ value: CborValue; array: CborValue[]; map: CborMap }>((tie) => ({
  value: fc.oneof({ maxDepth: 6, depthSize: 'small' }, arbScalar, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  map: fc.array(fc.tuple(arbKey, tie('value')), { maxLength: 6 }).map((es) => new Map(es)),
}));

// ---------- round trips ----------

describe('cbor round trip', () => {
  it('decode(encode(v)) equals v, and encode(decode(b)) is b', () => {
    fc.assert(
      fc.property(arbValue, (v) => {
        const b = encode(v);
        const back = decode(b);
        expect(back).toStrictEqual(v);
        expect(toHex(encode(back))).toBe(toHex(b));
      }),
      { numRuns: 500 },
    );
  });

  it('encodes a map the same whatever its insertion order', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(arbKey, arbScalar), { maxLength: 12 }), (entries) => {
        const m = new Map(entries);
        expect(toHex(encode(new Map([...m].reverse())))).toBe(toHex(encode(m)));
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips every integer at the boundaries of the head sizes', () => {
    for (const n of [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) {
      for (const v of [n, -1 - n]) {
        if (!Number.isSafeInteger(v)) continue;
        expect(decode(encode(v))).toBe(v);
      }
    }
    expect(toHex(encode(Number.MAX_SAFE_INTEGER))).toBe('1b001fffffffffffff');
    expect(toHex(encode(Number.MIN_SAFE_INTEGER))).toBe('3b001ffffffffffffe');
    expect(decode(hex('1b001fffffffffffff'))).toBe(Number.MAX_SAFE_INTEGER);
    expect(decode(hex('3b001ffffffffffffe'))).toBe(Number.MIN_SAFE_INTEGER);
  });

  it('keeps a leading byte order mark in text (U+FEFF is a character, not a signature)', () => {
    for (const s of ['\uFEFF', '\uFEFFabc', 'a\uFEFF', '\uFEFF\uFEFF']) {
      const b = encode(s);
      expect(decode(b)).toBe(s);
      expect(toHex(encode(decode(b) as string))).toBe(toHex(b));
    }
    // Two different byte strings must never decode to the same value.
    expectCodecError(() => encode('\uD800'), 'unsupported');
    expect(decode(hex('63efbbbf'))).toBe('\uFEFF');
  });

  it('does not alias the input: decoded byte strings are copies', () => {
    const input = hex('4401020304');
    const out = decode(input) as Uint8Array;
    input[1] = 0xff;
    expect(out).toStrictEqual(new Uint8Array([1, 2, 3, 4]));
  });
});

// ---------- RFC 8949 Appendix A, the supported subset ----------

/** [diagnostic notation, encoding, value] */
const RFC_VECTORS: readonly (readonly [string, string, CborValue])[] = [
  ['0', '00', 0],
  ['1', '01', 1],
  ['10', '0a', 10],
  ['23', '17', 23],
  ['24', '1818', 24],
  ['25', '1819', 25],
  ['100', '1864', 100],
  ['1000', '1903e8', 1000],
  ['1000000', '1a000f4240', 1000000],
  ['1000000000000', '1b000000e8d4a51000', 1000000000000],
  ['-1', '20', -1],
  ['-10', '29', -10],
  ['-100', '3863', -100],
  ['-1000', '3903e7', -1000],
  ['false', 'f4', false],
  ['true', 'f5', true],
  ['null', 'f6', null],
  ["h''", '40', new Uint8Array(0)],
  ["h'01020304'", '4401020304', new Uint8Array([1, 2, 3, 4])],
  ['""', '60', ''],
  ['"a"', '6161', 'a'],
  ['"IETF"', '6449455446', 'IETF'],
  ['"\\"\\\\"', '62225c', '"\\'],
  ['"\\u00fc"', '62c3bc', '\u00fc'],
  ['"\\u6c34"', '63e6b0b4', '\u6c34'],
  ['"\\ud800\\udd51"', '64f0908591', '\ud800\udd51'],
  ['[]', '80', []],
  ['[1, 2, 3]', '83010203', [1, 2, 3]],
  ['[1, [2, 3], [4, 5]]', '8301820203820405', [1, [2, 3], [4, 5]]],
  [
    '[1, 2, ..., 25]',
    '98190102030405060708090a0b0c0d0e0f101112131415161718181819',
    Array.from({ length: 25 }, (_, i) => i + 1),
  ],
  ['{}', 'a0', new Map()],
  [
    '{1: 2, 3: 4}',
    'a201020304',
    new Map([
      [1, 2],
      [3, 4],
    ]),
  ],
  [
    '{"a": 1, "b": [2, 3]}',
    'a26161016162820203',
    new Map<string, CborValue>([
      ['a', 1],
      ['b', [2, 3]],
    ]),
  ],
  ['["a", {"b": "c"}]', '826161a161626163', ['a', new Map([['b', 'c']])]],
  [
    '{"a": "A", ..., "e": "E"}',
    'a56161614161626142616361436164614461656145',
    new Map([
      ['a', 'A'],
      ['b', 'B'],
      ['c', 'C'],
      ['d', 'D'],
      ['e', 'E'],
    ]),
  ],
];

describe('RFC 8949 Appendix A vectors', () => {
  it.each(RFC_VECTORS)('%s <-> %s', (_name, h, value) => {
    expect(toHex(encode(value))).toBe(h);
    expect(decode(hex(h))).toStrictEqual(value);
  });

  it('sorts map keys bytewise on their encodings (RFC 8949, not RFC 7049 length-first)', () => {
    // 24 encodes as 1818 and -1 as 20: bytewise 18 < 20, though 24 is the longer key.
    const m = new Map([
      [-1, 0],
      [24, 0],
    ]);
    expect(toHex(encode(m))).toBe('a21818002000');
    expect(decode(hex('a21818002000'))).toStrictEqual(m);
    expectCodecError(() => decode(hex('a22000181800')), 'non-canonical');
    // Integer keys (major 0/1) sort before text keys (major 3).
    expect(
      toHex(
        encode(
          new Map<number | string, CborValue>([
            ['a', 1],
            [1, 2],
          ]),
        ),
      ),
    ).toBe('a20102616101');
  });
});

// ---------- rejections ----------

const REJECTED: readonly (readonly [string, string, CodecErrorCode])[] = [
  // Non-shortest heads, for every major type that carries a number or a length.
  ['uint 0 in 1 byte', '1800', 'non-canonical'],
  ['uint 23 in 1 byte', '1817', 'non-canonical'],
  ['uint 23 in 2 bytes', '190017', 'non-canonical'],
  ['uint 255 in 2 bytes', '1900ff', 'non-canonical'],
  ['uint 255 in 4 bytes', '1a000000ff', 'non-canonical'],
  ['uint 65535 in 4 bytes', '1a0000ffff', 'non-canonical'],
  ['uint 2^32-1 in 8 bytes', '1b00000000ffffffff', 'non-canonical'],
  ['uint 0 in 8 bytes', '1b0000000000000000', 'non-canonical'],
  ['nint -1 in 1 byte', '3800', 'non-canonical'],
  ['nint -24 in 2 bytes', '390017', 'non-canonical'],
  ['bytes length in 1 byte', '580100', 'non-canonical'],
  ['text length in 2 bytes', '79000161', 'non-canonical'],
  ['array length in 1 byte', '9800', 'non-canonical'],
  ['map length in 1 byte', 'b800', 'non-canonical'],
  // Indefinite lengths.
  ['indefinite array', '9f0102ff', 'non-canonical'],
  ['indefinite empty array', '9fff', 'non-canonical'],
  ['indefinite byte string', '5f42010243030405ff', 'non-canonical'],
  ['indefinite text', '7f657374726561646d696e67ff', 'non-canonical'],
  ['indefinite map', 'bf61610161629f0203ffff', 'non-canonical'],
  ['indefinite uint', '1f', 'non-canonical'],
  // Floats, tags, simple values, reserved additional info.
  ['float16 1.0', 'f93c00', 'unsupported'],
  ['float16 0.0', 'f90000', 'unsupported'],
  ['float32 100000.0', 'fa47c35000', 'unsupported'],
  ['float64 1.1', 'fb3ff199999999999a', 'unsupported'],
  ['float64 1764100000000', 'fb4279abc8dc900000', 'unsupported'],
  ['tag 1 (epoch time)', 'c11a514b67b0', 'unsupported'],
  ['tag 0 (date string)', 'c074323031332d30332d32315432303a30343a30305a', 'unsupported'],
  ['tag 2 (bignum)', 'c249010000000000000000', 'unsupported'],
  ['tag 42 in 1 byte', 'd82a4100', 'unsupported'],
  ['undefined', 'f7', 'unsupported'],
  ['simple(16)', 'f0', 'unsupported'],
  ['simple(255)', 'f8ff', 'unsupported'],
  ['lone break', 'ff', 'unsupported'],
  ['reserved info 28', '1c', 'unsupported'],
  ['reserved info 30 on text', '7e', 'unsupported'],
  // Maps: order, duplicates, key types.
  ['unsorted int keys', 'a203040102', 'non-canonical'],
  ['unsorted text keys', 'a2616202616101', 'non-canonical'],
  ['text key before int key', 'a26161010102', 'non-canonical'],
  ['duplicate int key', 'a201020103', 'non-canonical'],
  ['duplicate text key', 'a2616101616102', 'non-canonical'],
  ['byte-string key', 'a1400102', 'unsupported'],
  ['boolean key', 'a1f501', 'unsupported'],
  ['array key', 'a18001', 'unsupported'],
  ['null key', 'a1f601', 'unsupported'],
  // Trailing bytes after one complete item.
  ['two items', '0000', 'trailing-bytes'],
  ['array then null', '80f6', 'trailing-bytes'],
  ['text then a stray byte', '6161ff', 'trailing-bytes'],
  // Invalid UTF-8.
  ['truncated 2-byte sequence', '62c328', 'bad-utf8'],
  ['lone continuation byte', '6180', 'bad-utf8'],
  ['0xff in text', '61ff', 'bad-utf8'],
  ['overlong encoding of NUL', '62c080', 'bad-utf8'],
  ['encoded surrogate U+D800', '63eda080', 'bad-utf8'],
  ['code point above U+10FFFF', '64f4908080', 'bad-utf8'],
  // Integers beyond the safe range.
  ['uint 2^53', '1b0020000000000000', 'unsupported'],
  ['uint 2^64-1', '1bffffffffffffffff', 'unsupported'],
  ['nint -2^53-1', '3b0020000000000000', 'unsupported'],
  ['nint -2^53 (not a safe integer)', '3b001fffffffffffff', 'unsupported'],
  ['nint -2^64', '3bffffffffffffffff', 'unsupported'],
  // Declared lengths over the default limits fail before allocating or reading the content.
  [
    'text one byte over MAX_STRING_BYTES',
    `79${(MAX_STRING_BYTES + 1).toString(16).padStart(4, '0')}`,
    'too-long',
  ],
  ['bytes of 2^53-1', '5b001fffffffffffff', 'too-long'],
  [
    'array one over MAX_ARRAY_LENGTH',
    `99${(MAX_ARRAY_LENGTH + 1).toString(16).padStart(4, '0')}`,
    'too-long',
  ],
  ['map one over MAX_ARRAY_LENGTH', `b9${(MAX_ARRAY_LENGTH + 1).toString(16).padStart(4, '0')}`, 'too-long'],
  // Counts larger than the remaining input.
  ['array longer than the input', '8301', 'truncated'],
  ['map longer than the input', 'a201', 'truncated'],
  ['bytes longer than the input', '45010203', 'truncated'],
  ['empty input', '', 'truncated'],
];

describe('cbor rejects', () => {
  it.each(REJECTED)('%s (%s) with %s', (_what, h, code) => {
    expectCodecError(() => decode(hex(h)), code);
    const r = tryDecode(hex(h));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe(code);
  });

  it('every truncation of a valid encoding', () => {
    const samples: CborValue[] = [
      1000000000000,
      -1000,
      'IETF',
      '€😀',
      new Uint8Array([1, 2, 3, 4]),
      [1, [2, 3], [4, 5]],
      new Map<number | string, CborValue>([
        [1, 'x'],
        ['b', [2, new Uint8Array(3)]],
      ]),
    ];
    for (const v of samples) {
      const b = encode(v);
      for (let n = 0; n < b.length; n++) expectCodecError(() => decode(b.subarray(0, n)), 'truncated');
    }
  });

  it('every truncation of random valid encodings', () => {
    fc.assert(
      fc.property(arbValue, (v) => {
        const b = encode(v);
        for (let n = 0; n < b.length; n++) {
          const r = tryDecode(b.subarray(0, n));
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.error.code).toBe('truncated');
        }
      }),
      { numRuns: 200 },
    );
  });

  it('any item followed by more bytes', () => {
    fc.assert(
      fc.property(arbValue, fc.uint8Array({ minLength: 1, maxLength: 8 }), (v, extra) => {
        const b = encode(v);
        const joined = new Uint8Array(b.length + extra.length);
        joined.set(b);
        joined.set(extra, b.length);
        expectCodecError(() => decode(joined), 'trailing-bytes');
      }),
      { numRuns: 200 },
    );
  });
});

describe('cbor decode limits', () => {
  const small: DecodeLimits = { maxBytes: 16, maxArrayLength: 3, maxStringBytes: 4, maxDepth: 2 };

  it('total bytes', () => {
    const roomy = { ...small, maxStringBytes: 100 };
    expect(decode(hex('4f' + '00'.repeat(15)), roomy)).toHaveLength(15);
    expectCodecError(() => decode(hex('50' + '00'.repeat(16)), roomy), 'too-large');
    expectCodecError(() => decode(new Uint8Array(DEFAULT_LIMITS.maxBytes + 1), DEFAULT_LIMITS), 'too-large');
  });

  it('string bytes', () => {
    expect(decode(hex('6474657374'), small)).toBe('test');
    expectCodecError(() => decode(hex('6568656c6c6f'), small), 'too-long');
    expect(decode(hex('4401020304'), small)).toHaveLength(4);
    expectCodecError(() => decode(hex('450102030405'), small), 'too-long');
    // Multi-byte text is measured in bytes: 2 characters, 6 bytes.
    expectCodecError(() => decode(encode('€€'), small), 'too-long');
  });

  it('array and map lengths', () => {
    expect(decode(hex('83010203'), small)).toStrictEqual([1, 2, 3]);
    expectCodecError(() => decode(hex('8401020304'), small), 'too-long');
    expect(decode(hex('a3010002000300'), small)).toBeInstanceOf(Map);
    expectCodecError(() => decode(hex('a40100020003000400'), small), 'too-long');
  });

  it('nesting depth', () => {
    expect(decode(hex('8180'), small)).toStrictEqual([[]]);
    expectCodecError(() => decode(hex('818180'), small), 'too-deep');
    expectCodecError(() => decode(hex('a101a101a0'), small), 'too-deep');
    expectCodecError(() => decode(hex('81a10180'), small), 'too-deep');
  });

  it('nesting at the default MAX_DEPTH, for both encode and decode', () => {
    // MAX_DEPTH containers nest; the innermost may hold scalars.
    const deepest = nested(MAX_DEPTH - 1, [1, 'x']);
    expect(decode(encode(deepest))).toStrictEqual(deepest);
    // One container more is rejected by the decoder, so the encoder must refuse to write it.
    const tooDeep = nested(MAX_DEPTH, []);
    expectCodecError(() => decode(hex('81'.repeat(MAX_DEPTH) + '80')), 'too-deep');
    expectCodecError(() => encode(tooDeep), 'too-deep');
    expectCodecError(() => encode(nested(MAX_DEPTH, new Map())), 'too-deep');
    expectCodecError(() => encode(nested(MAX_DEPTH, [1])), 'too-deep');
  });

  it('deep input far beyond the limit fails cleanly, without exhausting the stack', () => {
    const r = tryDecode(hex('81'.repeat(60_000) + '80'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('too-deep');
  });
});

describe('cbor encode rejects values outside the subset', () => {
  it.each([
    ['a fraction', 1.5],
    ['2^53', 2 ** 53],
    ['-2^53', -(2 ** 53)],
    ['NaN', NaN],
    ['Infinity', Infinity],
  ])('%s', (_what, v) => {
    expectCodecError(() => encode(v), 'unsupported');
  });

  it('text that is not well-formed UTF-16 (lone surrogates), rather than silently replacing it', () => {
    for (const s of ['\uD800', 'a\uDC00b', '\uDBFF', '😀'.slice(0, 1), '😀'.slice(1)]) {
      expectCodecError(() => encode(s), 'unsupported');
      expectCodecError(() => encode([new Map([[s, 1]])]), 'unsupported');
    }
    expect(decode(encode('\uD83D\uDE00'))).toBe('😀');
  });
});

// ---------- arbitrary input ----------

describe('cbor on arbitrary bytes', () => {
  it('tryDecode never throws, and whatever decodes re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const r = tryDecode(b);
        if (r.ok) expect(toHex(encode(r.value))).toBe(toHex(b));
        else expect(r.error).toBeInstanceOf(CodecError);
      }),
      { numRuns: 2000 },
    );
  });

  it('the same for mutations of valid encodings (which decode far more often)', () => {
    const arbMutated = fc
      .tuple(
        arbValue.map(encode),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 })), {
          minLength: 1,
          maxLength: 4,
        }),
      )
      .map(([b, edits]) => {
        let out = Array.from(b);
        for (const [at, byte, op] of edits) {
          const i = out.length === 0 ? 0 : at % out.length;
          if (op === 0) out[i] = byte;
          else if (op === 1) out.splice(i, 0, byte);
          else out = out.filter((_, j) => j !== i);
        }
        return new Uint8Array(out);
      });
    let decoded = 0;
    fc.assert(
      fc.property(arbMutated, (b) => {
        const r = tryDecode(b);
        if (r.ok) {
          decoded++;
          expect(toHex(encode(r.value))).toBe(toHex(b));
        } else {
          expect(r.error).toBeInstanceOf(CodecError);
        }
      }),
      { numRuns: 2000 },
    );
    expect(decoded).toBeGreaterThan(0);
  });
});
