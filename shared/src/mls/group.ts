/**
 * One Space as an MLS group, from one device's side (ARCHITECTURE.md section 6): create, add
 * with a Welcome, remove, leave, self-update; commits applied only once the Space's relays
 * acknowledged them (soft sequencing, section 6.3); the epoch content keys and the membership
 * history the acceptance pipeline asks for. ts-mls stays inside this folder.
 */
import {
  type ClientState,
  type KeyPackage,
  type MLSMessage,
  type PrivateKeyPackage,
  type Proposal,
  createCommit,
  createGroup,
  createProposal,
  decodeGroupState,
  decodeMlsMessage,
  emptyPskIndex,
  encodeGroupState,
  encodeMlsMessage,
  joinGroupWithExtensions,
  mlsExporter,
  processMessage,
} from 'ts-mls';
import type { IncomingMessageCallback, MlsPrivateMessage, MlsPublicMessage } from 'ts-mls';
import type { Aead } from '../ports/aead.js';
import type { Ed25519 } from '../ports/crypto.js';
import type { Clock, Rng } from '../ports/env.js';
import type { MembershipAnswer } from '../ports/keys.js';
import { type CborValue, type DecodeLimits, decode, encode } from '../protocol/cbor.js';
import { CodecError, SealError } from '../protocol/errors.js';
import type { DeviceId, EpochRef, SpaceId, TopicId, UserId } from '../protocol/ids.js';
import { HASH_BYTES, KEY_BYTES, bytesKey, compareBytes, equalBytes } from '../protocol/ids.js';
import { MAX_MLS_MESSAGE_BYTES, MLS_RETAIN_EPOCHS } from '../protocol/limits.js';
import { NONCE_BYTES } from '../protocol/seal.js';
import { handshakeTopicId, sha256 } from '../crypto/sha256.js';
import { type Handshake, decodeHandshake, openHandshake, sealHandshake } from './envelope.js';
import { EpochHistory } from './history.js';
import {
  CONTENT_KEY_LABEL,
  CONTROL_KEY_LABEL,
  type GroupMember,
  KEY_HISTORY_EXTENSION,
  certOf,
  ciphersuite,
  clientConfig,
} from './suite.js';

/** Why a handshake message or a Welcome was refused. Nothing changed when one is returned. */
export type GroupRejectReason =
  /** Not a handshake envelope or MLS message, or one for another Space. */
  | 'malformed'
  /** The epoch key does not open it. */
  | 'bad-seal'
  /** MLS validation failed: signature, confirmation tag, tree, credential. */
  | 'invalid'
  /** The committer may not make these changes (section 6.3: only admins and moderators change membership). */
  | 'unauthorized'
  /** It adds a banned user. */
  | 'banned'
  /** This device is no longer a member of the group. */
  | 'not-member';

/** What processing a handshake message did. */
export type ProcessOutcome =
  | {
      readonly kind: 'applied';
      readonly epoch: EpochRef;
      readonly committer: GroupMember | undefined;
      readonly added: readonly GroupMember[];
      readonly removed: readonly GroupMember[];
    }
  /** The commit removed this device: the group is closed; its past keys stay readable. */
  | { readonly kind: 'removed-self'; readonly epoch: EpochRef; readonly committer: GroupMember | undefined }
  /**
   * A competing commit on an epoch this device had left won the fork choice: this device
   * rolled back and applied it. `abandoned`: the epochs it left (their keys stay, to read ops
   * already sealed on them); a commit of its own among them must be made again.
   */
  | {
      readonly kind: 'switched';
      readonly epoch: EpochRef;
      readonly abandoned: readonly EpochRef[];
      readonly committer: GroupMember | undefined;
      /** This device's own commits that the switch dropped: the loser makes its change again. */
      readonly lost: readonly {
        readonly added: readonly GroupMember[];
        readonly removed: readonly GroupMember[];
      }[];
    }
  /** A commit this device cannot judge yet (it lacks ops the committer had): try again later. */
  | { readonly kind: 'held'; readonly epoch: number }
  /** A proposal (a member leaving), kept for the next commit. */
  | { readonly kind: 'proposal-stored'; readonly from: GroupMember | undefined }
  /** A message this device already applied (its own commit echoed by a relay). */
  | { readonly kind: 'duplicate' }
  /** Sent in an epoch this device has moved past: a competing commit (fork, section 6.3). */
  | { readonly kind: 'stale'; readonly epoch: number }
  /** Sent in an epoch this device has not reached: keep it, retry after the earlier commits. */
  | { readonly kind: 'future'; readonly epoch: number }
  | { readonly kind: 'rejected'; readonly reason: GroupRejectReason; readonly detail: string };

/** A membership change this device wants to commit. */
export type Change =
  | { readonly kind: 'add'; readonly keyPackages: readonly Uint8Array[] }
  | { readonly kind: 'remove'; readonly devices: readonly DeviceId[] }
  | { readonly kind: 'update' };

/**
 * Who may commit what, answered from the Space's state (roles and bans live in the op log,
 * not in MLS). Asked before this device commits and for every commit it receives.
 */
