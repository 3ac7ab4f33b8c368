/**
 * Who speaks (ARCHITECTURE.md section 2): a long-term user key, per-device keys, and the
 * certificate by which the user key vouches for a device, `DeviceCert = sign_user(device_pub,
 * created)`. The device key signs ops; the certificate travels in every op.
 */
import type { Ed25519, SigningKey } from '../ports/crypto.js';
import type { DeviceId, UserId } from './ids.js';
import { KEY_BYTES, SIG_BYTES, concatBytes } from './ids.js';
import { toMultibase } from './multibase.js';
import type { DeviceCert } from './op.js';

const CERT_DOMAIN = new TextEncoder().encode('conclave/device-cert/1');

/** This device as the rest of the system sees it, plus the key it signs ops with. */
export interface DeviceIdentity {
  /** The user's long-term public key. */
  readonly user: UserId;
  /** This device's public key; equal to `deviceKey.publicKey`. */
  readonly device: DeviceId;
  /** The user key's certificate for `device`. */
  readonly cert: DeviceCert;
  /** Signs ops as `device`. */
  readonly deviceKey: SigningKey;
}

/**
 * The bytes a device certificate signs: utf8("conclave/device-cert/1") ‖ device (32 bytes) ‖
 * createdMs (8 bytes, big-endian, unsigned).
 *
 * @param createdMs Milliseconds since the Unix epoch; a non-negative safe integer.
 * @throws RangeError when `device` is not 32 bytes or `createdMs` is out of range (a bug in the caller).
 */
export function certMessage(device: DeviceId, createdMs: number): Uint8Array {
  if (device.length !== KEY_BYTES) throw new RangeError(`device key must be ${KEY_BYTES} bytes`);
  if (!validTime(createdMs)) throw new RangeError('createdMs must be a non-negative safe integer');
  const time = new Uint8Array(8);
  new DataView(time.buffer).setBigUint64(0, BigInt(createdMs), false);
  return concatBytes(CERT_DOMAIN, device, time);
}

/**
 * The user key's certificate for `device`, created at `createdMs` (milliseconds since the
 * Unix epoch).
 *
 * @throws RangeError as {@link certMessage}.
 */
export async function certifyDevice(
  userKey: SigningKey,
  device: DeviceId,
  createdMs: number,
): Promise<DeviceCert> {
  const sig = await userKey.sign(certMessage(device, createdMs));
  return { user: userKey.publicKey as UserId, createdMs, sig };
}

/**
 * Whether `cert` is `cert.user`'s valid certificate for `device`. `false`, never a throw, for
 * any malformation (wrong lengths, a time out of range, a bad signature).
 */
export async function verifyDeviceCert(ed: Ed25519, device: DeviceId, cert: DeviceCert): Promise<boolean> {
  if (
    device.length !== KEY_BYTES ||
    cert.user.length !== KEY_BYTES ||
    cert.sig.length !== SIG_BYTES ||
    !validTime(cert.createdMs)
  ) {
    return false;
  }
  return ed.verify(cert.user, certMessage(device, cert.createdMs), cert.sig);
}

/**
 * A new user with its first device: a fresh user key, a fresh device key and the
 * certificate, dated `nowMs` (milliseconds since the Unix epoch). Both keys are
 * non-extractable unless `options.extractable`.
 */
export async function createIdentity(
  ed: Ed25519,
  nowMs: number,
  options?: { extractable?: boolean },
): Promise<{ userKey: SigningKey; identity: DeviceIdentity }> {
  const userKey = await ed.generate(options);
  const identity = await addDevice(ed, userKey, nowMs, options);
  return { userKey, identity };
}

/**
 * A new device for the user of `userKey`: a fresh device key certified at `nowMs`
 * (milliseconds since the Unix epoch). Non-extractable unless `options.extractable`.
 */
export async function addDevice(
  ed: Ed25519,
  userKey: SigningKey,
  nowMs: number,
  options?: { extractable?: boolean },
): Promise<DeviceIdentity> {
  const deviceKey = await ed.generate(options);
  const device = deviceKey.publicKey as DeviceId;
  const cert = await certifyDevice(userKey, device, nowMs);
  return { user: cert.user, device, cert, deviceKey };
}

/** How a user or device id is shown to people: its multibase base58btc form ('z…'). */
export function displayId(id: Uint8Array): string {
  return toMultibase(id);
}

function validTime(ms: number): boolean {
  return Number.isSafeInteger(ms) && ms >= 0;
}
