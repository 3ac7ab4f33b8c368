/**
 * How MLS handshake messages (commits, proposals) travel to a Space's relays. An MLS message
 * names its group, the SpaceId, in the clear; relays must see only the TopicId (section 2).
 * So a handshake message is sealed under the content key of the epoch it was sent in, which
 * every member of that epoch has, and only `(topic, epoch)` stays readable: what a relay needs
 * to keep the first commit per epoch (section 6.3).
 *
 * `Handshake = CBOR [topic, epoch, commitHash, nonce, AES-GCM(K_epoch, message, ad)]`,
 * `ad = "conclave/handshake/1" ‖ topic ‖ epochBytes(epoch)`.
 */
import type { Aead } from '../ports/aead.js';
import { type DecodeLimits, decode, encode } from '../protocol/cbor.js';
import { CodecError } from '../protocol/errors.js';
import type { EpochRef, TopicId } from '../protocol/ids.js';
import { HASH_BYTES, concatBytes } from '../protocol/ids.js';
import { MAX_MLS_MESSAGE_BYTES } from '../protocol/limits.js';
import { epochBytes } from '../protocol/op.js';
import { NONCE_BYTES } from '../protocol/seal.js';

const AD_CONTEXT = new TextEncoder().encode('conclave/handshake/1');

const LIMITS: DecodeLimits = {
  maxBytes: MAX_MLS_MESSAGE_BYTES + 256,
  maxArrayLength: 5,
  maxStringBytes: MAX_MLS_MESSAGE_BYTES + 16,
  maxDepth: 1,
};

export interface Handshake {
  readonly topic: TopicId;
  /** The epoch the message was sent in (for a commit: the epoch it replaces). */
  readonly epoch: EpochRef;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
}

function ad(topic: TopicId, epoch: EpochRef): Uint8Array {
  return concatBytes(AD_CONTEXT, topic, epochBytes(epoch));
}

export async function sealHandshake(
  aead: Aead,
  topic: TopicId,
  epoch: EpochRef,
  key: Uint8Array,
  nonce: Uint8Array,
  message: Uint8Array,
): Promise<Uint8Array> {
  const ciphertext = await aead.encrypt(key, nonce, ad(topic, epoch), message);
  return encode([topic, epoch.epoch, epoch.commitHash, nonce, ciphertext]);
}

/**
 * The envelope of a handshake message, not yet opened.
 *
 * @throws CodecError when the bytes are not a handshake envelope.
 */
export function decodeHandshake(bytes: Uint8Array): Handshake {
  const v = decode(bytes, LIMITS);
  if (!Array.isArray(v) || v.length !== 5)
    throw new CodecError('wrong-type', 'handshake: not a 5-item array');
  const [topic, epoch, commitHash, nonce, ciphertext] = v as unknown[];
  if (!(topic instanceof Uint8Array) || topic.length !== HASH_BYTES)
    throw new CodecError('wrong-type', 'handshake: topic');
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0)
    throw new CodecError('wrong-type', 'handshake: epoch');
  if (!(commitHash instanceof Uint8Array) || commitHash.length !== HASH_BYTES)
    throw new CodecError('wrong-type', 'handshake: commit hash');
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_BYTES)
    throw new CodecError('wrong-type', 'handshake: nonce');
  if (!(ciphertext instanceof Uint8Array)) throw new CodecError('wrong-type', 'handshake: ciphertext');
  return { topic: topic as TopicId, epoch: { epoch, commitHash }, nonce, ciphertext };
}

/** The MLS message inside; rejects with `SealError('bad-seal')` when the key does not open it. */
export function openHandshake(aead: Aead, h: Handshake, key: Uint8Array): Promise<Uint8Array> {
  return aead.decrypt(key, h.nonce, ad(h.topic, h.epoch), h.ciphertext);
}