export interface CommitPolicy {
  /**
   * `context` is what the committer put in the commit's authenticated data (its op-log heads).
   * `unknown-context`: this device cannot judge yet (it lacks ops the committer had).
   */
  check(
    committer: GroupMember,
    change: { readonly added: readonly GroupMember[]; readonly removed: readonly GroupMember[] },
    context: Uint8Array,
  ): 'ok' | 'unauthorized' | 'banned' | 'unknown-context';
  /**
   * The committer's rank (admin 2, moderator 1, member 0) in `context`, for fork choice;
   * `undefined` when this device cannot tell yet.
   */
  rank(committer: GroupMember, context: Uint8Array): number | undefined;
}

/** Any member may commit anything: for Spaces whose state is not loaded (tests, tools). */
export const openPolicy: CommitPolicy = { check: () => 'ok', rank: () => 0 };

/** When a member rotates its keys with a self-update (section 6.1). */
export interface RotationPolicy {
  /** Milliseconds an epoch may last. */
  readonly maxAgeMs: number;
  /** Ops this device may seal in one epoch. */
  readonly maxMessages: number;
}

export const DEFAULT_ROTATION: RotationPolicy = { maxAgeMs: 7 * 24 * 3600 * 1000, maxMessages: 10_000 };

export interface GroupContextOptions {
  readonly ed25519: Ed25519;
  readonly aead: Aead;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly policy?: CommitPolicy;
  readonly rotation?: RotationPolicy;
}

/** This device's own MLS key material: its certified device key as the credential's signature key. */
export interface MlsSelf {
  readonly user: UserId;
  readonly device: DeviceId;
  /** The device key's 32-byte seed (RFC 8032 private key). */
  readonly seed: Uint8Array;
}

/**
 * A commit made but not yet applied: send `handshake` to the Space's relays and `welcome` to
 * the added members, then `SpaceGroup.confirm` it once a relay acknowledged the handshake.
 */
export class PendingCommit {
  constructor(
    /** The epoch this commit replaces. */
    readonly from: EpochRef,
    /** The epoch it creates. */
    readonly to: EpochRef,
    /** The sealed commit for the Space's topic. */
    readonly handshake: Uint8Array,
    /** The Welcome for the added members (an MLS message), when it adds any. */
    readonly welcome: Uint8Array | undefined,
    readonly added: readonly GroupMember[],
    readonly removed: readonly GroupMember[],
    /** The commit's authenticated data: the committer's op-log heads. */
    readonly context: Uint8Array,
    /** @internal */
    readonly base: ClientState,
    /** @internal */
    readonly next: ClientState,
  ) {}
}

export type PrepareResult =
  | { readonly kind: 'ready'; readonly commit: PendingCommit }
  | { readonly kind: 'refused'; readonly reason: GroupRejectReason; readonly detail: string };

const STATE_LIMITS: DecodeLimits = {
  maxBytes: 512 * 1024 * 1024,
  maxArrayLength: 16,
  maxStringBytes: 256 * 1024 * 1024,
  maxDepth: 6,
};

const ZERO_HASH = new Uint8Array(HASH_BYTES);
/**
 * One step of this device's epoch chain, kept for fork choice: the state it left, who made it,
 * the commit's context (for the committer's rank), and the commit's hash (the tie-break).
 */
interface Transition {
  readonly from: EpochRef;
  /**
   * The state it left; after a restart its saved encoding, decoded only when a fork needs it
   * (decoding a large group's state takes seconds).
   */
  base: ClientState | Uint8Array;
  readonly committer: GroupMember;
  readonly context: Uint8Array;
  readonly tie: Uint8Array;
  /** For this device's own commits: what it changed (made again if a fork choice drops it). */
  readonly own?: { readonly added: readonly GroupMember[]; readonly removed: readonly GroupMember[] };
}

/** Commits on unknown epochs a member keeps, in case it switches to their branch. */
const MAX_ORPHANS = 256;

/** Epochs a fork can reach back: how many transitions' previous states a member keeps. */
const FORK_WINDOW = 8;
/**
 * Of those, how many are saved at least, so fork choice still works after a restart: each
 * costs a whole group state in every save (1.3 MiB at 1,000 members, 7 MiB at 5,000).
 */
export const SAVED_TRAIL = 2;
/**
 * Bytes. More are saved, up to the whole window, while their states fit in this: a small
 * group's state is a few KiB, so its members keep fork choice as deep across a restart as
 * while running (a member that committed several times on a losing branch, then restarted,
 * could otherwise never follow the winner).
 */
const SAVED_TRAIL_BYTES = 1 << 20;
/** Encodings of group states already made (a state is immutable): each is encoded once. */
const encodedStates = new WeakMap<ClientState, Uint8Array>();

function encodedState(state: ClientState): Uint8Array {
  let bytes = encodedStates.get(state);
  if (bytes === undefined) {
    bytes = encodeGroupState(state);
    encodedStates.set(state, bytes);
  }
  return bytes;
}
/** Handshakes this device applied (by their AEAD tag), remembered to recognise their echoes. */
const RECENT_HANDSHAKES = 64;

/**
 * A group state from its saved encoding, with `config` re-attached (it holds functions, so it
 * is not saved). @throws CodecError when the bytes are not one whole state.
 */
