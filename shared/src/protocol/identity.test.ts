import { describe, expect, it } from 'vitest';
import { webCryptoEd25519 } from '../crypto/ed25519-webcrypto.js';
import type { DeviceId, UserId } from './ids.js';
import { toHex } from './ids.js';
import {
  addDevice,
  certMessage,
  certifyDevice,
  createIdentity,
  displayId,
  verifyDeviceCert,
} from './identity.js';
import { fromMultibase } from './multibase.js';

const NOW = 1_750_000_000_000;

describe('identity and device certificates', () => {
  const ed = webCryptoEd25519();

  it('lays out the certificate message exactly', () => {
    const device = new Uint8Array(32).fill(0xab) as DeviceId;
    const msg = certMessage(device, 0x0102030405);
    const domain = new TextEncoder().encode('conclave/device-cert/1');
    expect(msg.length).toBe(domain.length + 32 + 8);
    expect(toHex(msg)).toBe(toHex(domain) + 'ab'.repeat(32) + '0000000102030405');
    expect(toHex(certMessage(device, Number.MAX_SAFE_INTEGER).subarray(-8))).toBe('001fffffffffffff');
  });

  it('refuses to build a message for a malformed device or time', () => {
    const device = new Uint8Array(32) as DeviceId;
    expect(() => certMessage(new Uint8Array(31) as DeviceId, NOW)).toThrow(RangeError);
    expect(() => certMessage(device, -1)).toThrow(RangeError);
    expect(() => certMessage(device, 1.5)).toThrow(RangeError);
    expect(() => certMessage(device, 2 ** 53)).toThrow(RangeError);
  });

  it('creates an identity whose certificate verifies', async () => {
    const { userKey, identity } = await createIdentity(ed, NOW);
    expect(toHex(identity.user)).toBe(toHex(userKey.publicKey));
    expect(toHex(identity.device)).toBe(toHex(identity.deviceKey.publicKey));
    expect(toHex(identity.cert.user)).toBe(toHex(identity.user));
    expect(identity.cert.createdMs).toBe(NOW);
    expect(await verifyDeviceCert(ed, identity.device, identity.cert)).toBe(true);
  });

  it('keeps keys non-extractable unless asked', async () => {
    const plain = await createIdentity(ed, NOW);
    await expect(ed.exportSeed(plain.userKey)).rejects.toThrow();
    await expect(ed.exportSeed(plain.identity.deviceKey)).rejects.toThrow();
    const extractable = await createIdentity(ed, NOW, { extractable: true });
    expect((await ed.exportSeed(extractable.userKey)).length).toBe(32);
    expect((await ed.exportSeed(extractable.identity.deviceKey)).length).toBe(32);
  });

  it('adds a second device for the same user', async () => {
    const { userKey, identity } = await createIdentity(ed, NOW);
    const second = await addDevice(ed, userKey, NOW + 1000);
    expect(toHex(second.user)).toBe(toHex(identity.user));
    expect(toHex(second.device)).not.toBe(toHex(identity.device));
    expect(await verifyDeviceCert(ed, second.device, second.cert)).toBe(true);
  });

  it('rejects a certificate claiming another user but signed by the wrong key', async () => {
    const alice = await createIdentity(ed, NOW);
    const mallory = await createIdentity(ed, NOW);
    const forged = await certifyDevice(mallory.userKey, mallory.identity.device, NOW);
    const claimed = { ...forged, user: alice.identity.user };
    expect(await verifyDeviceCert(ed, mallory.identity.device, claimed)).toBe(false);
    expect(await verifyDeviceCert(ed, mallory.identity.device, forged)).toBe(true);
  });

  it('rejects a tampered creation time', async () => {
    const { identity } = await createIdentity(ed, NOW);
    for (const createdMs of [NOW + 1, NOW - 1, 0]) {
      expect(await verifyDeviceCert(ed, identity.device, { ...identity.cert, createdMs })).toBe(false);
    }
  });

  it('rejects a certificate for device A presented for device B', async () => {
    const { userKey, identity: a } = await createIdentity(ed, NOW);
    const b = await addDevice(ed, userKey, NOW);
    expect(await verifyDeviceCert(ed, b.device, a.cert)).toBe(false);
    expect(await verifyDeviceCert(ed, a.device, b.cert)).toBe(false);
  });

  it('verifies false, never throws, for malformed certificates', async () => {
    const { identity } = await createIdentity(ed, NOW);
    const { cert, device } = identity;
    const cases = [
      { ...cert, createdMs: -1 },
      { ...cert, createdMs: 1.5 },
      { ...cert, createdMs: Number.NaN },
      { ...cert, createdMs: 2 ** 64 },
      { ...cert, sig: cert.sig.subarray(0, 63) },
      { ...cert, sig: new Uint8Array(0) },
      { ...cert, user: cert.user.subarray(0, 31) as UserId },
    ];
    for (const c of cases) await expect(verifyDeviceCert(ed, device, c)).resolves.toBe(false);
    await expect(verifyDeviceCert(ed, device.subarray(1) as DeviceId, cert)).resolves.toBe(false);
  });

  it('shows ids in multibase form', async () => {
    const { identity } = await createIdentity(ed, NOW);
    const shown = displayId(identity.user);
    expect(shown.startsWith('z')).toBe(true);
    expect(toHex(fromMultibase(shown) ?? new Uint8Array(0))).toBe(toHex(identity.user));
  });
});
