/**
 * This device's MLS side across all its Spaces: its stock of key packages, one `SpaceGroup`
 * per Space, and the `KeyProvider` and `MembershipView` the acceptance pipeline asks
 * (section 4 steps 2 and 5). Everything it saves goes through the storage port encrypted with
 * the host's at-rest key: the MLS state holds the device's private signature key.
 */
import {
  type KeyPackage,
  type PrivateKeyPackage,
  defaultCapabilities,
  defaultLifetime,
  encodeMlsMessage,
  generateKeyPackageWithKey,
} from 'ts-mls';
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js';
import type { Aead } from '../ports/aead.js';
import type { Ed25519 } from '../ports/crypto.js';
import type { Clock, Rng } from '../ports/env.js';
import type { KeyProvider, MembershipAnswer, MembershipView } from '../ports/keys.js';
import type { Storage } from '../ports/storage.js';
import { StorageError } from '../ports/storage.js';
import { type CborValue, decode, encode } from '../protocol/cbor.js';
import { CodecError, SealError } from '../protocol/errors.js';
import type { DeviceId, EpochRef, SpaceId, UserId } from '../protocol/ids.js';
import { KEY_BYTES, bytesKey, concatBytes, equalBytes, toHex } from '../protocol/ids.js';
import { KEY_PACKAGE_STOCK, MAX_HANDED_OUT_KEY_PACKAGES as MAX_HANDED_OUT } from '../protocol/limits.js';
import type { DeviceCert } from '../protocol/op.js';
import { NONCE_BYTES } from '../protocol/seal.js';
import {
  type CommitPolicy,
  type GroupContextOptions,
  type GroupRejectReason,
  type RotationPolicy,
  SpaceGroup,
  decodeMls,
} from './group.js';
import { ciphersuite, credentialOf } from './suite.js';

export interface MlsDeviceOptions {
  readonly user: UserId;
  readonly device: DeviceId;
  readonly cert: DeviceCert;
  /** The device key's 32-byte seed: the MLS signature key of every leaf of this device. */
  readonly seed: Uint8Array;
  readonly storage: Storage;
  /** 32 bytes. Encrypts what this device saves (MLS states, key package private keys). */
  readonly atRestKey: Uint8Array;
  readonly ed25519: Ed25519;
  readonly aead: Aead;
  readonly clock: Clock;
  readonly rng: Rng;
  /** The commit policy of a Space (roles and bans from its state); open when absent. */
  readonly policy?: (space: SpaceId) => CommitPolicy;
  readonly rotation?: RotationPolicy;
}

interface StockedPackage {
  readonly publicPackage: KeyPackage;
  readonly privatePackage: PrivateKeyPackage;
  /** The key package as an MLS message (what an invitee sends). */
  readonly message: Uint8Array;
  /** Its KeyPackageRef, as a map key. */
  readonly ref: string;
}

const AT_REST_CONTEXT = new TextEncoder().encode('conclave/at-rest/1');
const STOCK_META = 'mls/key-packages';
const GROUPS_META = 'mls/groups';
const groupMeta = (space: SpaceId) => `mls/group/${toHex(space)}`;

export type JoinResult =
  | { readonly kind: 'joined'; readonly group: SpaceGroup }
  | {
      readonly kind: 'rejected';
      readonly reason: GroupRejectReason | 'unknown-key-package';
      readonly detail: string;
    };

export class MlsDevice implements KeyProvider, MembershipView {
  private readonly groups = new Map<string, SpaceGroup>();
  private readonly stock = new Map<string, StockedPackage>();
  /** Refs of stocked packages already sent to someone, oldest first. */
  private readonly handedOut = new Set<string>();

  private constructor(private readonly o: MlsDeviceOptions) {}