function savedState(bytes: Uint8Array, config: ClientState['clientConfig']): ClientState {
  let decoded;
  try {
    decoded = decodeGroupState(bytes, 0);
  } catch (e) {
    throw new CodecError('wrong-type', `saved group: MLS state: ${describe(e)}`);
  }
  if (decoded === undefined || decoded[1] !== bytes.length) {
    throw new CodecError('wrong-type', 'saved group: MLS state');
  }
  const state: ClientState = { ...decoded[0], clientConfig: config };
  encodedStates.set(state, bytes);
  return state;
}

/** The latest transitions a save keeps: {@link SAVED_TRAIL}, and more while they fit in the budget. */
function savedTransitions(trail: readonly Transition[]): Transition[] {
  let bytes = 0;
  let keep = 0;
  for (let i = trail.length - 1; i >= 0 && keep < FORK_WINDOW; i--) {
    const t = trail[i] as Transition;
    const size = t.base instanceof Uint8Array ? t.base.length : encodedState(t.base).length;
    if (keep >= SAVED_TRAIL && bytes + size > SAVED_TRAIL_BYTES) break;
    bytes += size;
    keep++;
  }
  return trail.slice(trail.length - keep);
}

/** The transitions of a saved group (see `SpaceGroup.encode`), their states left encoded. */
function savedTrail(v: CborValue | undefined): Transition[] {
  const bad = (what: string): never => {
    throw new CodecError('wrong-type', `saved group: trail ${what}`);
  };
  if (!Array.isArray(v) || v.length > FORK_WINDOW) return bad('list');
  const member = (m: CborValue | undefined): GroupMember =>
    Array.isArray(m) &&
    m.length === 2 &&
    m[0] instanceof Uint8Array &&
    m[0].length === KEY_BYTES &&
    m[1] instanceof Uint8Array &&
    m[1].length === KEY_BYTES
      ? { user: m[0] as UserId, device: m[1] as DeviceId }
      : bad('member');
  const members = (list: CborValue | undefined): GroupMember[] =>
    Array.isArray(list) ? (list as CborValue[]).map(member) : bad('members');
  return (v as CborValue[]).map((t) => {
    if (!Array.isArray(t) || t.length !== 7) return bad('entry');
    const [epoch, hash, base, committer, context, tie, own] = t as CborValue[];
    if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) return bad('epoch');
    if (!(hash instanceof Uint8Array) || hash.length !== HASH_BYTES) return bad('commit hash');
    if (!(base instanceof Uint8Array) || !(context instanceof Uint8Array)) return bad('state');
    if (!(tie instanceof Uint8Array) || tie.length !== HASH_BYTES) return bad('tie');
    const transition: Transition = {
      from: { epoch, commitHash: hash },
      base,
      committer: member(committer),
      context,
      tie,
    };
    if (own === null) return transition;
    if (!Array.isArray(own) || own.length !== 2) return bad('own change');
    const [added, removed] = own as CborValue[];
    return { ...transition, own: { added: members(added), removed: members(removed) } };
  });
}

function refOf(state: ClientState): EpochRef {
  const epoch = Number(state.groupContext.epoch);
  return { epoch, commitHash: epoch === 0 ? ZERO_HASH : state.groupContext.confirmedTranscriptHash };
}

function membersOf(state: ClientState): GroupMember[] {
  const out: GroupMember[] = [];
  for (let i = 0; i < state.ratchetTree.length; i += 2) {
    const m = leafMember(state, i / 2);
    if (m !== undefined) out.push(m);
  }
  return out;
}

function leafMember(state: ClientState, leaf: number): GroupMember | undefined {
  const n = state.ratchetTree[leaf * 2];
  if (n?.nodeType !== 'leaf') return undefined;
  const cert = certOf(n.leaf.credential);
  return cert === undefined ? undefined : { user: cert.user, device: n.leaf.signaturePublicKey as DeviceId };
}

function keyPackageMember(kp: KeyPackage): GroupMember | undefined {
  const cert = certOf(kp.leafNode.credential);
  return cert === undefined
    ? undefined
    : { user: cert.user, device: kp.leafNode.signaturePublicKey as DeviceId };
}

/** Decodes one MLS message filling `bytes`, or `undefined`. */
export function decodeMls(bytes: Uint8Array): MLSMessage | undefined {
  if (bytes.length > MAX_MLS_MESSAGE_BYTES) return undefined;
  try {
    const r = decodeMlsMessage(bytes, 0);
    return r !== undefined && r[1] === bytes.length ? r[0] : undefined;
  } catch {
    return undefined;
  }
}

