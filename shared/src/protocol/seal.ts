/**
 * The sealed envelope (ARCHITECTURE.md section 3): what relays store and forward.
 *
 *   Sealed = [topic, [epoch, commitHash], nonce, aead(K_epoch, op ‖ padding, ad = topic ‖ epoch)]
 *
 * The whole encoding is exactly one padding bucket long, so a relay learns only the bucket.
 * Padding is ISO/IEC 7816-4 (0x80 then zeros), unambiguous for any op bytes.
 */
import { type CborValue, type DecodeLimits, decode, encode } from './cbor.js';
import { SealError } from './errors.js';
import { type EpochRef, type TopicId, HASH_BYTES, bufferSource, concatBytes } from './ids.js';
import { MAX_SEALED_BYTES, SEAL_BUCKETS } from './limits.js';
import type { Aead } from '../ports/aead.js';
import { epochBytes } from './op.js';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export interface SealedEnvelope {
  readonly topic: TopicId;
  readonly epoch: EpochRef;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
}

function headLength(arg: number): number {
  if (arg < 24) return 1;
  if (arg < 0x100) return 2;
  if (arg < 0x10000) return 3;
  if (arg < 0x100000000) return 5;
  return 9;
}

/** The ciphertext length that makes the envelope exactly `bucket` bytes, or undefined. */
function ciphertextLengthFor(bucket: number, epoch: number): number | undefined {
  const fixed = 1 + (2 + HASH_BYTES) + (1 + headLength(epoch) + 2 + HASH_BYTES) + (1 + NONCE_BYTES);
  for (const h of [2, 3, 5]) {
    const len = bucket - fixed - h;
    if (len > 0 && headLength(len) === h) return len;
  }
  return undefined;
}

/** Associated data binding a ciphertext to its topic and epoch. */
export function sealAd(topic: TopicId, epoch: EpochRef): Uint8Array {
  return concatBytes(topic, epochBytes(epoch));
}

function bad(what: string): never {
  throw new SealError('bad-envelope', what);
}

/**
 * Whether `message` presents itself as a sealed op: a padding bucket's length, and the head of
 * the envelope's four-item array with its 32-byte topic (`84 58 20`). A cheap look, not a
 * decode. Other mailbox messages (MLS handshakes are arrays of five, relay records and invite
 * messages have their own heads) never pass it, whatever their length.
 */
export function looksSealed(message: Uint8Array): boolean {
  return (
    SEAL_BUCKETS.includes(message.length) && message[0] === 0x84 && message[1] === 0x58 && message[2] === 0x20
  );
}

export function encodeSealed(env: SealedEnvelope): Uint8Array {
  return encode([env.topic, [env.epoch.epoch, env.epoch.commitHash], env.nonce, env.ciphertext]);
}

/**
 * Limits for an envelope: the whole is at most the top bucket, and its ciphertext takes nearly
 * all of it, so the default string limit (sized for fields inside an op) would refuse every op
 * sealed into the top bucket.
 */
const ENVELOPE_LIMITS: DecodeLimits = {
  maxBytes: MAX_SEALED_BYTES,
  maxArrayLength: 4,
  maxStringBytes: MAX_SEALED_BYTES,
  maxDepth: 2,
};

/** Decodes an envelope. Throws `CodecError` (bad CBOR) or `SealError('bad-envelope')`. */
export function decodeSealed(bytes: Uint8Array): SealedEnvelope {
  if (bytes.length > MAX_SEALED_BYTES) throw new SealError('too-large', `sealed op of ${bytes.length} bytes`);
  if (!SEAL_BUCKETS.includes(bytes.length))
    throw new SealError('bad-envelope', 'length is not a padding bucket');
  // Views: the envelope's fields are read from the caller's bytes, which are kept as they are.
  const v = decode(bytes, ENVELOPE_LIMITS, { views: true });
  if (!Array.isArray(v) || v.length !== 4) bad('expected an array of 4');
  const [topic, epoch, nonce, ct] = v as readonly CborValue[];
  if (!(topic instanceof Uint8Array) || topic.length !== HASH_BYTES) bad('topic');
  if (!Array.isArray(epoch) || epoch.length !== 2) bad('epoch');
  const [num, hash] = epoch as readonly CborValue[];
  if (typeof num !== 'number' || num < 0) bad('epoch number');
  if (!(hash instanceof Uint8Array) || hash.length !== HASH_BYTES) bad('epoch commit hash');
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_BYTES) bad('nonce');
  if (!(ct instanceof Uint8Array) || ct.length < TAG_BYTES + 1) bad('ciphertext');
  return {
    topic: topic as TopicId,
    epoch: { epoch: num, commitHash: hash },
    nonce: nonce,
    ciphertext: ct,
  };
}

/** Imports a raw 32-byte epoch key for AES-256-GCM. */
export async function importEpochKey(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw new SealError('bad-seal', 'epoch key must be 32 bytes');
  return globalThis.crypto.subtle.importKey('raw', bufferSource(raw), 'AES-GCM', false, [
    'encrypt',
    'decrypt',
  ]);
}

/**
 * The plaintext to encrypt for `opBytes`: the op, the padding marker and zeros, sized so the
 * envelope is exactly the smallest bucket that fits. Throws `SealError('too-large')` when no
 * bucket fits (a bug: ops are limited before this).
 */