  /**
   * This device's MLS state as last saved (an empty one the first time).
   *
   * @throws StorageError('corrupt') when a saved record does not decrypt or decode: the
   * at-rest key is wrong or the data was damaged.
   */
  static async open(o: MlsDeviceOptions): Promise<MlsDevice> {
    if (o.seed.length !== KEY_BYTES || o.atRestKey.length !== KEY_BYTES) {
      throw new RangeError('the device seed and the at-rest key are 32 bytes');
    }
    const key = await o.ed25519.fromSeed(o.seed);
    if (!equalBytes(key.publicKey, o.device)) throw new RangeError('the seed is not the device key');
    const d = new MlsDevice(o);
    const stock = await d.load(STOCK_META);
    if (stock !== undefined) {
      for (const m of d.decodeList(stock, 'key packages')) {
        if (!Array.isArray(m) || m.length !== 4) throw new StorageError('corrupt', 'saved key package');
        const [message, initKey, hpkeKey, handedOut] = m as CborValue[];
        const kp = message instanceof Uint8Array ? decodeMls(message) : undefined;
        if (
          kp?.wireformat !== 'mls_key_package' ||
          !(initKey instanceof Uint8Array) ||
          !(hpkeKey instanceof Uint8Array)
        ) {
          throw new StorageError('corrupt', 'saved key package');
        }
        const stocked = await d.addToStock(
          kp.keyPackage,
          { initPrivateKey: initKey, hpkePrivateKey: hpkeKey, signaturePrivateKey: o.seed },
          message as Uint8Array,
        );
        if (handedOut === true) d.handedOut.add(stocked.ref);
      }
    }
    const list = await d.load(GROUPS_META);
    if (list !== undefined) {
      for (const s of d.decodeList(list, 'group list')) {
        if (!(s instanceof Uint8Array)) throw new StorageError('corrupt', 'saved group list');
        const bytes = await d.load(groupMeta(s as SpaceId));
        if (bytes === undefined) throw new StorageError('corrupt', 'a listed group is missing');
        try {
          const g = SpaceGroup.decode(bytes, d.groupOptions(s as SpaceId));
          d.groups.set(bytesKey(g.space), g);
        } catch (e) {
          if (e instanceof CodecError) throw new StorageError('corrupt', `saved group: ${e.message}`);
          throw e;
        }
      }
    }
    return d;
  }

  private decodeList(bytes: Uint8Array, what: string): CborValue[] {
    try {
      const v = decode(bytes, {
        maxBytes: bytes.length,
        maxArrayLength: 1_000_000,
        maxStringBytes: 1 << 20,
        maxDepth: 3,
      });
      if (Array.isArray(v)) return v as CborValue[];
    } catch {
      // reported below
    }
    throw new StorageError('corrupt', `saved ${what}`);
  }

  private groupOptions(space: SpaceId): GroupContextOptions {
    return {
      ed25519: this.o.ed25519,
      aead: this.o.aead,
      clock: this.o.clock,
      rng: this.o.rng,
      ...(this.o.policy === undefined ? {} : { policy: this.o.policy(space) }),
      ...(this.o.rotation === undefined ? {} : { rotation: this.o.rotation }),
    };
  }

  private async addToStock(
    kp: KeyPackage,
    priv: PrivateKeyPackage,
    message: Uint8Array,
  ): Promise<StockedPackage> {
    const cs = await ciphersuite();
    const ref = bytesKey(await makeKeyPackageRef(kp, cs.hash));
    const s = { publicPackage: kp, privatePackage: priv, message, ref };
    this.stock.set(ref, s);
    return s;
  }

  private async newPackage(): Promise<{ publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }> {
    const cs = await ciphersuite();
    return generateKeyPackageWithKey(
      credentialOf(this.o.cert),
      defaultCapabilities(),
      defaultLifetime,
      [],
      { signKey: this.o.seed, publicKey: this.o.device },
      cs,
    );
  }

  /**
   * A key package for someone to add this device with (sent in a join request): a different
   * one each call, each valid until a Welcome uses it. The stock keeps a few never handed out
   * ready, and forgets the oldest handed-out ones beyond a bound.
   */
  async keyPackage(): Promise<Uint8Array> {
    const unused = () => [...this.stock.values()].filter((s) => !this.handedOut.has(s.ref));
    while (unused().length < KEY_PACKAGE_STOCK + 1) {
      const p = await this.newPackage();
      const message = encodeMlsMessage({
        keyPackage: p.publicPackage,
        wireformat: 'mls_key_package',
        version: 'mls10',
      });
      await this.addToStock(p.publicPackage, p.privatePackage, message);
    }
    const next = unused()[0] as StockedPackage;
    this.handedOut.add(next.ref);
    for (const ref of this.handedOut) {
      if (this.handedOut.size <= MAX_HANDED_OUT) break;
      this.handedOut.delete(ref);
      this.stock.delete(ref);
    }
    await this.saveStock();
    return next.message;
  }

  /** How many key packages this device holds ready, never handed out. */
  get stockSize(): number {
    return [...this.stock.keys()].filter((r) => !this.handedOut.has(r)).length;
  }

  /** Creates the MLS group of a new Space with this device as its only member (epoch 0). */
  async createSpace(space: SpaceId): Promise<SpaceGroup> {
    if (this.groups.has(bytesKey(space))) throw new RangeError('this device already has that Space');
    const g = await SpaceGroup.create(space, await this.newPackage(), this.groupOptions(space));
    this.groups.set(bytesKey(space), g);
    await this.save(g);
    return g;
  }