function reject(reason: GroupRejectReason, detail: string): Extract<ProcessOutcome, { kind: 'rejected' }> {
  return { kind: 'rejected', reason, detail };
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

export class SpaceGroup {
  readonly topic: TopicId;
  private state: ClientState;
  private readonly history: EpochHistory;
  private epochStartedMs: number;
  private sentInEpoch: number;
  private readonly recent: string[];
  /** The latest transitions, for fork choice: the state each left, its committer and context. */
  private readonly trail: Transition[] = [];
  /**
   * Commits on epochs this device has not reached or does not know (perhaps of a branch it will
   * switch to), applied when it lands on the epoch they build on. In memory only: a host keeps
   * its mailbox cursor before the first of them, so a restart reads them again.
   */
  private readonly orphans: { bytes: Uint8Array; parent: EpochRef }[] = [];

  private constructor(
    readonly space: SpaceId,
    state: ClientState,
    history: EpochHistory,
    private readonly o: GroupContextOptions,
    started: { ms: number; sent: number; recent: string[] },
  ) {
    this.topic = handshakeTopicId(space);
    this.state = state;
    this.history = history;
    this.epochStartedMs = started.ms;
    this.sentInEpoch = started.sent;
    this.recent = started.recent;
  }

  /** A new Space with this device as its only member, at epoch 0. */
  static async create(
    space: SpaceId,
    keyPackage: { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage },
    o: GroupContextOptions,
  ): Promise<SpaceGroup> {
    const cs = await ciphersuite();
    const state = await createGroup(
      space,
      keyPackage.publicPackage,
      keyPackage.privatePackage,
      [],
      cs,
      clientConfig(o.ed25519, MLS_RETAIN_EPOCHS),
    );
    const g = new SpaceGroup(space, state, new EpochHistory(), o, { ms: o.clock.now(), sent: 0, recent: [] });
    await g.recordEpoch();
    return g;
  }

  /**
   * Joins from a Welcome made for `keyPackage`. The key history inside it (when the Space shows
   * its history to new members) makes earlier epochs readable.
   *
   * @throws never: every refusal is a result.
   */
  static async join(
    welcome: Uint8Array,
    keyPackage: { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage },
    ed: Ed25519,
    options: (space: SpaceId) => GroupContextOptions,
  ): Promise<
    { kind: 'joined'; group: SpaceGroup } | { kind: 'rejected'; reason: GroupRejectReason; detail: string }
  > {
    const msg = decodeMls(welcome);
    if (msg?.wireformat !== 'mls_welcome')
      return { kind: 'rejected', reason: 'malformed', detail: 'not a Welcome' };
    const cs = await ciphersuite();
    let state: ClientState;
    let extensions: { extensionType: unknown; extensionData: Uint8Array }[];
    try {
      [state, extensions] = await joinGroupWithExtensions(
        msg.welcome,
        keyPackage.publicPackage,
        keyPackage.privatePackage,
        emptyPskIndex,
        cs,
        undefined,
        undefined,
        clientConfig(ed, MLS_RETAIN_EPOCHS),
      );
    } catch (e) {
      return { kind: 'rejected', reason: 'invalid', detail: describe(e) };
    }
    const space = state.groupContext.groupId as SpaceId;
    const o = options(space);
    let older: EpochHistory | undefined;
    const carried = extensions.find((x) => x.extensionType === KEY_HISTORY_EXTENSION);
    if (carried !== undefined) {
      try {
        older = EpochHistory.decode(carried.extensionData);
      } catch (e) {
        return { kind: 'rejected', reason: 'malformed', detail: `key history: ${describe(e)}` };
      }
    }
    const g = new SpaceGroup(space, state, new EpochHistory(), o, { ms: o.clock.now(), sent: 0, recent: [] });
    await g.recordEpoch();
    if (older !== undefined) g.history.prepend(older);
    return { kind: 'joined', group: g };
  }

  /** The current epoch. */
  get epoch(): EpochRef {
    return refOf(this.state);
  }

  /** Whether this device is still a member (false once a commit removed it). */
  get active(): boolean {
    return this.state.groupActiveState.kind === 'active';
  }

  /** The members of the current epoch, in leaf order. */
  members(): GroupMember[] {
    return membersOf(this.state);
  }

  /** Every epoch this device has the content key of, oldest first. */
  epochs(): EpochRef[] {
    return this.history.refs();
  }

  /** The control key of `ref` (it seals whole ops), when this device has it. */
  epochKey(ref: EpochRef): Uint8Array | undefined {
    return this.history.keyOf(ref);
  }

  /** The content key of `ref` (it seals what posts say), when this device has it. */
  contentKey(ref: EpochRef): Uint8Array | undefined {
    return this.history.contentKeyOf(ref);
  }

  memberAt(ref: EpochRef, user: UserId, device: DeviceId): MembershipAnswer {
    return this.history.memberAt(ref, user, device);
  }

  /** Counts ops this device sealed in the current epoch (for rotation). */
  noteSent(count = 1): void {
    this.sentInEpoch += count;
  }

  /** Whether this device should commit a self-update now (section 6.1). */
  needsRotation(): boolean {
    const r = this.o.rotation ?? DEFAULT_ROTATION;
    return (
      this.active &&
      (this.o.clock.now() - this.epochStartedMs >= r.maxAgeMs || this.sentInEpoch >= r.maxMessages)
    );
  }

  private async recordEpoch(): Promise<void> {
    const cs = await ciphersuite();
    const secret = this.state.keySchedule.exporterSecret;
    const key = await mlsExporter(secret, CONTROL_KEY_LABEL, this.space, 32, cs);
    const content = await mlsExporter(secret, CONTENT_KEY_LABEL, this.space, 32, cs);
    this.history.record(refOf(this.state), key, content, membersOf(this.state));
  }

  private currentKey(): Uint8Array {
    const key = this.history.keyOf(this.epoch);
    if (key === undefined) throw new Error('the current epoch has no key recorded');
    return key;
  }

  private self(): GroupMember {
    const m = leafMember(this.state, this.state.privatePath.leafIndex);
    if (m === undefined) throw new Error('own leaf missing');
    return m;
  }

  private leafOf(device: DeviceId): number | undefined {
    for (let i = 0; i < this.state.ratchetTree.length; i += 2) {
      const n = this.state.ratchetTree[i];
      if (n?.nodeType === 'leaf' && equalBytes(n.leaf.signaturePublicKey, device)) return i / 2;
    }
    return undefined;
  }

  private seal(message: MLSMessage): Promise<Uint8Array> {
    return sealHandshake(
      this.o.aead,
      this.topic,
      this.epoch,
      this.currentKey(),
      this.o.rng.randomBytes(NONCE_BYTES),
      encodeMlsMessage(message),
    );
  }

  /**
   * Makes a commit of `change` on the current epoch without applying it. A Welcome carries
   * the control keys and membership of every epoch so far; with `keyHistory` also their content
   * keys (the Space's history is visible to new members).
   */
  async prepare(
    change: Change,
    options: { keyHistory?: boolean; context?: Uint8Array } = {},
  ): Promise<PrepareResult> {
    const context = options.context ?? new Uint8Array(0);
    if (!this.active) return { kind: 'refused', reason: 'not-member', detail: 'this device was removed' };
    const proposals: Proposal[] = [];
    const added: GroupMember[] = [];
    const removed: GroupMember[] = [];
    if (change.kind === 'add') {
      for (const bytes of change.keyPackages) {
        const m = decodeMls(bytes);
        if (m?.wireformat !== 'mls_key_package') {
          return { kind: 'refused', reason: 'malformed', detail: 'not a key package' };
        }
        const who = keyPackageMember(m.keyPackage);
        if (who === undefined)
          return { kind: 'refused', reason: 'invalid', detail: 'not a Conclave credential' };
        if (this.leafOf(who.device) !== undefined) {
          return { kind: 'refused', reason: 'invalid', detail: 'that device is already a member' };
        }
        added.push(who);
        proposals.push({ proposalType: 'add', add: { keyPackage: m.keyPackage } });
      }
    } else if (change.kind === 'remove') {
      for (const d of change.devices) {
        const leaf = this.leafOf(d);
        const who = leaf === undefined ? undefined : leafMember(this.state, leaf);
        if (leaf === undefined || who === undefined) {
          return { kind: 'refused', reason: 'not-member', detail: 'no such device in the group' };
        }
        removed.push(who);
        proposals.push({ proposalType: 'remove', remove: { removed: leaf } });
      }
    }
    if (added.length > 0 || removed.length > 0) {
      const verdict = (this.o.policy ?? openPolicy).check(this.self(), { added, removed }, context);
      if (verdict !== 'ok') {
        const reason = verdict === 'unknown-context' ? 'unauthorized' : verdict;
        return { kind: 'refused', reason, detail: `policy: ${verdict}` };
      }
    }
    const cs = await ciphersuite();
    const from = this.epoch;
    // Every joiner gets the control keys and membership of every epoch so far, so it can place
    // and check every op; the content keys only when the Space shows its history to newcomers.
    const history =
      added.length > 0 ? this.history.encode(from.epoch + 1, options.keyHistory === true) : undefined;
    let result;
    try {
      result = await createCommit(
        { state: this.state, cipherSuite: cs },
        {
          extraProposals: proposals,
          ratchetTreeExtension: true,
          authenticatedData: context,
          groupInfoExtensions:
            history === undefined ? [] : [{ extensionType: KEY_HISTORY_EXTENSION, extensionData: history }],
        },
      );
    } catch (e) {
      return { kind: 'refused', reason: 'invalid', detail: describe(e) };
    }
    const handshake = await this.seal(result.commit);
    const welcome =
      result.welcome === undefined
        ? undefined
        : encodeMlsMessage({ welcome: result.welcome, wireformat: 'mls_welcome', version: 'mls10' });
    return {
      kind: 'ready',
      commit: new PendingCommit(
        from,
        refOf(result.newState),
        handshake,
        welcome,
        added,
        removed,
        context,
        this.state,
        result.newState,
      ),
    };
  }

  /**
   * Applies this device's own commit once a relay acknowledged it. `stale` when another
   * commit was applied on that epoch first: make the change again on the new epoch.
   */
  async confirm(pending: PendingCommit): Promise<ProcessOutcome> {
    if (this.state !== pending.base) return { kind: 'stale', epoch: pending.from.epoch };
    this.step({
      from: pending.from,
      base: pending.base,
      committer: this.self(),
      context: pending.context,
      tie: sha256(pending.handshake),
      own: { added: pending.added, removed: pending.removed },
    });
    this.state = pending.next;
    this.remember(pending.handshake);
    await this.newEpoch();
    return {
      kind: 'applied',
      epoch: this.epoch,
      committer: this.self(),
      added: pending.added,
      removed: pending.removed,
    };
  }

  /**
   * A pending commit as bytes (with the next state's private keys: encrypt at rest), saved
   * before its handshake is sent so a restart between send and acknowledgement loses nothing.
   */
  encodePending(p: PendingCommit): Uint8Array {
    const member = (m: GroupMember): CborValue => [m.user, m.device];
    return encode([
      p.from.epoch,
      p.from.commitHash,
      p.handshake,
      p.welcome ?? null,
      p.added.map(member),
      p.removed.map(member),
      encodeGroupState(p.next),
      p.context,
    ]);
  }

  /**
   * A pending commit from {@link encodePending}, or `undefined` when this group is no longer on
   * the epoch it was made on (another commit won; make the change again).
   *
   * @throws CodecError when the bytes are not a pending commit.
   */
  restorePending(bytes: Uint8Array): PendingCommit | undefined {
    const v = decode(bytes, STATE_LIMITS);
    const bad = (): never => {
      throw new CodecError('wrong-type', 'saved pending commit');
    };
    if (!Array.isArray(v) || v.length !== 8) return bad();
    const [epoch, hash, handshake, welcome, added, removed, next, context] = v as CborValue[];
    if (!(context instanceof Uint8Array)) return bad();
    if (typeof epoch !== 'number' || !(hash instanceof Uint8Array) || !(handshake instanceof Uint8Array))
      return bad();
    if (!(welcome === null || welcome instanceof Uint8Array) || !(next instanceof Uint8Array)) return bad();
    if (!Array.isArray(added) || !Array.isArray(removed)) return bad();
    const members = (list: readonly CborValue[]): GroupMember[] =>
      list.map((m) => {
        if (!Array.isArray(m) || !(m[0] instanceof Uint8Array) || !(m[1] instanceof Uint8Array)) return bad();
        return { user: m[0] as UserId, device: m[1] as DeviceId };
      });
    const from = { epoch, commitHash: hash };
    const current = this.epoch;
    if (current.epoch !== epoch || !equalBytes(current.commitHash, hash)) return undefined;
    const decoded = decodeGroupState(next, 0);
    if (decoded === undefined) return bad();
    const state: ClientState = { ...decoded[0], clientConfig: this.state.clientConfig };
    return new PendingCommit(
      from,
      refOf(state),
      handshake,
      welcome ?? undefined,
      members(added as CborValue[]),
      members(removed as CborValue[]),
      context,
      this.state,
      state,
    );
  }

  /**
   * A proposal to remove this device, sealed for the Space's topic: the next committer
   * commits it (section 6.1, leave).
   */
  async proposeLeave(): Promise<Uint8Array> {
    const cs = await ciphersuite();
    const r = await createProposal(
      this.state,
      false,
      { proposalType: 'remove', remove: { removed: this.state.privatePath.leafIndex } },
      cs,
    );
    const sealed = await this.seal(r.message);
    this.state = r.newState;
    return sealed;
  }

  private keepOrphan(bytes: Uint8Array, parent: EpochRef): void {
    if (this.orphans.some((o) => equalBytes(o.bytes, bytes))) return;
    this.orphans.push({ bytes, parent });
    if (this.orphans.length > MAX_ORPHANS) this.orphans.shift();
  }

  /** Applies kept commits that build on the epoch this device has just reached. */
  private async adoptOrphans(): Promise<void> {
    for (;;) {
      const now = this.epoch;
      const i = this.orphans.findIndex(
        (o) => o.parent.epoch === now.epoch && equalBytes(o.parent.commitHash, now.commitHash),
      );
      const o = this.orphans[i];
      if (o === undefined) return;
      this.orphans.splice(i, 1);
      // Its own outcome only moves this device on; anything else leaves it where it is.
      await this.process(o.bytes);
      if (equalBytes(this.epoch.commitHash, now.commitHash) && this.epoch.epoch === now.epoch) return;
    }
  }

  private step(t: Transition): void {
    this.trail.push(t);
    if (this.trail.length > FORK_WINDOW) this.trail.shift();
  }

  private remember(handshake: Uint8Array): void {
    this.recent.push(bytesKey(handshake.subarray(handshake.length - 16)));
    if (this.recent.length > RECENT_HANDSHAKES) this.recent.shift();
  }

  private async newEpoch(): Promise<void> {
    this.epochStartedMs = this.o.clock.now();
    this.sentInEpoch = 0;
    await this.recordEpoch();
  }

  /** Processes a handshake message (commit or proposal) from the Space's topic. */
  async process(bytes: Uint8Array): Promise<ProcessOutcome> {
    let h;
    try {
      h = decodeHandshake(bytes);
    } catch (e) {
      return reject('malformed', describe(e));
    }
    if (!equalBytes(h.topic, this.topic)) return reject('malformed', 'a handshake for another Space');
    if (this.recent.includes(bytesKey(bytes.subarray(bytes.length - 16)))) return { kind: 'duplicate' };
    const current = this.epoch;
    if (h.epoch.epoch > current.epoch) {
      this.keepOrphan(bytes, h.epoch);
      return { kind: 'future', epoch: h.epoch.epoch };
    }
    if (h.epoch.epoch < current.epoch || !equalBytes(h.epoch.commitHash, current.commitHash)) {
      return this.compete(h, bytes);
    }
    // Removed by a commit on this epoch: only a competing commit that wins can bring it back.
    if (!this.active) return this.compete(h, bytes);
    const opened = await this.openIncoming(h, this.currentKey());
    if (opened.kind === 'rejected') return opened;
    const j = await this.judge(opened.msg, this.state, opened.context);
    if (j.kind === 'rejected' || j.kind === 'held') return j;
    const { result, committer, added, removed } = j;
    const transition: Transition = {
      from: current,
      base: this.state,
      committer: committer as GroupMember,
      context: opened.context,
      tie: sha256(bytes),
    };
    if (Number(result.newState.groupContext.epoch) === current.epoch) {
      if (result.newState.groupActiveState.kind === 'removedFromGroup') {
        this.step(transition);
        this.state = result.newState;
        this.remember(bytes);
        return { kind: 'removed-self', epoch: current, committer };
      }
      this.state = result.newState;
      return { kind: 'proposal-stored', from: j.proposer };
    }
    this.step(transition);
    this.state = result.newState;
    this.remember(bytes);
    await this.newEpoch();
    await this.adoptOrphans();
    return { kind: 'applied', epoch: this.epoch, committer, added, removed };
  }

  /**
   * A commit on an epoch this device has already left (section 6.3, fork choice). When it
   * competes with the commit this device applied on that epoch and wins (the committer's
   * higher role, then the lower SHA-256 of the sealed commit), this device rolls back to that
   * epoch and applies it; it keeps the abandoned epochs' keys to read ops sealed on them.
   */
  private async compete(h: Handshake, bytes: Uint8Array): Promise<ProcessOutcome> {
    const stale: ProcessOutcome = { kind: 'stale', epoch: h.epoch.epoch };
    const at = this.trail.findIndex(
      (t) => t.from.epoch === h.epoch.epoch && equalBytes(t.from.commitHash, h.epoch.commitHash),
    );
    const t = this.trail[at];
    if (t === undefined) {
      // Perhaps a commit of a branch this device has not reached (yet): kept, and tried again
      // whenever this device lands on the epoch it builds on.
      this.keepOrphan(bytes, h.epoch);
      return stale;
    }
    const key = this.history.keyOf(t.from);
    if (key === undefined) return stale;
    const opened = await this.openIncoming(h, key);
    if (opened.kind === 'rejected') return opened;
    if (t.base instanceof Uint8Array) t.base = this.restoredState(t.base);
    const j = await this.judge(opened.msg, t.base, opened.context);
    if (j.kind === 'rejected' || j.kind === 'held') return j;
    if (Number(j.result.newState.groupContext.epoch) === t.from.epoch) return stale; // a late proposal
    const policy = this.o.policy ?? openPolicy;
    const rank = policy.rank(j.committer as GroupMember, opened.context);
    const ourRank = policy.rank(t.committer, t.context);
    if (rank === undefined || ourRank === undefined) return { kind: 'held', epoch: h.epoch.epoch };
    const tie = sha256(bytes);
    const wins = rank > ourRank || (rank === ourRank && compareBytes(tie, t.tie) < 0);
    if (!wins) return stale;
    const abandoned = this.history.rewindTo(t.from.epoch);
    const lost = this.trail.splice(at).flatMap((x) => (x.own === undefined ? [] : [x.own]));
    this.step({
      from: t.from,
      base: t.base,
      committer: j.committer as GroupMember,
      context: opened.context,
      tie,
    });
    this.state = j.result.newState;
    this.remember(bytes);
    if (j.result.newState.groupActiveState.kind === 'removedFromGroup') {
      return { kind: 'removed-self', epoch: t.from, committer: j.committer };
    }
    await this.newEpoch();
    await this.adoptOrphans();
    return { kind: 'switched', epoch: this.epoch, abandoned, committer: j.committer, lost };
  }

  private async openIncoming(
    h: Handshake,
    key: Uint8Array,
  ): Promise<
    | { kind: 'opened'; msg: MlsPrivateMessage | MlsPublicMessage; context: Uint8Array }
    | Extract<ProcessOutcome, { kind: 'rejected' }>
  > {
    let plain: Uint8Array;
    try {
      plain = await openHandshake(this.o.aead, h, key);
    } catch (e) {
      if (e instanceof SealError) return reject('bad-seal', e.message);
      throw e;
    }
    const msg = decodeMls(plain);
    if (
      msg === undefined ||
      (msg.wireformat !== 'mls_private_message' && msg.wireformat !== 'mls_public_message')
    ) {
      return reject('malformed', 'not an MLS handshake message');
    }
    const group =
      msg.wireformat === 'mls_private_message'
        ? msg.privateMessage.groupId
        : msg.publicMessage.content.groupId;
    if (!equalBytes(group, this.space)) return reject('malformed', 'an MLS message for another group');
    const context =
      msg.wireformat === 'mls_private_message'
        ? msg.privateMessage.authenticatedData
        : msg.publicMessage.content.authenticatedData;
    return { kind: 'opened', msg, context };
  }

  /** Runs a handshake message against `base` under the commit policy; changes nothing here. */
  private async judge(msg: MlsPrivateMessage | MlsPublicMessage, base: ClientState, context: Uint8Array) {
    let refusal: 'unauthorized' | 'banned' | 'unknown-context' | undefined;
    let committer: GroupMember | undefined;
    let proposer: GroupMember | undefined;
    const added: GroupMember[] = [];
    const removed: GroupMember[] = [];
    const callback: IncomingMessageCallback = (incoming) => {
      if (incoming.kind === 'proposal') {
        const p = incoming.proposal;
        proposer = p.senderLeafIndex === undefined ? undefined : leafMember(base, p.senderLeafIndex);
        // Members propose only their own removal (leave); everything else is committed directly.
        if (p.proposal.proposalType !== 'remove' || p.proposal.remove.removed !== p.senderLeafIndex) {
          refusal = 'unauthorized';
          return 'reject';
        }
        return 'accept';
      }
      committer =
        incoming.senderLeafIndex === undefined ? undefined : leafMember(base, incoming.senderLeafIndex);
      for (const p of incoming.proposals) {
        if (p.proposal.proposalType === 'add') {
          const m = keyPackageMember(p.proposal.add.keyPackage);
          if (m !== undefined) added.push(m);
        } else if (p.proposal.proposalType === 'remove') {
          const m = leafMember(base, p.proposal.remove.removed);
          // A member's own leave proposal needs no authority.
          if (m !== undefined && p.senderLeafIndex !== p.proposal.remove.removed) removed.push(m);
        } else if (p.proposal.proposalType !== 'update') {
          refusal = 'unauthorized';
          return 'reject';
        }
      }
      if (committer === undefined) {
        refusal = 'unauthorized';
        return 'reject';
      }
      if (added.length > 0 || removed.length > 0) {
        const verdict = (this.o.policy ?? openPolicy).check(committer, { added, removed }, context);
        if (verdict !== 'ok') {
          refusal = verdict;
          return 'reject';
        }
      }
      return 'accept';
    };
    const cs = await ciphersuite();
    let result;
    try {
      result = await processMessage(msg, base, emptyPskIndex, callback, cs);
    } catch (e) {
      return reject('invalid', describe(e));
    }
    if (result.kind === 'applicationMessage') {
      return reject(
        'malformed',
        'MLS application messages are not used; ops are sealed with the content key',
      );
    }
    if (refusal === 'unknown-context')
      return { kind: 'held' as const, epoch: Number(base.groupContext.epoch) };
    if (result.actionTaken === 'reject')
      return reject(refusal ?? 'unauthorized', 'refused by the commit policy');
    return { kind: 'judged' as const, result, committer, proposer, added, removed };
  }

  /** A state from its saved encoding, with this group's client configuration. */
  private restoredState(bytes: Uint8Array): ClientState {
    return savedState(bytes, this.state.clientConfig);
  }

  /**
   * The whole state as bytes, private keys included: the caller encrypts it at rest. With it
   * the latest transitions ({@link SAVED_TRAIL}), so fork choice survives a restart.
   */
  encode(): Uint8Array {
    const member = (m: GroupMember): CborValue => [m.user, m.device];
    const value: CborValue = [
      2,
      this.space,
      encodedState(this.state),
      this.history.toSaved(),
      this.epochStartedMs,
      this.sentInEpoch,
      this.recent.map((k) => Uint8Array.from(k, (c) => c.charCodeAt(0))),
      savedTransitions(this.trail).map((t) => [
        t.from.epoch,
        t.from.commitHash,
        t.base instanceof Uint8Array ? t.base : encodedState(t.base),
        member(t.committer),
        t.context,
        t.tie,
        t.own === undefined ? null : [t.own.added.map(member), t.own.removed.map(member)],
      ]),
    ];
    return encode(value);
  }

  /**
   * A group from {@link encode}'s bytes, with the client configuration re-attached.
   *
   * @throws CodecError when the bytes are not a saved group.
   */
  static decode(bytes: Uint8Array, o: GroupContextOptions): SpaceGroup {
    const v = decode(bytes, STATE_LIMITS);
    if (!Array.isArray(v) || v.length !== 8 || v[0] !== 2)
      throw new CodecError('wrong-type', 'saved group: header');
    const [, space, groupState, history, started, sent, recent, trail] = v as CborValue[];
    if (!(space instanceof Uint8Array) || !(groupState instanceof Uint8Array)) {
      throw new CodecError('wrong-type', 'saved group: fields');
    }
    if (typeof started !== 'number' || typeof sent !== 'number' || !Array.isArray(recent)) {
      throw new CodecError('wrong-type', 'saved group: counters');
    }
    const state = savedState(groupState, clientConfig(o.ed25519, MLS_RETAIN_EPOCHS));
    if (!equalBytes(state.groupContext.groupId, space))
      throw new CodecError('wrong-type', 'saved group: group id');
    const keys = (recent as CborValue[]).map((r) => {
      if (!(r instanceof Uint8Array)) throw new CodecError('wrong-type', 'saved group: recent');
      return bytesKey(r);
    });
    const g = new SpaceGroup(space as SpaceId, state, EpochHistory.fromSaved(history as CborValue), o, {
      ms: started,
      sent,
      recent: keys,
    });
    g.trail.push(...savedTrail(trail));
    return g;
  }
}
