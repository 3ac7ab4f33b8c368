/**
 * base58btc (the Bitcoin alphabet) and its multibase form, `'z' + base58btc`: how user and
 * device ids are shown. Leading zero bytes map to leading '1's, so the encoding is a
 * bijection between byte strings and valid texts. Both directions are quadratic in the
 * length: meant for keys and hashes, not bulk data.
 */

const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const MULTIBASE_BASE58BTC = 'z';

const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DIGIT[ALPHABET.charCodeAt(i)] = i;

/** `bytes` in base58btc, without a multibase prefix. */
export function toBase58(bytes: Uint8Array): string {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  // log(256) / log(58) < 1.366: enough base-58 digits for the rest.
  const digits = new Uint8Array(Math.ceil((bytes.length - zeros) * 1.366) + 1);
  let len = 0;
  for (let i = zeros; i < bytes.length; i++) {
    let carry = bytes[i] ?? 0;
    for (let j = 0; j < len; j++) {
      carry += (digits[j] ?? 0) << 8;
      digits[j] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) {
      digits[len++] = carry % 58;
      carry = Math.floor(carry / 58);
    }
  }
  let out = '1'.repeat(zeros);
  for (let j = len - 1; j >= 0; j--) out += ALPHABET[digits[j] ?? 0] ?? '';
  return out;
}

/** The bytes of a base58btc text (no prefix), or `undefined` if any character is outside the alphabet. */
export function fromBase58(text: string): Uint8Array | undefined {
  let zeros = 0;
  while (zeros < text.length && text[zeros] === '1') zeros++;
  // log(58) / log(256) < 0.733: enough bytes for the rest.
  const bytes = new Uint8Array(Math.ceil((text.length - zeros) * 0.733) + 1);
  let len = 0;
  for (let i = zeros; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let carry = c < 128 ? (DIGIT[c] ?? -1) : -1;
    if (carry < 0) return undefined;
    for (let j = 0; j < len; j++) {
      carry += (bytes[j] ?? 0) * 58;
      bytes[j] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes[len++] = carry & 0xff;
      carry >>= 8;
    }
  }
  const out = new Uint8Array(zeros + len);
  for (let j = 0; j < len; j++) out[zeros + j] = bytes[len - 1 - j] ?? 0;
  return out;
}

/** `bytes` in multibase base58btc form: `'z' + base58btc(bytes)`. */
export function toMultibase(bytes: Uint8Array): string {
  return MULTIBASE_BASE58BTC + toBase58(bytes);
}

/**
 * The bytes of a multibase base58btc text, or `undefined` for anything else: a missing or
 * different multibase prefix, or a character outside the base58btc alphabet. Bound the
 * length of untrusted input before calling (cost is quadratic).
 */
export function fromMultibase(text: string): Uint8Array | undefined {
  if (!text.startsWith(MULTIBASE_BASE58BTC)) return undefined;
  return fromBase58(text.slice(MULTIBASE_BASE58BTC.length));
}
