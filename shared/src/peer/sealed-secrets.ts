/**
 * Secrets at rest: a small versioned container that encrypts a byte payload under a passphrase
 * (ARCHITECTURE.md section 10). It holds both the identity file of a home and the exported
 * backup. scrypt turns the passphrase into an AES-256-GCM key; the parameters and salt travel in
 * the header, and the whole header is the associated data, so changing any header byte fails.
 *
 * Layout (all offsets in bytes; version 1):
 *
 *     0   16  magic, ASCII "conclave-secrets"
 *     16   1  version, 0x01
 *     17   1  kdf: 0x00 none, 0x01 scrypt
 *     18   4  payload length, big-endian; the container's length must agree exactly, so a
 *              truncated or extended file is `corrupt` before any key derivation
 *   kdf 0x01 (passphrase-protected):
 *     22   1  log2(N)
 *     23   1  r
 *     24   1  p
 *     25  16  salt
 *     41  12  nonce
 *     53   …  AES-256-GCM ciphertext of the payload, 16-byte tag appended;
 *              associated data = bytes 0..53 (everything before the ciphertext)
 *   kdf 0x00 (no passphrase; for test homes and `--no-passphrase`):
 *     22   …  the payload, in the clear
 *     end-32  SHA-256 of everything before it, so damage is still detected
 *
 * A new key derivation (Argon2id, say) comes with a new version; version 1 knows only the two
 * kdf values above and calls any other byte damage.
 */
import { scryptAsync } from '@noble/hashes/scrypt.js';
import { sha256 } from '@noble/hashes/sha2.js';
import type { Aead } from '../ports/aead.js';
import type { Rng } from '../ports/env.js';
import { SealError } from '../protocol/errors.js';
import { equalBytes } from '../protocol/ids.js';

export type SecretsErrorCode =
  /**
   * The AES-GCM tag does not verify: the passphrase is wrong, or the salt, nonce or ciphertext
   * was changed. The two cannot be told apart, so the message names both.
   */
  | 'wrong-passphrase'
  /** Not a secrets container, truncated, malformed, checksum mismatch, or KDF parameters out of bounds. */
  | 'corrupt'
  /** A secrets container of a version this code does not read (written by a newer Conclave). */
  | 'unsupported-version'
  /** The container is passphrase-protected and `openWithPassphrase` was given `null`. */
  | 'passphrase-required'
  /**
   * The container is not passphrase-protected but a passphrase was given. Refused rather than
   * opened: a caller who expects protection must not silently accept a file anyone could have
   * written (e.g. one swapped in to plant a known identity key).
   */
  | 'not-protected';

