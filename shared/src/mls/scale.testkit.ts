/**
 * Large MLS groups for benchmarks and for the tests of our ts-mls patches: members with real
 * Conclave credentials (a user key certifying a device key), groups built by one batch add, and
 * commits made and processed with either the patched `ts-mls` or the untouched `ts-mls-stock`
 * (the same version, installed under an alias so the patches do not reach it).
 */
import type {
  CiphersuiteImpl,
  ClientConfig,
  ClientState,
  KeyPackage,
  PrivateKeyPackage,
  Proposal,
} from 'ts-mls';
import type * as TsMls from 'ts-mls';
import { testEd25519 } from '../core/testkit.js';
import { createIdentity } from '../protocol/identity.js';
import { CIPHERSUITE, clientConfig, credentialOf, withSyncHashes } from './suite.js';

/** The ts-mls module surface we use; the stock alias has the same shape. */
export type Mls = typeof TsMls;

/** The patched library (what the app runs) or the untouched copy of the same version. */
export async function loadMls(which: 'patched' | 'stock'): Promise<Mls> {
  if (which === 'patched') return import('ts-mls');
  return import('ts-mls-stock');
}

export interface Member {
  readonly publicPackage: KeyPackage;
  readonly privatePackage: PrivateKeyPackage;
}

export interface Kit {
  readonly mls: Mls;
  readonly cs: CiphersuiteImpl;
  readonly config: ClientConfig;
}

/**
 * The library with its ciphersuite: ts-mls's WebCrypto provider, or with `syncHashes` the one
 * Conclave runs (SHA-256, HMAC and HKDF in JavaScript: `withSyncHashes`).
 */
export async function kit(mls: Mls, options: { syncHashes?: boolean } = {}): Promise<Kit> {
  const base = await mls.getCiphersuiteImpl(mls.getCiphersuiteFromName(CIPHERSUITE));
  const cs = options.syncHashes === true ? withSyncHashes(base) : base;
  return { mls, cs, config: clientConfig(testEd25519(), 4) };
}

/** A device with a fresh user and device key and a key package carrying its certificate. */
export async function member(k: Kit, nowMs = Date.now()): Promise<Member> {
  const ed = testEd25519();
  const { identity } = await createIdentity(ed, nowMs, { extractable: true });
  const seed = await ed.exportSeed(identity.deviceKey);
  return k.mls.generateKeyPackageWithKey(
    credentialOf(identity.cert),
    k.mls.defaultCapabilities(),
    k.mls.defaultLifetime,
    [],
    { signKey: seed, publicKey: identity.device },
    k.cs,
  );
}

/** `n` members, made a batch at a time so WebCrypto's work overlaps. */
export async function members(k: Kit, n: number): Promise<Member[]> {
  const out: Member[] = [];
  const batch = 64;
  for (let i = 0; i < n; i += batch) {
    const size = Math.min(batch, n - i);
    out.push(...(await Promise.all(Array.from({ length: size }, () => member(k)))));
  }
  return out;
}

export function addOf(m: Member): Proposal {
  return { proposalType: 'add', add: { keyPackage: m.publicPackage } };
}

export function removeOf(leafIndex: number): Proposal {
  return { proposalType: 'remove', remove: { removed: leafIndex } };
}

/** A commit as it crosses the wire, and what it makes. */
export interface Made {
  readonly state: ClientState;
  readonly commit: Uint8Array;
  readonly welcome: Uint8Array | undefined;
}

export async function commit(k: Kit, state: ClientState, proposals: Proposal[]): Promise<Made> {
  const r = await k.mls.createCommit(
    { state, cipherSuite: k.cs },
    { extraProposals: proposals, ratchetTreeExtension: true },
  );
  return {
    state: r.newState,
    commit: k.mls.encodeMlsMessage(r.commit),
    welcome:
      r.welcome === undefined
        ? undefined
        : k.mls.encodeMlsMessage({ welcome: r.welcome, wireformat: 'mls_welcome', version: 'mls10' }),
  };
}

/** Decodes and applies a commit as a member receiving it from the relay would. */
export async function processCommit(k: Kit, state: ClientState, bytes: Uint8Array): Promise<ClientState> {
  const decoded = k.mls.decodeMlsMessage(bytes, 0);
  const msg = decoded?.[0];
  if (msg === undefined) throw new Error('undecodable commit');
  if (msg.wireformat !== 'mls_private_message' && msg.wireformat !== 'mls_public_message') {
    throw new Error(`not a handshake message: ${msg.wireformat}`);
  }
  const r = await k.mls.processMessage(msg, state, k.mls.emptyPskIndex, () => 'accept', k.cs);
  if (r.kind !== 'newState' || r.actionTaken !== 'accept') throw new Error('commit not accepted');
  return r.newState;
}

export async function join(k: Kit, welcome: Uint8Array, m: Member): Promise<ClientState> {
  const decoded = k.mls.decodeMlsMessage(welcome, 0);
  const msg = decoded?.[0];
  if (msg?.wireformat !== 'mls_welcome') throw new Error('not a Welcome');
  return k.mls.joinGroup(
    msg.welcome,
    m.publicPackage,
    m.privatePackage,
    k.mls.emptyPskIndex,
    k.cs,
    undefined,
    undefined,
    k.config,
  );
}

/**
 * A group of `1 + others.length` members made by add-only commits of at most `chunk` members
 * each (no update path: no parent has a key yet). The Welcome is the last commit's, for the
 * members of the last chunk. One commit of thousands of adds costs ts-mls quadratic time and
 * memory (its proposal checks compare every pair), hence the chunks.
 */
export async function batchGroup(
  k: Kit,
  creator: Member,
  others: Member[],
  chunk = others.length,
): Promise<{ creator: ClientState; welcome: Uint8Array }> {
  const groupId = new TextEncoder().encode(`bench-${others.length + 1}-${Math.random()}`);
  let state = await k.mls.createGroup(
    groupId,
    creator.publicPackage,
    creator.privatePackage,
    [],
    k.cs,
    k.config,
  );
  let welcome: Uint8Array | undefined;
  for (let i = 0; i < others.length; i += chunk) {
    const made = await commit(k, state, others.slice(i, i + chunk).map(addOf));
    state = made.state;
    welcome = made.welcome;
  }
  if (welcome === undefined) throw new Error('no Welcome for a batch add');
  return { creator: state, welcome };
}

/** The leaf index of this member in its own state. */
export function leafOf(state: ClientState): number {
  return state.privatePath.leafIndex;
}

export { epochSecrets } from './secrets.testkit.js';
