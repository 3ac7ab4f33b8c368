/**
 * The secrets of one person on one device (ARCHITECTURE.md sections 2 and 10): the user key,
 * this device's key and the user key's certificate for it, the display name, and the key that
 * encrypts what the device saves. Hosts keep them encrypted at rest (sealed-secrets.ts); a
 * backup carries only the user key and the name, and importing it certifies a new device.
 */
import { type CborValue, decode, encode } from '../protocol/cbor.js';
import type { Ed25519, SigningKey } from '../ports/crypto.js';
import type { Clock, Rng } from '../ports/env.js';
import { type DeviceIdentity, certifyDevice, verifyDeviceCert } from '../protocol/identity.js';
import type { DeviceId, UserId } from '../protocol/ids.js';
import { KEY_BYTES, SIG_BYTES } from '../protocol/ids.js';
import { MAX_NAME_BYTES } from '../protocol/limits.js';

const SECRETS_VERSION = 1;
const BACKUP_VERSION = 1;

export interface IdentitySecrets {
  /** The user key's 32-byte Ed25519 seed. */
  readonly userSeed: Uint8Array;
  /** This device's key seed. */
  readonly deviceSeed: Uint8Array;
  /** When the user key certified this device (ms since the Unix epoch). */
  readonly certCreatedMs: number;
  readonly certSig: Uint8Array;
  readonly name: string;
  /** 32 bytes: encrypts MLS state and key packages in the device's storage. */
  readonly atRestKey: Uint8Array;
}

/** Identity data that is not what it should be: a damaged file or a wrong kind of file. */
export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  constructor(
    readonly code: 'corrupt' | 'bad-name',
    message: string,
  ) {
    super(message);
  }
}

/** A display name: 1 to MAX_NAME_BYTES bytes of UTF-8, not only spaces, no control characters. */
export function checkDisplayName(name: string): string {
  const n = name.trim();
  let control = false;
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) control = true;
  }
  if (n.length === 0 || control || new TextEncoder().encode(n).length > MAX_NAME_BYTES) {
    throw new IdentityError('bad-name', `a display name is 1 to ${MAX_NAME_BYTES} bytes of text`);
  }
  return n;
}

/** A new person: fresh user and device keys, the certificate, a fresh at-rest key. */
export async function createSecrets(
  deps: { ed25519: Ed25519; clock: Clock; rng: Rng },
  name: string,
): Promise<IdentitySecrets> {
  return newDevice(deps, deps.rng.randomBytes(KEY_BYTES), checkDisplayName(name));
}

async function newDevice(
  deps: { ed25519: Ed25519; clock: Clock; rng: Rng },
  userSeed: Uint8Array,
  name: string,
): Promise<IdentitySecrets> {
  const userKey = await deps.ed25519.fromSeed(userSeed);
  const deviceSeed = deps.rng.randomBytes(KEY_BYTES);
  const deviceKey = await deps.ed25519.fromSeed(deviceSeed);
  const cert = await certifyDevice(userKey, deviceKey.publicKey as DeviceId, deps.clock.now());
  return {
    userSeed,
    deviceSeed,
    certCreatedMs: cert.createdMs,
    certSig: cert.sig,
    name,
    atRestKey: deps.rng.randomBytes(KEY_BYTES),
  };
}

/** The keys of `secrets`, checked: the certificate must be the user key's for the device key. */
export async function unlock(
  ed: Ed25519,
  secrets: IdentitySecrets,
): Promise<{ identity: DeviceIdentity; userKey: SigningKey }> {
  const userKey = await ed.fromSeed(secrets.userSeed);
  const deviceKey = await ed.fromSeed(secrets.deviceSeed);
  const cert = { user: userKey.publicKey as UserId, createdMs: secrets.certCreatedMs, sig: secrets.certSig };
  if (!(await verifyDeviceCert(ed, deviceKey.publicKey as DeviceId, cert))) {
    throw new IdentityError('corrupt', 'the device certificate does not match the keys');
  }
  return {
    identity: { user: cert.user, device: deviceKey.publicKey as DeviceId, cert, deviceKey },
    userKey,
  };
}

export function encodeSecrets(s: IdentitySecrets): Uint8Array {
  return encode([SECRETS_VERSION, s.userSeed, s.deviceSeed, s.certCreatedMs, s.certSig, s.name, s.atRestKey]);
}

const LIMITS = { maxBytes: 1024, maxArrayLength: 8, maxStringBytes: 256, maxDepth: 1 };

function decodeList(bytes: Uint8Array, what: string): CborValue[] {
  let v: CborValue;
  try {
    v = decode(bytes, LIMITS);
  } catch {
    throw new IdentityError('corrupt', `not ${what}`);
  }
  if (!Array.isArray(v)) throw new IdentityError('corrupt', `not ${what}`);
  return v as CborValue[];
}

const isKey = (v: CborValue | undefined): v is Uint8Array =>
  v instanceof Uint8Array && v.length === KEY_BYTES;

export function decodeSecrets(bytes: Uint8Array): IdentitySecrets {
  const v = decodeList(bytes, 'a Conclave identity');
  const [version, userSeed, deviceSeed, created, sig, name, atRest] = v;
  if (version !== SECRETS_VERSION) throw new IdentityError('corrupt', 'unknown identity version');
  if (
    v.length !== 7 ||
    !isKey(userSeed) ||
    !isKey(deviceSeed) ||
    typeof created !== 'number' ||
    !Number.isSafeInteger(created) ||
    !(sig instanceof Uint8Array) ||
    sig.length !== SIG_BYTES ||
    typeof name !== 'string' ||
    !isKey(atRest)
  ) {
    throw new IdentityError('corrupt', 'a damaged identity');
  }
  return { userSeed, deviceSeed, certCreatedMs: created, certSig: sig, name, atRestKey: atRest };
}

/** What a backup holds: the user key and the name (the device and its Spaces stay behind). */
export function encodeBackup(s: IdentitySecrets): Uint8Array {
  return encode([BACKUP_VERSION, s.userSeed, s.name]);
}

/**
 * The person of a backup on a new device: the same user key (the same `UserId`), a new
 * device key certified by it, a new at-rest key.
 */
export async function restoreBackup(
  deps: { ed25519: Ed25519; clock: Clock; rng: Rng },
  bytes: Uint8Array,
): Promise<IdentitySecrets> {
  const v = decodeList(bytes, 'a Conclave backup');
  const [version, userSeed, name] = v;
  if (version !== BACKUP_VERSION || v.length !== 3 || !isKey(userSeed) || typeof name !== 'string') {
    throw new IdentityError('corrupt', 'not a Conclave backup');
  }
  return newDevice(deps, userSeed, checkDisplayName(name));
}