/** The error family of secrets at rest. `code` is stable; `message` is for people. */
export class SecretsError extends Error {
  override readonly name = 'SecretsError';
  constructor(
    readonly code: SecretsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** scrypt cost parameters (RFC 7914). Memory is about 128·N·r bytes; time grows with N·r·p. */
export interface KdfParams {
  /** CPU and memory cost: a power of two, 2^10..2^20. */
  readonly N: number;
  /** Block size, 1..32. */
  readonly r: number;
  /** Parallelisation (run sequentially here, so it multiplies time), 1..16. */
  readonly p: number;
}

/**
 * For real secrets: 128 MiB of memory, and about 1 s per derivation (scryptAsync on Node 20,
 * a 2-core x86-64 dev VM; sealing and opening each derive once).
 */
export const DEFAULT_KDF_PARAMS: KdfParams = { N: 2 ** 17, r: 8, p: 1 };

/** The cheapest parameters accepted: about 10 ms. For tests only; they barely slow down guessing. */
export const WEAK_KDF_PARAMS: KdfParams = { N: 2 ** 10, r: 8, p: 1 };

/** log2 of N. Below 2^10 scrypt slows guessing by almost nothing; above 2^20 is past any sane cost. */
const MIN_LOG2_N = 10;
const MAX_LOG2_N = 20;
/** Block size r and parallelisation p: generous ranges around the usual r = 8, p = 1. */
const MAX_R = 32;
const MAX_P = 16;
/**
 * Bytes. scrypt's table is 128·N·r bytes. The per-parameter bounds alone admit N = 2^20, r = 32:
 * 4 GiB, which a hostile file must not make us allocate. 256 MiB is twice the default's.
 */
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024;
/**
 * Units of N·r·p. scrypt's time is proportional to it; the bounds alone admit 512x the default's
 * (minutes). Four times the default's (2^20) caps a hostile file at a few seconds.
 */
const MAX_SCRYPT_WORK = 2 ** 22;
/**
 * Bytes. The largest container read or written. Identity keys are a few KiB and a backup with
 * the key history of many Spaces stays in the low MiB; anything larger is not a secrets file.
 */
const MAX_CONTAINER_BYTES = 16 * 1024 * 1024;

const MAGIC = new TextEncoder().encode('conclave-secrets');
const VERSION = 1;
const KDF_NONE = 0x00;
const KDF_SCRYPT = 0x01;
const SALT_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const CHECKSUM_BYTES = 32;
const KDF_OFFSET = MAGIC.length + 1;
const LENGTH_OFFSET = MAGIC.length + 2;
/** Magic, version, kdf, payload length. */
const PREFIX_BYTES = MAGIC.length + 6;
/** Prefix, log2(N), r, p, salt, nonce: the associated data of a protected container. */
const SCRYPT_HEADER_BYTES = PREFIX_BYTES + 3 + SALT_BYTES + NONCE_BYTES;
/** Bytes. The largest payload, so that every container we write is one we read. */
const MAX_PAYLOAD_BYTES = MAX_CONTAINER_BYTES - SCRYPT_HEADER_BYTES - TAG_BYTES;

const utf8 = new TextEncoder();

/**
 * Encrypts `payload` under `passphrase`. The passphrase is NFC-normalised (RFC 8265
 * OpaqueString) so that the same text typed on another system opens the file. Takes about as
 * long as the KDF (`params`, default {@link DEFAULT_KDF_PARAMS}); the derivation yields to the
 * event loop every 10 ms.
 *
 * `deps.aead` sees the derived key; `webCryptoAead` caches the keys it imports, so give it an
 * instance of its own rather than the one that seals ops, or the key outlives the call.
 *
 * Throws `RangeError` for caller bugs: an empty passphrase (use {@link sealWithoutPassphrase}),
 * one with a lone surrogate, parameters outside the bounds `openWithPassphrase` accepts, or a
 * payload over the size limit (16 MiB).
 */
export async function sealWithPassphrase(
  payload: Uint8Array,
  passphrase: string,
  deps: { readonly aead: Aead; readonly rng: Rng },
  params: KdfParams = DEFAULT_KDF_PARAMS,
): Promise<Uint8Array> {
  if (passphrase.length === 0) {
    throw new RangeError('an empty passphrase protects nothing; use sealWithoutPassphrase');
  }
  if (/[\uD800-\uDFFF]/u.test(passphrase)) throw new RangeError('the passphrase has a lone surrogate');
  checkPayloadSize(payload);
  const log2N = Math.log2(params.N);
  const bad = paramsProblem(log2N, params.r, params.p);
  if (bad !== undefined) throw new RangeError(`KDF parameters refused: ${bad}`);

  const salt = deps.rng.randomBytes(SALT_BYTES);
  const nonce = deps.rng.randomBytes(NONCE_BYTES);
  if (salt.length !== SALT_BYTES || nonce.length !== NONCE_BYTES) {
    throw new RangeError('the Rng returned the wrong number of bytes');
  }
  const header = new Uint8Array(SCRYPT_HEADER_BYTES);
  writePrefix(header, KDF_SCRYPT, payload.length);
  header[PREFIX_BYTES] = log2N;
  header[PREFIX_BYTES + 1] = params.r;
  header[PREFIX_BYTES + 2] = params.p;
  header.set(salt, PREFIX_BYTES + 3);
  header.set(nonce, PREFIX_BYTES + 3 + SALT_BYTES);

  const key = await deriveKey(passphrase, salt, params.N, params.r, params.p);
  try {
    const body = await deps.aead.encrypt(key, nonce, header, payload);
    const out = new Uint8Array(header.length + body.length);
    out.set(header);
    out.set(body, header.length);
    return out;
  } finally {
    key.fill(0);
  }
}

/**
 * The same container with the payload in the clear and a SHA-256 checksum: for test homes and
 * `--no-passphrase`, where the file system is the only protection. Opens only with a `null`
 * passphrase. Throws `RangeError` for a payload over the size limit.
 */
export function sealWithoutPassphrase(payload: Uint8Array): Uint8Array {
  checkPayloadSize(payload);
  const end = PREFIX_BYTES + payload.length;
  const out = new Uint8Array(end + CHECKSUM_BYTES);
  writePrefix(out, KDF_NONE, payload.length);
  out.set(payload, PREFIX_BYTES);
  out.set(sha256(out.subarray(0, end)), end);
  return out;
}

/**
 * The payload of a container. `passphrase` is `null` for one written by
 * {@link sealWithoutPassphrase}, and a string for one written by {@link sealWithPassphrase}
 * (normalised the same way). Rejects with a {@link SecretsError}:
 * - `corrupt`: not a container, truncated or extended, malformed, KDF parameters out of
 *   bounds, or (no passphrase) checksum mismatch. All checked before any key derivation, so a
 *   hostile header cannot make us allocate or compute more than the bounds allow.
 * - `unsupported-version`: a version other than 1.
 * - `passphrase-required`: protected, and `passphrase` is `null`. Found without key
 *   derivation, so opening with `null` first is a cheap way to learn whether to ask the user.
 * - `not-protected`: not protected, and a passphrase was given (a downgrade is never silent).
 * - `wrong-passphrase`: the key does not open the ciphertext (wrong passphrase, or damage).
 */
export async function openWithPassphrase(
  sealed: Uint8Array,
  passphrase: string | null,
  deps: { readonly aead: Aead },
): Promise<Uint8Array> {
  if (sealed.length > MAX_CONTAINER_BYTES) {
    throw corrupt(`${sealed.length} bytes is larger than any secrets file (${MAX_CONTAINER_BYTES})`);
  }
  if (sealed.length < MAGIC.length + 1) throw corrupt(`truncated to ${sealed.length} bytes`);
  if (!equalBytes(sealed.subarray(0, MAGIC.length), MAGIC)) throw corrupt('not a Conclave secrets file');
  const version = sealed[MAGIC.length] as number;
  if (version !== VERSION) {
    throw new SecretsError(
      'unsupported-version',
      `secrets file version ${version} is not supported (this Conclave reads version ${VERSION})`,
    );
  }
  if (sealed.length < PREFIX_BYTES) throw corrupt(`truncated to ${sealed.length} bytes`);
  const kdf = sealed[KDF_OFFSET] as number;
  const payloadLength = new DataView(sealed.buffer, sealed.byteOffset + LENGTH_OFFSET, 4).getUint32(0);
  const overhead =
    kdf === KDF_NONE
      ? PREFIX_BYTES + CHECKSUM_BYTES
      : kdf === KDF_SCRYPT
        ? SCRYPT_HEADER_BYTES + TAG_BYTES
        : -1;
  if (overhead < 0) throw corrupt(`unknown key derivation 0x${kdf.toString(16)}`);
  if (sealed.length !== overhead + payloadLength) {
    throw corrupt(`${sealed.length} bytes where the header implies ${overhead + payloadLength} (truncated?)`);
  }
  if (kdf === KDF_NONE) return openUnprotected(sealed, passphrase);

  const log2N = sealed[PREFIX_BYTES] as number;
  const r = sealed[PREFIX_BYTES + 1] as number;
  const p = sealed[PREFIX_BYTES + 2] as number;
  const bad = paramsProblem(log2N, r, p);
  if (bad !== undefined) throw corrupt(`KDF parameters out of bounds: ${bad}`);
  if (passphrase === null) {
    throw new SecretsError('passphrase-required', 'this secrets file is protected by a passphrase');
  }

  const header = sealed.subarray(0, SCRYPT_HEADER_BYTES);
  const salt = header.subarray(PREFIX_BYTES + 3, PREFIX_BYTES + 3 + SALT_BYTES);
  const nonce = header.subarray(PREFIX_BYTES + 3 + SALT_BYTES);
  const key = await deriveKey(passphrase, salt, 2 ** log2N, r, p);
  try {
    return await deps.aead.decrypt(key, nonce, header, sealed.subarray(SCRYPT_HEADER_BYTES));
  } catch (e) {
    if (e instanceof SealError) {
      throw new SecretsError('wrong-passphrase', 'wrong passphrase, or the file was damaged', { cause: e });
    }
    throw e;
  } finally {
    key.fill(0);
  }
}

function openUnprotected(sealed: Uint8Array, passphrase: string | null): Uint8Array {
  const end = sealed.length - CHECKSUM_BYTES;
  // The checksum comes first: a protected file whose kdf byte was damaged to 0x00 is damage,
  // not a file written without a passphrase.
  if (!equalBytes(sha256(sealed.subarray(0, end)), sealed.subarray(end))) {
    throw corrupt('checksum mismatch: the file was damaged');
  }
  if (passphrase !== null) {
    throw new SecretsError(
      'not-protected',
      'this secrets file is not protected by a passphrase, but a passphrase was given',
    );
  }
  return sealed.slice(PREFIX_BYTES, end);
}

function writePrefix(out: Uint8Array, kdf: number, payloadLength: number): void {
  out.set(MAGIC);
  out[MAGIC.length] = VERSION;
  out[KDF_OFFSET] = kdf;
  new DataView(out.buffer, out.byteOffset + LENGTH_OFFSET, 4).setUint32(0, payloadLength);
}

/** Why these parameters are refused, or undefined when they are within every bound. */
function paramsProblem(log2N: number, r: number, p: number): string | undefined {
  if (!Number.isInteger(log2N) || log2N < MIN_LOG2_N || log2N > MAX_LOG2_N) {
    return `N must be a power of two from 2^${MIN_LOG2_N} to 2^${MAX_LOG2_N}`;
  }
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) return `r must be 1..${MAX_R}`;
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) return `p must be 1..${MAX_P}`;
  const N = 2 ** log2N;
  if (128 * N * r > MAX_SCRYPT_MEMORY) return `128·N·r exceeds ${MAX_SCRYPT_MEMORY} bytes`;
  if (N * r * p > MAX_SCRYPT_WORK) return `N·r·p exceeds ${MAX_SCRYPT_WORK}`;
  return undefined;
}

function checkPayloadSize(payload: Uint8Array): void {
  if (payload.length > MAX_PAYLOAD_BYTES) {
    throw new RangeError(`a payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  }
}

async function deriveKey(
  passphrase: string,
  salt: Uint8Array,
  N: number,
  r: number,
  p: number,
): Promise<Uint8Array> {
  const secret = utf8.encode(passphrase.normalize('NFC'));
  try {
    // maxmem is exactly noble's own accounting for these parameters, which are already bounded.
    return await scryptAsync(secret, salt, { N, r, p, dkLen: KEY_BYTES, maxmem: 128 * r * (N + p + 1) });
  } finally {
    secret.fill(0);
  }
}

function corrupt(why: string): SecretsError {
  return new SecretsError('corrupt', `the secrets file is corrupt: ${why}`);
}