export function padForBucket(opBytes: Uint8Array, epoch: EpochRef): Uint8Array<ArrayBuffer> {
  for (const bucket of SEAL_BUCKETS) {
    const ctLen = ciphertextLengthFor(bucket, epoch.epoch);
    if (ctLen === undefined || ctLen - TAG_BYTES < opBytes.length + 1) continue;
    const padded = new Uint8Array(ctLen - TAG_BYTES);
    padded.set(opBytes);
    padded[opBytes.length] = 0x80;
    return padded;
  }
  throw new SealError('too-large', `op of ${opBytes.length} bytes fits no bucket`);
}

/** The op bytes inside a decrypted plaintext; `SealError('bad-padding')` when there is no marker. */
export function unpad(plain: Uint8Array): Uint8Array {
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (end < 0 || plain[end] !== 0x80) throw new SealError('bad-padding', 'no padding marker');
  return plain.slice(0, end);
}

/** Seals canonical op bytes under the raw epoch key with `aead` (see {@link padForBucket}). */
export async function sealWith(
  aead: Aead,
  opBytes: Uint8Array,
  topic: TopicId,
  epoch: EpochRef,
  key: Uint8Array,
  nonce: Uint8Array,
): Promise<Uint8Array> {
  if (nonce.length !== NONCE_BYTES) throw new SealError('bad-seal', 'nonce must be 12 bytes');
  const ciphertext = await aead.encrypt(key, nonce, sealAd(topic, epoch), padForBucket(opBytes, epoch));
  return encodeSealed({ topic, epoch, nonce, ciphertext });
}

/**
 * Opens an envelope with the raw epoch key: the op bytes, padding removed. Rejects with
 * `SealError('bad-seal')` when key, nonce, associated data or ciphertext do not match, and
 * `'bad-padding'` when the plaintext does not end in valid padding.
 */
export async function openWith(
  aead: Aead,
  env: SealedEnvelope,
  key: Uint8Array,
  ad: Uint8Array = sealAd(env.topic, env.epoch),
): Promise<Uint8Array> {
  return unpad(await aead.decrypt(key, env.nonce, ad, env.ciphertext));
}

/** {@link openWith} through a synchronous decrypt (`Aead.decryptSync`). */
export function openWithSync(
  decrypt: NonNullable<Aead['decryptSync']>,
  env: SealedEnvelope,
  key: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  return unpad(decrypt(key, env.nonce, ad, env.ciphertext));
}

/** {@link sealWith} over WebCrypto with an imported key (tests and tools). */
export async function seal(
  opBytes: Uint8Array,
  topic: TopicId,
  epoch: EpochRef,
  key: CryptoKey,
  nonce: Uint8Array,
): Promise<Uint8Array> {
  if (nonce.length !== NONCE_BYTES) throw new SealError('bad-seal', 'nonce must be 12 bytes');
  const ct = await globalThis.crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: bufferSource(nonce), additionalData: bufferSource(sealAd(topic, epoch)) },
    key,
    padForBucket(opBytes, epoch),
  );
  return encodeSealed({ topic, epoch, nonce, ciphertext: new Uint8Array(ct) });
}

/** {@link openWith} over WebCrypto with an imported key (tests and tools). */
export async function open(env: SealedEnvelope, key: CryptoKey): Promise<Uint8Array> {
  let plain: Uint8Array;
  try {
    plain = new Uint8Array(
      await globalThis.crypto.subtle.decrypt(
        {
          name: 'AES-GCM',
          iv: bufferSource(env.nonce),
          additionalData: bufferSource(sealAd(env.topic, env.epoch)),
        },
        key,
        bufferSource(env.ciphertext),
      ),
    );
  } catch {
    throw new SealError('bad-seal', 'authentication failed');
  }
  return unpad(plain);
}

/**
 * Seals an op's content (see `Contents` in op.ts) under the epoch's content key:
 * `nonce ‖ AEAD(key, nonce, ad, content)`, where `ad` is `contentAd(…)` of the op.
 */
export async function sealContent(
  aead: Aead,
  key: Uint8Array,
  ad: Uint8Array,
  content: Uint8Array,
  nonce: Uint8Array,
): Promise<Uint8Array> {
  if (nonce.length !== NONCE_BYTES) throw new SealError('bad-seal', 'nonce must be 12 bytes');
  return concatBytes(nonce, await aead.encrypt(key, nonce, ad, content));
}

/** Opens sealed content; `SealError('bad-seal')` when key, associated data or bytes do not match. */
/** {@link openContent} through a synchronous decrypt (`Aead.decryptSync`). */
export function openContentSync(
  decrypt: NonNullable<Aead['decryptSync']>,
  key: Uint8Array,
  ad: Uint8Array,
  sealed: Uint8Array,
): Uint8Array {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new SealError('bad-seal', 'sealed content too short');
  return decrypt(key, sealed.subarray(0, NONCE_BYTES), ad, sealed.subarray(NONCE_BYTES));
}

export async function openContent(
  aead: Aead,
  key: Uint8Array,
  ad: Uint8Array,
  sealed: Uint8Array,
): Promise<Uint8Array> {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new SealError('bad-seal', 'sealed content too short');
  return aead.decrypt(key, sealed.subarray(0, NONCE_BYTES), ad, sealed.subarray(NONCE_BYTES));
}
