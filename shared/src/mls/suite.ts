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
import type { Ed25519 } from '../ports/crypto.js';
import { decode, encode } from '../protocol/cbor.js';
import type { DeviceId, UserId } from '../protocol/ids.js';
import { KEY_BYTES, SIG_BYTES } from '../protocol/ids.js';
import { verifyDeviceCert } from '../protocol/identity.js';
import type { DeviceCert } from '../protocol/op.js';
import { MAX_MLS_CREDENTIAL_BYTES } from '../protocol/limits.js';

export const CIPHERSUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519';

/** The MLS exporter label of the epoch content key, `K_epoch` (section 6.2). */
export const CONTENT_KEY_LABEL = 'conclave/content';

/** GroupInfo extension (private-use range) carrying the key history inside a Welcome. */
export const KEY_HISTORY_EXTENSION = 0xf0c1;

let suite: Promise<CiphersuiteImpl> | undefined;

/** The ciphersuite implementation (WebCrypto-backed), built once per process. */
export function ciphersuite(): Promise<CiphersuiteImpl> {
  suite ??= getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
  return suite;
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
