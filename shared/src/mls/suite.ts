/**
 * What Conclave's MLS groups are made of (ARCHITECTURE.md section 6): one ciphersuite, basic
 * credentials that carry the device certificate, and the authentication service that checks
 * that certificate. Nothing outside `shared/src/mls/` sees a ts-mls type.
 */
import {
  type AuthenticationService,
  type CiphersuiteImpl,
  type ClientConfig,
  type Credential,
  defaultKeyPackageEqualityConfig,
  defaultLifetimeConfig,
  defaultPaddingConfig,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
} from 'ts-mls';
import { expand as hkdfExpand, extract as hkdfExtract } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import type { Ed25519 } from '../ports/crypto.js';
import { decode, encode } from '../protocol/cbor.js';
import type { DeviceId, UserId } from '../protocol/ids.js';
import { KEY_BYTES, SIG_BYTES } from '../protocol/ids.js';
import { verifyDeviceCert } from '../protocol/identity.js';
import type { DeviceCert } from '../protocol/op.js';
import { MAX_MLS_CREDENTIAL_BYTES } from '../protocol/limits.js';

export const CIPHERSUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519';

/** The MLS exporter label of the epoch content key, `K_epoch` (section 6.2). */
/** MLS exporter labels of an epoch's keys (section 6.2). */
export const CONTROL_KEY_LABEL = 'conclave/control';
export const CONTENT_KEY_LABEL = 'conclave/content';

/** GroupInfo extension (private-use range) carrying the key history inside a Welcome. */
export const KEY_HISTORY_EXTENSION = 0xf0c1;

let suite: Promise<CiphersuiteImpl> | undefined;

/**
 * The ciphersuite implementation, built once per process: ts-mls's WebCrypto provider for
 * HPKE, AES-GCM and signatures, with SHA-256, HMAC and HKDF done synchronously in JavaScript
 * (noble). A commit at 1,000 members runs thousands of those on small inputs, where each
 * WebCrypto call's key import and promise job cost more than the hashing itself; the bytes
 * are the same (tested against the stock provider).
 */
export function ciphersuite(): Promise<CiphersuiteImpl> {
  suite ??= getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE)).then(withSyncHashes);
  return suite;
}

/** `cs` with SHA-256, HMAC-SHA-256 and HKDF-SHA-256 computed in JavaScript. */
export function withSyncHashes(cs: CiphersuiteImpl): CiphersuiteImpl {
  return {
    ...cs,
    hash: {
      digest: (data) => Promise.resolve(sha256(data)),
      mac: (key, data) => Promise.resolve(hmac(sha256, key, data)),
      verifyMac: (key, mac, data) => Promise.resolve(constantTimeEqual(hmac(sha256, key, data), mac)),
    },
    kdf: {
      extract: (salt, ikm) => Promise.resolve(hkdfExtract(sha256, ikm, salt)),
      expand: (prk, info, len) => Promise.resolve(hkdfExpand(sha256, prk, info, len)),
      size: 32,
    },
  };
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

/** Who a leaf of the tree is: a device of a user, vouched for by the user's certificate. */
export interface GroupMember {
  readonly user: UserId;
  readonly device: DeviceId;
}

/** A basic credential whose identity is the CBOR array `[user, createdMs, certSig]`. */
export function credentialOf(cert: DeviceCert): Credential {
  return { credentialType: 'basic', identity: encode([cert.user, cert.createdMs, cert.sig]) };
}

/** The certificate inside a credential, or `undefined` when it is not one of ours. */
export function certOf(credential: Credential): DeviceCert | undefined {
  if (credential.credentialType !== 'basic' || credential.identity.length > MAX_MLS_CREDENTIAL_BYTES) {
    return undefined;
  }
  try {
    const v = decode(credential.identity);
    if (!Array.isArray(v) || v.length !== 3) return undefined;
    const [user, createdMs, sig] = v as unknown[];
    if (!(user instanceof Uint8Array) || user.length !== KEY_BYTES) return undefined;
    if (typeof createdMs !== 'number' || !(sig instanceof Uint8Array) || sig.length !== SIG_BYTES) {
      return undefined;
    }
    return { user: user as UserId, createdMs, sig };
  } catch {
    return undefined;
  }
}

/**
 * Accepts a leaf only when its credential is a device certificate by which a user key vouches
 * for exactly the leaf's signature key: the MLS tree then names users, not bare keys.
 */
export function authService(ed: Ed25519): AuthenticationService {
  return {
    async validateCredential(credential, signaturePublicKey) {
      const cert = certOf(credential);
      if (cert === undefined || signaturePublicKey.length !== KEY_BYTES) return false;
      return verifyDeviceCert(ed, signaturePublicKey as DeviceId, cert);
    },
  };
}

/**
 * The client configuration every group runs with. Not part of the saved state (ts-mls does
 * not encode it): re-attached whenever a state is loaded.
 */
export function clientConfig(ed: Ed25519, retainEpochs: number): ClientConfig {
  return {
    keyRetentionConfig: {
      retainKeysForGenerations: 10,
      retainKeysForEpochs: retainEpochs,
      maximumForwardRatchetSteps: 200,
    },
    lifetimeConfig: defaultLifetimeConfig,
    keyPackageEqualityConfig: defaultKeyPackageEqualityConfig,
    paddingConfig: defaultPaddingConfig,
    authService: authService(ed),
  };
}
