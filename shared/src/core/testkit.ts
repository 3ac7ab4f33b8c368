/**
 * Test doubles for the ports the MLS layer will fill (epoch keys, membership history) and a
 * helper to build replicas. Used by tests and benchmarks only.
 */
import { webCryptoEd25519 } from '../crypto/ed25519-webcrypto.js';
import type { Ed25519 } from '../ports/crypto.js';
import type { Clock, Rng } from '../ports/env.js';
import { webRng } from '../ports/env.js';
import type { KeyProvider, MembershipAnswer, MembershipView } from '../ports/keys.js';
import type { Storage } from '../ports/storage.js';
import { memoryStorage } from '../ports/storage.memory.js';
import { type DeviceIdentity, createIdentity } from '../protocol/identity.js';
import {
  type EpochRef,
  type SpaceId,
  type UserId,
  bytesKey,
  epochBytes,
  equalBytes,
} from '../protocol/index.js';
import { type ReplicaOptions, SpaceReplica } from './replica.js';

/** Epoch `n` of a test Space: the commit hash is derived from the number, so it is stable. */
export function testEpoch(n: number): EpochRef {
  const commitHash = new Uint8Array(32);
  if (n > 0) {
    commitHash[0] = 0xc0;
    new DataView(commitHash.buffer).setUint32(28, n);
  }
  return { epoch: n, commitHash };
}

/** The control key a {@link TestGroup} gives an epoch. */
export function testControlKey(e: EpochRef): Uint8Array {
  const key = new Uint8Array(32);
  key.set(epochBytes(e).subarray(0, 32));
  key[31] = 0x5a ^ e.epoch;
  return key;
}

/** The content key a {@link TestGroup} gives an epoch. */
export function testContentKey(e: EpochRef): Uint8Array {
  const key = testControlKey(e);
  key[0] = (key[0] as number) ^ 0xc0;
  return key;
}

/**
 * A Space's epochs and who was a member in each: the double of the MLS layer. Keys are derived
 * from the epoch, so every replica built on the same history can open the same ops.
 */
export class TestGroup implements KeyProvider, MembershipView {
  /** By epoch number: the commit hash, its members and its key. */
  private readonly epochs = new Map<number, { hash: Uint8Array; members: Set<string>; key: Uint8Array }>();

  /** Defines epoch `n` with exactly these members. */
  setEpoch(n: number, users: readonly UserId[]): EpochRef {
    const e = testEpoch(n);
    this.epochs.set(n, { hash: e.commitHash, members: new Set(users.map(bytesKey)), key: testControlKey(e) });
    return e;
  }

  private find(epoch: EpochRef) {
    const e = this.epochs.get(epoch.epoch);
    return e !== undefined && equalBytes(e.hash, epoch.commitHash) ? e : undefined;
  }

  epochKey(_space: SpaceId, epoch: EpochRef): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.find(epoch)?.key);
  }

  /** Content keys withheld: epochs before this one have none (a member of a `sinceJoin` Space). */
  contentFrom = 0;

  contentKey(_space: SpaceId, epoch: EpochRef): Promise<Uint8Array | undefined> {
    if (this.find(epoch) === undefined || epoch.epoch < this.contentFrom) return Promise.resolve(undefined);
    return Promise.resolve(testContentKey(epoch));
  }

  memberAt(_space: SpaceId, epoch: EpochRef, user: UserId): MembershipAnswer {
    const e = this.find(epoch);
    if (e === undefined) return 'unknown-epoch';
    return e.members.has(bytesKey(user)) ? 'member' : 'not-member';
  }
}

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  constructor(public ms = 1_764_000_000_000) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

let shared: Ed25519 | undefined;
export function testEd25519(): Ed25519 {
  return (shared ??= webCryptoEd25519());
}

export async function makeIdentities(n: number, nowMs = 1_700_000_000_000): Promise<DeviceIdentity[]> {
  const out: DeviceIdentity[] = [];
  for (let i = 0; i < n; i++) out.push((await createIdentity(testEd25519(), nowMs)).identity);
  return out;
}

export function testSpaceId(seed = 1): SpaceId {
  const s = new Uint8Array(16);
  s[0] = 0x5c;
  s[15] = seed;
  return s as SpaceId;
}

/** A deterministic Rng for tests that must produce the same bytes each run. */
export function seededRng(seed: number): Rng {
  let x = seed >>> 0 || 1;
  return {
    randomBytes(n: number): Uint8Array {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = x & 0xff;
      }
      return out;
    },
  };
}

export async function testReplica(
  space: SpaceId,
  group: TestGroup,
  extra: Partial<ReplicaOptions> & { storage?: Storage; clock?: Clock } = {},
): Promise<SpaceReplica> {
  return SpaceReplica.open({
    space,
    storage: extra.storage ?? memoryStorage(),
    keys: group,
    membership: group,
    ed25519: testEd25519(),
    clock: extra.clock ?? new ManualClock(),
    rng: webRng,
    ...extra,
  });
}
