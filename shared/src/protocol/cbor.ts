/**
 * Canonical CBOR (RFC 8949 section 4.2.1) for the subset Conclave uses: unsigned and negative
 * integers (safe-integer range), byte strings, UTF-8 text, arrays, maps with integer or text
 * keys, booleans and null. No floats, tags, undefined or indefinite lengths.
 *
 * `encode` writes the one canonical form: shortest argument, definite lengths, map keys sorted
 * by their encoded bytes. `decode` accepts exactly that form and nothing else, checking limits
 * before it allocates, so an op has one encoding and so one id.
 */
import { CodecError } from './errors.js';
import { MAX_ARRAY_LENGTH, MAX_DEPTH, MAX_SEALED_BYTES, MAX_STRING_BYTES } from './limits.js';

export type CborValue = number | string | Uint8Array | boolean | null | readonly CborValue[] | CborMap;
export type CborMap = ReadonlyMap<number | string, CborValue>;

export interface DecodeLimits {
  /** Bytes of the whole input. */
  readonly maxBytes: number;
  /** Elements of one array or entries of one map. */
  readonly maxArrayLength: number;
  /** Bytes of one text or byte string. */
  readonly maxStringBytes: number;
  /** Nesting levels of arrays and maps. */
  readonly maxDepth: number;
}

export const DEFAULT_LIMITS: DecodeLimits = {
  maxBytes: MAX_SEALED_BYTES,
  maxArrayLength: MAX_ARRAY_LENGTH,
  maxStringBytes: MAX_STRING_BYTES,
  maxDepth: MAX_DEPTH,
};

const utf8Encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text to keep, not a signature to strip (else two encodings
// decode to one value). The encoder refuses lone surrogates, which TextEncoder would replace.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** ES2024 `String.prototype.isWellFormed` (native, several times faster than the regex fallback). */
const isWellFormed: (s: string) => boolean =
  'isWellFormed' in String.prototype
    ? (s) => (s as string & { isWellFormed(): boolean }).isWellFormed()
    : (s) => !/[\uD800-\uDFFF]/u.test(s);

class Writer {
  buf = new Uint8Array(256);
  len = 0;

  private grow(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  head(major: number, arg: number): void {
    this.grow(9);
    const m = major << 5;
    const b = this.buf;
    if (arg < 24) {
      b[this.len++] = m | arg;
    } else if (arg < 0x100) {
      b[this.len++] = m | 24;
      b[this.len++] = arg;
    } else if (arg < 0x10000) {
      b[this.len++] = m | 25;
      b[this.len++] = arg >>> 8;
      b[this.len++] = arg & 0xff;
    } else if (arg < 0x100000000) {
      b[this.len++] = m | 26;
      b[this.len++] = arg >>> 24;
      b[this.len++] = (arg >>> 16) & 0xff;
      b[this.len++] = (arg >>> 8) & 0xff;
      b[this.len++] = arg & 0xff;
    } else {
      const hi = Math.floor(arg / 0x100000000);
      const lo = arg >>> 0;
      b[this.len++] = m | 27;
      b[this.len++] = hi >>> 24;
      b[this.len++] = (hi >>> 16) & 0xff;
      b[this.len++] = (hi >>> 8) & 0xff;
      b[this.len++] = hi & 0xff;
      b[this.len++] = lo >>> 24;
      b[this.len++] = (lo >>> 16) & 0xff;
      b[this.len++] = (lo >>> 8) & 0xff;
      b[this.len++] = lo & 0xff;
    }
  }

  bytes(src: Uint8Array): void {
    this.grow(src.length);
    this.buf.set(src, this.len);
    this.len += src.length;
  }

  value(v: CborValue, depth: number): void {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new CodecError('unsupported', `not a safe integer: ${v}`);
      if (v >= 0) this.head(0, v);
      else this.head(1, -1 - v);
    } else if (typeof v === 'string') {
      if (!isWellFormed(v)) throw new CodecError('unsupported', 'text with a lone surrogate');
      const u = utf8Encoder.encode(v);
      this.head(3, u.length);
      this.bytes(u);
    } else if (v instanceof Uint8Array) {
      this.head(2, v.length);
      this.bytes(v);
    } else if (typeof v === 'boolean') {
      this.grow(1);
      this.buf[this.len++] = v ? 0xf5 : 0xf4;
    } else if (v === null) {
      this.grow(1);
      this.buf[this.len++] = 0xf6;
    } else if (depth >= MAX_DEPTH) {
      // The same bound the decoder applies to arrays and maps.
      throw new CodecError('too-deep', 'value nests deeper than MAX_DEPTH');
    } else if (isArray(v)) {
      this.head(4, v.length);
      for (const x of v) this.value(x, depth + 1);
    } else {
      const entries: [Uint8Array, CborValue][] = [];
      for (const [k, x] of v) entries.push([encode(k), x]);
      entries.sort((a, b) => compareEncodedKeys(a[0], b[0]));
      this.head(5, entries.length);
      let prev: Uint8Array | undefined;
      for (const [k, x] of entries) {
        if (prev !== undefined && compareEncodedKeys(prev, k) === 0) {
          throw new CodecError('non-canonical', 'duplicate map key');
        }
        prev = k;
        this.bytes(k);
        this.value(x, depth + 1);
      }
    }
  }
}

/** {@link compareEncodedKeys} of two ranges of one buffer, without views of them. */
function compareRanges(buf: Uint8Array, aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const n = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < n; i++) {
    const d = (buf[aStart + i] as number) - (buf[bStart + i] as number);
    if (d !== 0) return d;
  }
  return aEnd - aStart - (bEnd - bStart);
}