  /** Joins a Space from a Welcome made for one of this device's key packages. */
  async join(welcome: Uint8Array): Promise<JoinResult> {
    const msg = decodeMls(welcome);
    if (msg?.wireformat !== 'mls_welcome')
      return { kind: 'rejected', reason: 'malformed', detail: 'not a Welcome' };
    const mine = msg.welcome.secrets
      .map((s) => this.stock.get(bytesKey(s.newMember)))
      .find((s) => s !== undefined);
    if (mine === undefined) {
      return {
        kind: 'rejected',
        reason: 'unknown-key-package',
        detail: 'the Welcome is for none of this device’s key packages',
      };
    }
    const r = await SpaceGroup.join(welcome, mine, this.o.ed25519, (space) => this.groupOptions(space));
    if (r.kind !== 'joined') return r;
    const g = r.group;
    // A device removed earlier may come back; one still a member may not join twice.
    if (this.groups.get(bytesKey(g.space))?.active === true) {
      return { kind: 'rejected', reason: 'invalid', detail: 'this device is already in that Space' };
    }
    // A key package is used once.
    this.stock.delete(mine.ref);
    this.handedOut.delete(mine.ref);
    this.groups.set(bytesKey(g.space), g);
    await this.save(g);
    await this.saveStock();
    return { kind: 'joined', group: g };
  }

  group(space: SpaceId): SpaceGroup | undefined {
    return this.groups.get(bytesKey(space));
  }

  spaces(): SpaceId[] {
    return [...this.groups.values()].map((g) => g.space);
  }

  epochKey(space: SpaceId, epoch: EpochRef): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.groups.get(bytesKey(space))?.epochKey(epoch));
  }

  contentKey(space: SpaceId, epoch: EpochRef): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.groups.get(bytesKey(space))?.contentKey(epoch));
  }

  memberAt(space: SpaceId, epoch: EpochRef, user: UserId, device: DeviceId): MembershipAnswer {
    return this.groups.get(bytesKey(space))?.memberAt(epoch, user, device) ?? 'unknown-epoch';
  }

  /** Forgets a Space this device left: its group state is deleted from memory and storage. */
  async forget(space: SpaceId): Promise<void> {
    if (!this.groups.delete(bytesKey(space))) return;
    await this.store(GROUPS_META, encode([...this.groups.values()].map((g) => g.space)));
    await this.o.storage.deleteMeta(groupMeta(space));
  }

  /** Saves a group's state (after every change of epoch, before telling anyone of it). */
  async save(group: SpaceGroup): Promise<void> {
    await this.store(groupMeta(group.space), group.encode());
    await this.store(GROUPS_META, encode([...this.groups.values()].map((g) => g.space)));
  }

  /** Saves a record of a flow in progress (a join, a commit), encrypted like everything else. */
  saveRecord(name: string, bytes: Uint8Array): Promise<void> {
    return this.store(`flow/${name}`, bytes);
  }

  /** A flow record, or `undefined`. @throws StorageError('corrupt') as {@link MlsDevice.open}. */
  loadRecord(name: string): Promise<Uint8Array | undefined> {
    return this.load(`flow/${name}`);
  }

  deleteRecord(name: string): Promise<void> {
    return this.o.storage.deleteMeta(`flow/${name}`);
  }

  private async saveStock(): Promise<void> {
    const list: CborValue[] = [...this.stock.values()].map((s) => [
      s.message,
      s.privatePackage.initPrivateKey,
      s.privatePackage.hpkePrivateKey,
      this.handedOut.has(s.ref),
    ]);
    await this.store(STOCK_META, encode(list));
  }

  private ad(name: string): Uint8Array {
    return concatBytes(AT_REST_CONTEXT, new TextEncoder().encode(name));
  }

  private async store(name: string, plain: Uint8Array): Promise<void> {
    const nonce = this.o.rng.randomBytes(NONCE_BYTES);
    const sealed = await this.o.aead.encrypt(this.o.atRestKey, nonce, this.ad(name), plain);
    await this.o.storage.putMeta(name, concatBytes(nonce, sealed));
  }

  private async load(name: string): Promise<Uint8Array | undefined> {
    const stored = await this.o.storage.getMeta(name);
    if (stored === undefined) return undefined;
    try {
      return await this.o.aead.decrypt(
        this.o.atRestKey,
        stored.subarray(0, NONCE_BYTES),
        this.ad(name),
        stored.subarray(NONCE_BYTES),
      );
    } catch (e) {
      if (e instanceof SealError) throw new StorageError('corrupt', `${name} does not decrypt with this key`);
      throw e;
    }
  }
}
