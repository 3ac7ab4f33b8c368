/**
 * Test support for the MLS layer: people whose devices hold real MLS state (ts-mls) and whose
 * replicas use it as their `KeyProvider` and `MembershipView`, with storage each can be
 * reopened from, as after a restart.
 */
import { SpaceReplica } from '../core/replica.js';
import type { ManualClock } from '../core/testkit.js';
import { testEd25519 } from '../core/testkit.js';
import { webCryptoAead } from '../ports/aead.js';
import { webRng } from '../ports/env.js';
import type { Storage } from '../ports/storage.js';
import { memoryStorage } from '../ports/storage.memory.js';
import type { SigningKey } from '../ports/crypto.js';
import { type DeviceIdentity, addDevice, createIdentity } from '../protocol/identity.js';
import type { Drafts, OpKind, SpaceId } from '../protocol/index.js';
import type { Mailbox } from '../ports/mailbox.js';
import { MlsDevice } from './device.js';
import type { PeerContext } from './flows.js';
import type { CommitPolicy, RotationPolicy, SpaceGroup } from './group.js';
import { stateCommitPolicy } from './policy.js';

export const aead = webCryptoAead();

export class MlsPeer {
  device!: MlsDevice;
  replica!: SpaceReplica;

  private constructor(
    readonly name: string,
    readonly space: SpaceId,
    readonly identity: DeviceIdentity,
    private readonly userKey: SigningKey,
    readonly seed: Uint8Array,
    readonly storage: Storage,
    readonly atRestKey: Uint8Array,
    readonly clock: ManualClock,
    private readonly rotation: RotationPolicy | undefined,
    private readonly policy: CommitPolicy | undefined,
  ) {}

  static async create(
    name: string,
    space: SpaceId,
    clock: ManualClock,
    options: { rotation?: RotationPolicy; storage?: Storage; policy?: CommitPolicy } = {},
  ): Promise<MlsPeer> {
    const ed = testEd25519();
    const { identity, userKey } = await createIdentity(ed, clock.now(), { extractable: true });
    return MlsPeer.withIdentity(name, space, clock, identity, userKey, options);
  }

  private static async withIdentity(
    name: string,
    space: SpaceId,
    clock: ManualClock,
    identity: DeviceIdentity,
    userKey: SigningKey,
    options: { rotation?: RotationPolicy; storage?: Storage; policy?: CommitPolicy },
  ): Promise<MlsPeer> {
    const seed = await testEd25519().exportSeed(identity.deviceKey);
    const p = new MlsPeer(
      name,
      space,
      identity,
      userKey,
      seed,
      options.storage ?? memoryStorage(),
      webRng.randomBytes(32),
      clock,
      options.rotation,
      options.policy,
    );
    await p.reopen();
    return p;
  }

  /** Another device of this peer's user, with storage of its own. */
  async newDevice(name: string): Promise<MlsPeer> {
    const identity = await addDevice(testEd25519(), this.userKey, this.clock.now(), { extractable: true });
    return MlsPeer.withIdentity(
      name,
      this.space,
      this.clock,
      identity,
      this.userKey,
      this.policy === undefined ? {} : { policy: this.policy },
    );
  }

  /** Drops every in-memory state and loads device and replica again from storage. */
  async reopen(atRestKey = this.atRestKey): Promise<void> {
    const ed = testEd25519();
    this.device = await MlsDevice.open({
      user: this.identity.user,
      device: this.identity.device,
      cert: this.identity.cert,
      seed: this.seed,
      storage: this.storage,
      atRestKey,
      ed25519: ed,
      aead,
      clock: this.clock,
      rng: webRng,
      policy: () => this.policy ?? stateCommitPolicy(() => this.replica.state),
      ...(this.rotation === undefined ? {} : { rotation: this.rotation }),
    });
    this.replica = await SpaceReplica.open({
      space: this.space,
      storage: this.storage,
      keys: this.device,
      membership: this.device,
      ed25519: ed,
      clock: this.clock,
      rng: webRng,
      aead,
    });
  }

  /** This peer as the membership flows see it, talking to `mailbox`. */
  ctx(mailbox: Mailbox): PeerContext {
    return {
      space: this.space,
      identity: this.identity,
      device: this.device,
      replica: this.replica,
      mailbox,
      aead,
      rng: webRng,
      clock: this.clock,
    };
  }

  get group(): SpaceGroup {
    const g = this.device.group(this.space);
    if (g === undefined) throw new Error(`${this.name} has no group`);
    return g;
  }

  /** Writes an op at the current epoch; throws unless this replica accepted it. */
  async write<K extends OpKind>(kind: K, body: Drafts[K]): Promise<Uint8Array> {
    const r = await this.replica.write(this.identity, this.group.epoch, kind, body);
    if (r.kind !== 'written' || r.outcome.kind !== 'accepted') {
      throw new Error(
        `${this.name}'s own ${kind} not accepted: ${JSON.stringify(r.kind === 'written' ? r.outcome : r)}`,
      );
    }
    this.group.noteSent();
    return r.sealed;
  }
}