function isArray(v: CborValue): v is readonly CborValue[] {
  return Array.isArray(v);
}

/** RFC 8949 4.2.1: keys sort by their encoded bytes, shorter first only through bytewise order. */
function compareEncodedKeys(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** The canonical encoding of `v`. Throws `CodecError` for values outside the subset (a bug). */
export function encode(v: CborValue): Uint8Array {
  const w = new Writer();
  w.value(v, 0);
  return w.buf.slice(0, w.len);
}

class Reader {
  /**
   * One reader that lives as long as the process, never used to read. V8 keeps an object shape
   * (the hidden class a reader gets as its fields are set) only while some object has it. Every
   * other reader is dropped once its decode returns, so a full garbage collection while nothing
   * is being decoded (a quiet moment between two bursts of ops) dropped the shapes and, with
   * them, the compiled code of every function that used them: the next burst decoded in the
   * interpreter and compiled the decoder again (`--trace-deopt`: "weak objects"). This reader
   * keeps the shapes, so the compiled decoder survives quiet moments.
   */
  static readonly keepShape = new Reader(new Uint8Array(0), DEFAULT_LIMITS, true);
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly limits: DecodeLimits,
    readonly views: boolean,
  ) {}

  fail(code: ConstructorParameters<typeof CodecError>[0], what: string): never {
    throw new CodecError(code, `${what} at byte ${this.pos}`);
  }

  byte(): number {
    const b = this.buf[this.pos];
    if (b === undefined) this.fail('truncated', 'input ends early');
    this.pos++;
    return b;
  }

  /** Reads the argument of a head whose additional info is `info`; rejects non-shortest forms. */
  arg(info: number): number {
    if (info < 24) return info;
    let n: number;
    if (info === 24) {
      n = this.byte();
      if (n < 24) this.fail('non-canonical', 'argument not in shortest form');
    } else if (info === 25) {
      n = this.byte() * 0x100 + this.byte();
      if (n < 0x100) this.fail('non-canonical', 'argument not in shortest form');
    } else if (info === 26) {
      n = this.byte() * 0x1000000 + this.byte() * 0x10000 + this.byte() * 0x100 + this.byte();
      if (n < 0x10000) this.fail('non-canonical', 'argument not in shortest form');
    } else if (info === 27) {
      const hi = this.byte() * 0x1000000 + this.byte() * 0x10000 + this.byte() * 0x100 + this.byte();
      const lo = this.byte() * 0x1000000 + this.byte() * 0x10000 + this.byte() * 0x100 + this.byte();
      if (hi === 0) this.fail('non-canonical', 'argument not in shortest form');
      if (hi > 0x1fffff) this.fail('unsupported', 'integer beyond the safe range');
      n = hi * 0x100000000 + lo;
    } else if (info === 31) {
      this.fail('non-canonical', 'indefinite length');
    } else {
      this.fail('unsupported', `reserved additional info ${info}`);
    }
    return n;
  }

  take(n: number): Uint8Array {
    if (n > this.limits.maxStringBytes) this.fail('too-long', `string of ${n} bytes`);
    if (this.pos + n > this.buf.length) this.fail('truncated', 'string runs past the end');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  value(depth: number): CborValue {
    const ib = this.byte();
    const major = ib >> 5;
    const info = ib & 0x1f;
    switch (major) {
      case 0:
        return this.arg(info);
      case 1: {
        const n = this.arg(info);
        // -1 - (2^53 - 1) = -2^53 is not a safe integer, and the encoder refuses it.
        if (n === Number.MAX_SAFE_INTEGER) this.fail('unsupported', 'integer beyond the safe range');
        return -1 - n;
      }
      case 2: {
        const b = this.take(this.arg(info));
        return this.views ? b : b.slice();
      }
      case 3:
        try {
          return utf8Decoder.decode(this.take(this.arg(info)));
        } catch (e) {
          if (e instanceof CodecError) throw e;
          return this.fail('bad-utf8', 'text is not valid UTF-8');
        }
      case 4: {
        if (depth >= this.limits.maxDepth) this.fail('too-deep', 'nesting');
        const n = this.arg(info);
        if (n > this.limits.maxArrayLength) this.fail('too-long', `array of ${n} items`);
        if (n > this.buf.length - this.pos) this.fail('truncated', 'array longer than the input');
        // Sized up front: an array grown by push starts with room for 16 items, and most of an
        // op's arrays hold two or three.
        const out = new Array<CborValue>(n);
        for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
        return out;
      }
      case 5: {
        if (depth >= this.limits.maxDepth) this.fail('too-deep', 'nesting');
        const n = this.arg(info);
        if (n > this.limits.maxArrayLength) this.fail('too-long', `map of ${n} entries`);
        if (n * 2 > this.buf.length - this.pos) this.fail('truncated', 'map longer than the input');
        const out = new Map<number | string, CborValue>();
        let prevStart = -1;
        let prevEnd = -1;
        for (let i = 0; i < n; i++) {
          const start = this.pos;
          const k = this.value(depth + 1);
          if (typeof k !== 'number' && typeof k !== 'string') this.fail('unsupported', 'map key type');
          const end = this.pos;
          if (prevStart >= 0) {
            const c = compareRanges(this.buf, prevStart, prevEnd, start, end);
            if (c >= 0) this.fail('non-canonical', c === 0 ? 'duplicate map key' : 'map keys out of order');
          }
          prevStart = start;
          prevEnd = end;
          out.set(k, this.value(depth + 1));
        }
        return out;
      }
      case 6:
        return this.fail('unsupported', 'tags');
      default:
        if (ib === 0xf4) return false;
        if (ib === 0xf5) return true;
        if (ib === 0xf6) return null;
        return this.fail('unsupported', `simple value or float 0x${ib.toString(16)}`);
    }
  }
}

/**
 * Decodes exactly one canonical CBOR item filling all of `bytes`. Throws `CodecError` on
 * malformed, non-canonical or over-limit input; use {@link tryDecode} at a boundary.
 *
 * Byte strings are copies, unless `options.views`: then they are views into `bytes`, which
 * saves an allocation per string for callers that own `bytes` and never change it.
 */
export function decode(
  bytes: Uint8Array,
  limits: DecodeLimits = DEFAULT_LIMITS,
  options: { readonly views?: boolean } = {},
): CborValue {
  if (bytes.length > limits.maxBytes) throw new CodecError('too-large', `input of ${bytes.length} bytes`);
  const r = new Reader(bytes, limits, options.views === true);
  const v = r.value(0);
  if (r.pos !== bytes.length) throw new CodecError('trailing-bytes', `item ends at byte ${r.pos}`);
  return v;
}

export type DecodeResult = { ok: true; value: CborValue } | { ok: false; error: CodecError };

/** {@link decode} as a result: never throws for bad input. */
export function tryDecode(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): DecodeResult {
  try {
    return { ok: true, value: decode(bytes, limits) };
  } catch (e) {
    if (e instanceof CodecError) return { ok: false, error: e };
    if (e instanceof RangeError) {
      return { ok: false, error: new CodecError('too-deep', 'input exhausted the decoder') };
    }
    throw e;
  }
}
