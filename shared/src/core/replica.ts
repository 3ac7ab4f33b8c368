/**
 * One Space on one device: the acceptance pipeline (ARCHITECTURE.md section 4) in front of the
 * reducer (section 5) and the store (section 10).
 *
 * Every op, local or remote, enters through `accept(sealed)`:
 *   1 decode the envelope with limits → 2 open with the epoch's control key → decode the op →
 *   3 verify the device certificate and signature, open the readable content of a post,
 *     thread or edit with the epoch's content key when this device has it →
 *   4 causality (holdback queue) →
 *   5 membership at the op's epoch, no epoch regression → 6 authorization in the causal past →
 *   7 persist op + heads atomically, then apply.
 * Steps 1–3 run concurrently (they are the expensive, independent part); 4–6 run one op at a
 * time. Step 7 is a group commit: an op that passed 4–6 is applied at once (the next op's checks
 * need it) and joins a batch that is written in one storage transaction (`Storage.putOps`)
 * once the ops already queued behind it are through; its outcome (and `onAccepted`) is
 * reported only after that write, so nothing is reported that the store does not hold. When
 * the write fails, what can be stored is stored one op at a time, the state is rebuilt from
 * the store, and the rest is reported `failed` (or held as `store-failed` when it came out of
 * the holdback queue).
 */
import { type Aead, webCryptoAead } from '../ports/aead.js';
import type { Ed25519 } from '../ports/crypto.js';
import type { Clock, Rng } from '../ports/env.js';
import type { KeyProvider, MembershipView } from '../ports/keys.js';
import { type Storage, StorageError, type StoredOp } from '../ports/storage.js';
import { CodecError, SealError } from '../protocol/errors.js';
import {
  type AnyContent,
  type ContentKind,
  type ContentOp,
  type Contents,
  type DeviceCert,
  type Drafts,
  type EpochRef,
  type OpId,
  type OpKind,
  type SealedEnvelope,
  type SignedOp,
  type SpaceId,
  type TopicId,
  type UnsignedOp,
  MAX_CLOCK_SKEW_MS,
  MAX_HOLDBACK_OPS,
  OP_SIG_CONTEXT,
  OP_VERSION,
  bytesKey,
  canonicalDeps,
  compareBytes,
  concatBytes,
  contentAd,
  decodeContent,
  decodeOp,
  decodeSealed,
  encodeContent,
  encodeOp,
  encodeUnsigned,
  equalBytes,
  keyBytes,
  toHex,
  isContentKind,
  isContentOp,
  collabFlag,
  openContent,
  openContentSync,
  openWith,
  openWithSync,
  sealAd,
  sealContent,
  sealWith,
  splitDraft,
} from '../protocol/index.js';
import type { DeviceIdentity } from '../protocol/identity.js';
import { verifyDeviceCert } from '../protocol/identity.js';
import { sha256, topicId } from '../crypto/sha256.js';
import { HybridClock, compareHlc } from './hlc.js';
import { SignatureIndex } from './sigindex.js';
import { loadAutomerge, loadCollab } from './collab.js';
import { type CheckReason, SpaceState } from './state.js';
import {
  CheckpointError,
  column as checkpointColumn,
  columnBytes as checkpointColumnBytes,
  decodeCheckpoint,
  encodeCheckpoint,
  list as checkpointList,
} from './checkpoint.js';

export type RejectReason =
  | 'malformed' // not a well-formed sealed op (bad CBOR, wrong shapes, over limits)
  | 'wrong-space' // sealed for another topic, or an op of another Space
  | 'bad-seal' // the AEAD did not open with this epoch's key
  | 'bad-signature' // the device certificate or the op signature does not verify
  | 'epoch-regression' // a dep has a later epoch than the op
  | 'bad-clock' // the op's HLC is not after its deps'
  | CheckReason;

/**
 * `awaiting-epoch`: no key or membership for its epoch yet; `missing-deps`: a dep is unknown;
 * `clock-ahead`: its clock is too far in the future; `store-failed`: it was released from the
 * queue but the store refused the write (it is retried by `retryHeld`).
 */
export type BufferReason = 'awaiting-epoch' | 'missing-deps' | 'clock-ahead' | 'store-failed';

/** What `accept` decided. Only `accepted` changed the state. */
export type AcceptOutcome =
  | {
      readonly kind: 'accepted';
      readonly opId: OpId;
      readonly op: SignedOp;
      /**
       * The readable content of a post, thread or edit; `null` when this device does not have
       * the content key of its epoch (or the content is malformed); undefined for other kinds.
       */
      readonly content: AnyContent | null | undefined;
      readonly lateAfterRemoval: boolean;
    }
  | { readonly kind: 'duplicate'; readonly opId: OpId }
  | {
      readonly kind: 'buffered';
      readonly why: BufferReason;
      readonly opId: OpId;
      readonly missing: readonly OpId[];
    }
  | { readonly kind: 'rejected'; readonly reason: RejectReason; readonly detail: string; readonly opId: OpId }
  /** The store failed; nothing was applied and the op can be offered again. */
  | { readonly kind: 'failed'; readonly error: StorageError; readonly opId: OpId };

export type AcceptedEvent = Extract<AcceptOutcome, { kind: 'accepted' }>;

export interface ReplicaOptions {
  readonly space: SpaceId;
  readonly storage: Storage;
  readonly keys: KeyProvider;
  readonly membership: MembershipView;
  readonly ed25519: Ed25519;
  readonly clock: Clock;
  readonly rng: Rng;
  /** AES-GCM for seals; WebCrypto unless the host has a faster one. */
  readonly aead?: Aead;
  /** SHA-256 for OpIds; pure JS unless the host has a faster one. */
  readonly sha256?: (data: Uint8Array) => Uint8Array;
  /** Asked for deps this replica lacks (section 8, repair); called once per missing id. */
  readonly fetchMissing?: (ids: readonly OpId[]) => void;
  /** Told of every accepted op, including those released later from the holdback queue. */
  readonly onAccepted?: (ev: AcceptedEvent) => void;
  /** Told when the holdback queue overflowed and dropped its oldest op. */
  readonly onDropped?: (opId: OpId) => void;
  /** Ops. Bound of the holdback queue (missing deps, awaiting epoch, clock ahead together). */
  readonly maxHoldback?: number;
}

/**
 * Ops. A batch written at once (group commit) is at most this long: long enough that a store
 * pays one transaction for many ops, short enough that the first op of a batch is not reported
 * only after a whole window of others was verified (which left the verifying threads idle
 * while the batch was applied, then the applying thread idle while the next window verified).
 */
export const MAX_COMMIT_BATCH = 64;

/** An opened, verified op on its way through steps 4–7. */
interface Opened {
  readonly opId: OpId;
  readonly key: string;
  readonly sealed: Uint8Array;
  readonly plain: Uint8Array;
  readonly op: SignedOp;
  /** See `AcceptOutcome`; `contentPlain` is its encoding, kept in the store. */
  readonly content: AnyContent | null | undefined;
  readonly contentPlain: Uint8Array | undefined;
  readonly userKey: string;
  readonly deviceKey: string;
}

interface Held {
  readonly why: BufferReason;
  readonly sealed: Uint8Array;
  readonly opened: Opened | undefined;
  readonly missing: Set<string>;
}

export type WriteResult =
  | {
      readonly kind: 'written';
      readonly sealed: Uint8Array;
      readonly opId: OpId;
      readonly outcome: AcceptOutcome;
    }
  | { readonly kind: 'no-epoch-key'; readonly epoch: EpochRef };

/** An op applied and waiting for its batch's write (step 7). */
interface Staged {
  readonly x: Opened;
  readonly deps: readonly OpId[];
  readonly accepted: AcceptedEvent;
  /** Whether an `accept` call waits for it (else it was released from the holdback queue). */
  readonly direct: boolean;
  readonly done: (outcome: AcceptOutcome | Error) => void;
}

/** What steps 4–6 decided: an outcome now, or one once the op's batch is written. */
type Settled = AcceptOutcome | { readonly kind: 'staged'; readonly outcome: Promise<AcceptOutcome> };

/** How a replica's state was built from the store. */
export type Built =
  | {
      readonly from: 'checkpoint';
      /** Ops the checkpoint covered; the rest of `ops` were read and applied. */
      readonly covered: number;
      readonly ops: number;
    }
  | {
      readonly from: 'log';
      readonly ops: number;
      /** Why the Space's checkpoint was not used, when it has one. */
      readonly unusable?: CheckpointError;
    };

/** A checkpoint read back: the state it holds and what the replica keeps beside it. */
interface Restored {
  readonly state: SpaceState;
  readonly signatures: SignatureIndex;
  /** The heads' op indices, in the order the replica had them. */
  readonly heads: readonly number[];
  readonly count: number;
  readonly collab: boolean;
}

/** The meta key of a Space's checkpoint (see `SpaceReplica.checkpoint`). */
export function checkpointKey(space: SpaceId): string {
  return `replica/checkpoint/${toHex(space)}`;
}

export class SpaceReplica {
  private current = new SpaceState();
  readonly topic: TopicId;
  private readonly hlc: HybridClock;
  private signatures = new SignatureIndex();
  /** Ops applied and not yet written, in order; `pendingByKey` finds them by `bytesKey(opId)`. */
  private pending: Staged[] = [];
  private readonly pendingByKey = new Map<string, Staged>();
  private readonly held = new Map<string, Held>();
  private readonly waiting = new Map<string, Set<string>>();
  private readonly requested = new Set<string>();
  private readonly epochKeys = new Map<
    number,
    { commitHash: Uint8Array; key: Uint8Array; ad: Uint8Array }[]
  >();
  private readonly contentKeys = new Map<number, { commitHash: Uint8Array; key: Uint8Array }[]>();
  /** OpIds of the current heads. */
  private readonly headIds = new Map<number, OpId>();
  /**
   * Devices whose certificate verified (all of it: user, time and signature), by the first bytes
   * of the device key and then the whole key: an op's author is found without making a string of
   * its key for each op, and each device's id strings are made once.
   */
  private readonly certsOk = new Map<number, KnownDevice[]>();
  private readonly aead: Aead;
  private readonly hash: (data: Uint8Array) => Uint8Array;
  private lock: Promise<unknown> = Promise.resolve();
  private readonly maxHoldback: number;

  private constructor(private readonly o: ReplicaOptions) {
    this.topic = topicId(o.space);
    this.hlc = new HybridClock(o.clock);
    this.maxHoldback = o.maxHoldback ?? MAX_HOLDBACK_OPS;
    this.aead = o.aead ?? webCryptoAead();
    this.hash = o.sha256 ?? sha256;
  }

  /** Opens the replica and rebuilds its state from the ops already in the store. */
  static async open(options: ReplicaOptions): Promise<SpaceReplica> {
    const r = new SpaceReplica(options);
    await r.replay();
    return r;
  }

  /** The reduced state of every accepted op (ARCHITECTURE.md section 5). */
  get state(): SpaceState {
    return this.current;
  }

  /** How the state was last built from the store (at open, or after a failed write). */
  get built(): Built {
    return this.builtFrom;
  }

  private builtFrom: Built = { from: 'log', ops: 0 };
  /** Ops the last checkpoint written or read covers (0 when there is none). */
  private checkpointed = 0;

  /**
   * Builds the state anew from the store: at open, and after a failed write. From the Space's
   * checkpoint and the ops stored after it when there is a usable one, else from every op; both
   * give the same state (checkpoint.test.ts), the first without reading and applying the ops the
   * checkpoint covers.
   */
  private async replay(): Promise<void> {
    let unusable: CheckpointError | undefined;
    try {
      const start = await this.readCheckpoint();
      if (start !== undefined) {
        await this.rebuild(start);
        const stored = await this.o.storage.getHeads(this.o.space);
        const heads = this.currentHeads();
        if (stored.length !== heads.length || stored.some((h, i) => !equalBytes(h, heads[i] as OpId)))
          throw new CheckpointError(
            'mismatch',
            'the checkpoint and the ops after it do not give the stored heads',
          );
        for (let i = 0; i < start.count; i++) this.hlc.observe(this.current.table.hlc(i));
        this.checkpointed = start.count;
        this.builtFrom = { from: 'checkpoint', covered: start.count, ops: this.current.size };
        return;
      }
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      unusable = e;
    }
    await this.rebuild(undefined);
    this.checkpointed = 0;
    this.builtFrom = {
      from: 'log',
      ops: this.current.size,
      ...(unusable === undefined ? {} : { unusable }),
    };
  }

  /**
   * The Space's checkpoint as a starting state, or undefined when there is none.
   *
   * @throws CheckpointError when there is one this replica cannot use; StorageError.
   */
  private async readCheckpoint(): Promise<Restored | undefined> {
    const bytes = await this.o.storage.getMeta(checkpointKey(this.o.space));
    if (bytes === undefined) return undefined;
    const body = decodeCheckpoint(bytes);
    if (!equalBytes(body.space, this.o.space))
      throw new CheckpointError('mismatch', 'the checkpoint is of another Space');
    let restored: Restored;
    try {
      const f = checkpointList(body.state, 3);
      const { state, collab } = SpaceState.restore(f[0] ?? null);
      const n = state.size;
      if (n === 0 || n !== body.count)
        throw new CheckpointError('corrupt', 'the checkpoint count is not its ops');
      if (!equalBytes(body.lastOpId, keyBytes(state.table.ids[n - 1] as string)))
        throw new CheckpointError('corrupt', 'the checkpoint names another last op');
      const signatures = SignatureIndex.fromFingerprints(checkpointColumn(f[1], Uint32Array, 2 * n));
      const heads = checkpointList(f[2]).map((h) => {
        if (typeof h !== 'number' || !Number.isSafeInteger(h) || h < 0 || h >= n)
          throw new CheckpointError('corrupt', 'a checkpoint head out of range');
        return h;
      });
      restored = { state, signatures, heads, count: n, collab };
    } catch (e) {
      // A checkpoint that cannot be read, whatever the reason, is no worse than none: the log is
      // replayed instead.
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError('corrupt', `the checkpoint does not restore: ${String(e)}`);
    }
    if (restored.collab) await loadAutomerge();
    return restored;
  }

  /**
   * Sets the state to `start` (or empty) and applies the ops stored after it, in store order.
   *
   * @throws CheckpointError `mismatch` when the store's op at the checkpoint's end is not the one
   * it names; StorageError `corrupt` when a stored op precedes one of its deps.
   */
  private async rebuild(start: Restored | undefined): Promise<void> {
    this.current = start?.state ?? new SpaceState();
    this.signatures = start?.signatures ?? new SignatureIndex();
    this.headIds.clear();
    const table = this.current.table;
    for (const h of start?.heads ?? []) this.headIds.set(h, keyBytes(table.ids[h] as string) as OpId);
    // From the checkpoint's last op, to check that the store holds it there.
    const from = start === undefined ? 0 : start.count - 1;
    let boundary = start !== undefined;
    for await (const stored of this.o.storage.listOps(this.o.space, from)) {
      if (boundary) {
        if (table.indexOf(bytesKey(stored.opId)) !== from)
          throw new CheckpointError('mismatch', 'the store does not hold the checkpoint’s ops where it says');
        boundary = false;
        continue;
      }
      const op = decodeOp(stored.op, { views: true });
      let content: AnyContent | null | undefined;
      if (isContentOp(op)) {
        content =
          stored.content === undefined || stored.content === null
            ? null
            : decodeContent(op.kind, stored.content, collabFlag(op), { views: true });
        if (content !== null && collabFlag(op)) await loadAutomerge();
      }
      const deps = op.deps.map((d) => this.current.table.indexOf(bytesKey(d)));
      if (deps.some((d) => d === undefined)) {
        throw new StorageError('corrupt', 'a stored op precedes one of its deps');
      }
      const depIdx = deps as number[];
      const past = this.current.pastOfDeps(depIdx);
      this.applyChecked(
        {
          opId: stored.opId,
          key: bytesKey(stored.opId),
          sealed: stored.sealed,
          plain: stored.op,
          op,
          content,
          contentPlain: stored.content ?? undefined,
          userKey: bytesKey(op.cert.user),
          deviceKey: bytesKey(op.author),
        },
        depIdx,
        past,
      );
    }
    if (boundary)
      throw new CheckpointError('mismatch', 'the store holds fewer ops than the checkpoint covers');
  }

  /** Ops accepted since the last checkpoint was written (or read at open). */
  get sinceCheckpoint(): number {
    return this.current.size - this.checkpointed;
  }

  /**
   * Saves the state as the Space's checkpoint, so that the next open applies only the ops
   * stored after it. Runs in turn with the pipeline, after the ops applied so far are written,
   * so it covers exactly the ops the store holds. Resolves whether one was written (not when the
   * last one covers every op already).
   *
   * @throws StorageError when the store refuses it (the previous checkpoint stays, and is used).
   */
  checkpoint(): Promise<boolean> {
    return this.serially(async () => {
      await this.flush();
      const n = this.current.size;
      if (n === 0 || n === this.checkpointed) return false;
      const bytes = encodeCheckpoint({
        space: this.o.space,
        count: n,
        lastOpId: keyBytes(this.current.table.ids[n - 1] as string),
        state: [
          this.current.snapshot(),
          checkpointColumnBytes(this.signatures.fingerprints(n), 2 * n),
          [...this.headIds.keys()],
        ],
      });
      await this.o.storage.putMeta(checkpointKey(this.o.space), bytes);
      this.checkpointed = n;
      return true;
    });
  }

  /** The current heads (ops no accepted op depends on), sorted. */
  currentHeads(): OpId[] {
    return canonicalDeps([...this.headIds.values()]);
  }

  /** Ops waiting in the holdback queue, by reason. */
  holdback(): { readonly size: number; readonly byReason: Readonly<Record<BufferReason, number>> } {
    const byReason = { 'awaiting-epoch': 0, 'missing-deps': 0, 'clock-ahead': 0, 'store-failed': 0 };
    for (const h of this.held.values()) byReason[h.why]++;
    return { size: this.held.size, byReason };
  }

  has(opId: OpId): boolean {
    return this.state.table.indexOf(bytesKey(opId)) !== undefined;
  }

  /**
   * Runs one sealed op through the pipeline. Never throws for bad input.
   *
   * The hot path is written with plain functions and `then` rather than `async` functions: an
   * async call allocates its whole frame on the heap, and at thousands of ops a second those
   * frames were a large share of what the garbage collector had to sweep.
   */
  accept(sealed: Uint8Array): Promise<AcceptOutcome> {
    try {
      const opId = this.hash(sealed) as OpId;
      const key = bytesKey(opId);
      if (this.state.table.indexOf(key) !== undefined) return Promise.resolve({ kind: 'duplicate', opId });
      const prior = this.held.get(key);
      if (prior !== undefined) {
        return Promise.resolve({ kind: 'buffered', why: prior.why, opId, missing: missingOf(prior) });
      }
      // Steps 1–3 start now and run alongside other ops'; steps 4–7 take ops in call order, so
      // a feed that arrives in causal order is accepted without detours through the holdback queue.
      const opened = this.openAndVerify(sealed, opId, key);
      const settled = this.serially(() =>
        opened.then((o): Settled | Promise<Settled> => ('kind' in o ? o : this.settle(o))),
      );
      // Awaited outside the lock: the batch is written by a task queued behind this one.
      return settled.then((s) => (s.kind === 'staged' ? s.outcome : s));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Steps 1–3: decode, open, verify. Pure apart from caches; runs concurrently. */
  private openAndVerify(sealed: Uint8Array, opId: OpId, key: string): Promise<Opened | AcceptOutcome> {
    let env: SealedEnvelope;
    try {
      env = decodeSealed(sealed);
    } catch (e) {
      if (e instanceof CodecError || e instanceof SealError) {
        return Promise.resolve(rejected(opId, 'malformed', e.message));
      }
      throw e;
    }
    if (!equalBytes(env.topic, this.topic)) {
      return Promise.resolve(rejected(opId, 'wrong-space', 'sealed for another topic'));
    }
    const cached = this.cachedEpochKey(env.epoch);
    if (cached !== undefined) return this.openWithKey(sealed, opId, key, env, cached);
    return this.epochKey(env.epoch).then((epochKey) =>
      epochKey === undefined
        ? this.hold(key, { why: 'awaiting-epoch', sealed, opened: undefined, missing: new Set() }, opId)
        : this.openWithKey(sealed, opId, key, env, epochKey),
    );
  }

  /** Step 2 with the epoch key: the signed op's bytes, then step 3. */
  private openWithKey(
    sealed: Uint8Array,
    opId: OpId,
    key: string,
    env: SealedEnvelope,
    epochKey: { key: Uint8Array; ad: Uint8Array },
  ): Promise<Opened | AcceptOutcome> {
    const sync = this.aead.decryptSync;
    if (sync === undefined) {
      return openWith(this.aead, env, epochKey.key, epochKey.ad).then(
        (plain) => this.verifyOpened(sealed, opId, key, env, plain),
        (e: unknown) => {
          if (e instanceof SealError) return rejected(opId, 'bad-seal', e.message);
          throw e;
        },
      );
    }
    let plain: Uint8Array;
    try {
      plain = openWithSync(sync, env, epochKey.key, epochKey.ad);
    } catch (e) {
      if (e instanceof SealError) return Promise.resolve(rejected(opId, 'bad-seal', e.message));
      throw e;
    }
    return this.verifyOpened(sealed, opId, key, env, plain);
  }

  /** Step 3: decode the signed op and check its device certificate and signature. */
  private verifyOpened(
    sealed: Uint8Array,
    opId: OpId,
    key: string,
    env: SealedEnvelope,
    plain: Uint8Array,
  ): Promise<Opened | AcceptOutcome> {
    let op: SignedOp;
    try {
      op = decodeOp(plain, { views: true });
    } catch (e) {
      if (e instanceof CodecError) return Promise.resolve(rejected(opId, 'malformed', e.message));
      throw e;
    }
    if (!equalBytes(op.space, this.o.space)) {
      return Promise.resolve(rejected(opId, 'wrong-space', 'an op of another Space'));
    }
    if (op.epoch.epoch !== env.epoch.epoch || !equalBytes(op.epoch.commitHash, env.epoch.commitHash)) {
      return Promise.resolve(rejected(opId, 'malformed', 'the op and its envelope name different epochs'));
    }
    const known = this.knownDevice(op.author);
    if (known !== undefined && sameCert(known.cert, op.cert)) {
      const { deviceKey, userKey } = known;
      return this.checkSignature({ opId, key, sealed, plain, op, deviceKey, userKey });
    }
    return verifyDeviceCert(this.o.ed25519, op.author, op.cert).then((ok) => {
      if (!ok) return rejected(opId, 'bad-signature', 'the device certificate does not verify');
      const { deviceKey, userKey } = this.rememberDevice(op.author, op.cert);
      return this.checkSignature({ opId, key, sealed, plain, op, deviceKey, userKey });
    });
  }

  private knownDevice(device: Uint8Array): KnownDevice | undefined {
    const bucket = this.certsOk.get(keyPrefix(device));
    if (bucket !== undefined) for (const d of bucket) if (equalBytes(d.device, device)) return d;
    return undefined;
  }

  /** Records the certificate that verified for `device`, in place of any earlier one. */
  private rememberDevice(device: Uint8Array, cert: DeviceCert): KnownDevice {
    const d: KnownDevice = {
      device: device.slice(),
      cert,
      deviceKey: bytesKey(device),
      userKey: bytesKey(cert.user),
    };
    const prefix = keyPrefix(device);
    const others = (this.certsOk.get(prefix) ?? []).filter((x) => !equalBytes(x.device, device));
    this.certsOk.set(prefix, [...others, d]);
    return d;
  }

  /** The op's own signature, by its device key (whose certificate verified). */
  private checkSignature(v: Verified): Promise<Opened | AcceptOutcome> {
    const ed = this.o.ed25519;
    const checked =
      ed.verifyParts === undefined
        ? ed.verify(v.op.author, unsignedBytes(v.plain), v.op.sig)
        : ed.verifyParts(v.op.author, unsignedParts(v.plain), v.op.sig);
    return checked.then((ok) =>
      ok ? this.withContent(v) : rejected(v.opId, 'bad-signature', 'the op signature does not verify'),
    );
  }

  /** A verified op with its content opened (where this device can open it). */
  private withContent(v: Verified): Opened | Promise<Opened> {
    const { op } = v;
    if (!isContentOp(op)) return opened(v, undefined, undefined);
    const atOnce = this.openContentSync(op);
    if (atOnce === undefined) return this.openContentOf(op).then((plain) => this.readContent(v, op, plain));
    return this.readContent(v, op, atOnce ?? undefined);
  }

  /** Decodes a content op's opened content; `undefined` when this device cannot open it. */
  private readContent(
    v: Verified,
    op: ContentOp,
    contentPlain: Uint8Array | undefined,
  ): Opened | Promise<Opened> {
    if (contentPlain === undefined) return opened(v, null, undefined);
    let content: AnyContent | null;
    try {
      content = decodeContent(op.kind, contentPlain, collabFlag(op));
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      // Malformed content from a member who has the key: unreadable for everyone who opens
      // it, like content sealed to a key this device lacks. The op is still accepted on what
      // every member can check, so members with and without the key agree on it.
      return opened(v, null, undefined);
    }
    // Automerge is loaded on the first collaborative body, before the reducer needs it.
    if (collabFlag(op)) return loadAutomerge().then(() => collabChecked(v, op, content, contentPlain));
    return collabChecked(v, op, content, contentPlain);
  }

  /**
   * The decrypted content of a content op when it can be had at once (a synchronous AES-GCM
   * and the content key cached): `undefined` says "ask `openContentOf`", `null` "cannot open".
   */
  private openContentSync(op: ContentOp): Uint8Array | null | undefined {
    const sync = this.aead.decryptSync;
    if (sync === undefined) return undefined;
    const key = this.cachedContentKey(op.epoch);
    if (key === undefined) return undefined;
    try {
      return openContentSync(sync, key, contentAd(op.space, op.epoch, op.kind, op.author), op.body.content);
    } catch (e) {
      if (e instanceof SealError) return null;
      throw e;
    }
  }

  /** The decrypted content of a content op, or undefined when this device cannot open it. */
  private async openContentOf(op: ContentOp): Promise<Uint8Array | undefined> {
    const key = await this.contentKey(op.epoch);
    if (key === undefined) return undefined;
    try {
      return await openContent(
        this.aead,
        key,
        contentAd(op.space, op.epoch, op.kind, op.author),
        op.body.content,
      );
    } catch (e) {
      if (e instanceof SealError) return undefined;
      throw e;
    }
  }

  private cachedContentKey(epoch: EpochRef): Uint8Array | undefined {
    const known = this.contentKeys.get(epoch.epoch);
    if (known !== undefined)
      for (const k of known) if (equalBytes(k.commitHash, epoch.commitHash)) return k.key;
    return undefined;
  }

  private async contentKey(epoch: EpochRef): Promise<Uint8Array | undefined> {
    const cached = this.cachedContentKey(epoch);
    if (cached !== undefined) return cached;
    const key = await this.o.keys.contentKey(this.o.space, epoch);
    if (key === undefined) return undefined;
    const entry = { commitHash: epoch.commitHash, key };
    const known = this.contentKeys.get(epoch.epoch);
    if (known === undefined) this.contentKeys.set(epoch.epoch, [entry]);
    else known.push(entry);
    return key;
  }

  /**
   * Whether this signed op was accepted already under another seal (the same op sealed again
   * has other sealed bytes, so another OpId). One Ed25519 signature cannot verify for two
   * different messages under one key, so an equal signature on a verified op means the same
   * signed op: the same answer as comparing hashes of the signed bytes.
   */
  private async resealed(op: SignedOp, candidates: readonly number[]): Promise<boolean> {
    for (const c of candidates) {
      const key = this.state.table.ids[c] as string;
      const stored =
        this.pendingByKey.get(key)?.x.plain ??
        (await this.o.storage.getOp(this.o.space, keyBytes(key) as OpId))?.op;
      if (stored !== undefined && equalBytes(stored.subarray(stored.length - 64), op.sig)) return true;
    }
    return false;
  }

  private cachedEpochKey(epoch: EpochRef): { key: Uint8Array; ad: Uint8Array } | undefined {
    const known = this.epochKeys.get(epoch.epoch);
    if (known !== undefined) for (const k of known) if (equalBytes(k.commitHash, epoch.commitHash)) return k;
    return undefined;
  }

  private async epochKey(epoch: EpochRef): Promise<{ key: Uint8Array; ad: Uint8Array } | undefined> {
    const known = this.epochKeys.get(epoch.epoch);
    for (const k of known ?? []) if (equalBytes(k.commitHash, epoch.commitHash)) return k;
    const key = await this.o.keys.epochKey(this.o.space, epoch);
    if (key === undefined) return undefined;
    const entry = { commitHash: epoch.commitHash, key, ad: sealAd(this.topic, epoch) };
    if (known === undefined) this.epochKeys.set(epoch.epoch, [entry]);
    else known.push(entry);
    return entry;
  }

  private serially<T>(f: () => Promise<T>): Promise<T> {
    const run = this.lock.then(f, f);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Steps 4–7 for one opened op, then for everything its acceptance releases. */
  private settle(first: Opened): Settled | Promise<Settled> {
    const settled = this.settleOne(first, true);
    return settled instanceof Promise
      ? settled.then((s) => this.afterSettle(first, s))
      : this.afterSettle(first, settled);
  }

  private afterSettle(first: Opened, settled: Settled): Settled | Promise<Settled> {
    if (settled.kind !== 'staged' || !this.waiting.has(first.key)) {
      this.requested.delete(first.key);
      return settled;
    }
    return this.settleReleased(first.key).then(() => settled);
  }

  /** Steps 4–7 for the ops that waited for `key`, and for those each of them releases. */
  private async settleReleased(key: string): Promise<void> {
    const ready: Opened[] = [];
    this.release(key, ready);
    for (let next = ready.shift(); next !== undefined; next = ready.shift()) {
      const o = await this.settleOne(next, false);
      if (o.kind === 'staged') this.release(next.key, ready);
    }
  }

  private release(key: string, ready: Opened[]): void {
    const waiters = this.waiting.get(key);
    this.requested.delete(key);
    if (waiters === undefined) return;
    this.waiting.delete(key);
    for (const w of waiters) {
      const h = this.held.get(w);
      if (h?.opened === undefined) continue;
      h.missing.delete(key);
      if (h.missing.size === 0) {
        this.held.delete(w);
        ready.push(h.opened);
      }
    }
  }

  private settleOne(x: Opened, direct: boolean): Settled | Promise<Settled> {
    const { op, opId } = x;
    if (this.state.table.indexOf(x.key) !== undefined) return { kind: 'duplicate', opId };
    const sameSig = this.signatures.candidates(op.sig);
    if (sameSig.length === 0) return this.stage(x, direct);
    return this.resealed(op, sameSig).then((again) =>
      again ? { kind: 'duplicate' as const, opId } : this.stage(x, direct),
    );
  }

  /** Steps 4–7 for an op that is not a duplicate. */
  private stage(x: Opened, direct: boolean): Settled | Promise<Settled> {
    const { op, opId } = x;
    const table = this.state.table;

    // 4. Causality.
    const deps: number[] = [];
    let missing: Set<string> | undefined;
    for (const d of op.deps) {
      const dk = bytesKey(d);
      const i = table.indexOf(dk);
      if (i === undefined) (missing ??= new Set()).add(dk);
      else deps.push(i);
    }
    if (missing !== undefined) {
      for (const m of missing) {
        let set = this.waiting.get(m);
        if (set === undefined) this.waiting.set(m, (set = new Set()));
        set.add(x.key);
      }
      const outcome = this.hold(x.key, { why: 'missing-deps', sealed: x.sealed, opened: x, missing }, opId);
      const ask = [...missing].filter((m) => !this.requested.has(m));
      for (const m of ask) this.requested.add(m);
      if (ask.length > 0) this.o.fetchMissing?.(ask.map((m) => keyBytes(m) as OpId));
      return outcome;
    }

    // 5. Epochs and membership; the HLC must follow the deps'.
    for (const d of deps) {
      if (table.epoch(d) > op.epoch.epoch)
        return rejected(opId, 'epoch-regression', 'a dep has a later epoch than the op');
      if (compareHlc(table.hlc(d), op.hlc) >= 0) {
        return rejected(opId, 'bad-clock', "the op's clock is not after its deps'");
      }
    }
    if (op.hlc.wallMs > this.o.clock.now() + MAX_CLOCK_SKEW_MS) {
      return this.hold(x.key, { why: 'clock-ahead', sealed: x.sealed, opened: x, missing: new Set() }, opId);
    }
    const member = this.o.membership.memberAt(this.o.space, op.epoch, op.cert.user, op.author);
    if (member === 'not-member')
      return rejected(opId, 'not-member', 'the author was not a member in this epoch');
    if (member === 'unknown-epoch') {
      return this.hold(
        x.key,
        { why: 'awaiting-epoch', sealed: x.sealed, opened: undefined, missing: new Set() },
        opId,
      );
    }

    // 6. Authorization in the causal past.
    const past = this.state.pastOfDeps(deps);
    const refused = this.state.check({
      op,
      content: x.content,
      opId,
      opKey: x.key,
      userKey: x.userKey,
      deviceKey: x.deviceKey,
      deps,
      past,
    });
    if (refused !== undefined) return rejected(opId, refused.reason, refused.detail);

    // 7. Apply, and write with the batch (group commit); reported once written.
    const { late } = this.applyChecked(x, deps, past);
    const accepted: AcceptedEvent = {
      kind: 'accepted',
      opId,
      op,
      content: x.content,
      lateAfterRemoval: late,
    };
    let done: (outcome: AcceptOutcome | Error) => void = () => undefined;
    const outcome = new Promise<AcceptOutcome>((resolve, reject) => {
      done = (o) => {
        if (o instanceof Error) reject(o);
        else resolve(o);
      };
    });
    // Released ops have no caller: their rejection (a throwing onAccepted) must not go unhandled.
    if (!direct) outcome.catch(() => undefined);
    const staged: Staged = { x, deps: op.deps, accepted, direct, done };
    if (this.pending.length === 0) {
      // Its failures are reported to each op's caller; the lock's promise has nothing more.
      this.serially(() => this.flush()).catch(() => undefined);
    }
    this.pending.push(staged);
    this.pendingByKey.set(x.key, staged);
    const result: Settled = { kind: 'staged', outcome };
    if (this.pending.length >= MAX_COMMIT_BATCH) return this.flush().then(() => result);
    return result;
  }

  /**
   * Writes the pending batch in one transaction, then reports each op's outcome in order.
   * Runs under the lock, so no op is checked against a state the store may not get.
   */
  private async flush(): Promise<void> {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let written = batch.length;
    try {
      await this.o.storage.putOps(this.o.space, batch.map(storedOf), this.currentHeads());
    } catch (e) {
      const error = e instanceof StorageError ? e : new StorageError('io', 'the store failed', { cause: e });
      written = await this.writeOneByOne(batch);
      try {
        await this.replay();
      } catch {
        // The store cannot be read either (closed): every later write fails the same way, and
        // the replica is reopened from the store when it is back.
      }
      for (const b of batch.slice(written)) {
        if (!b.direct) {
          const held = {
            why: 'store-failed' as const,
            sealed: b.x.sealed,
            opened: b.x,
            missing: new Set<string>(),
          };
          this.hold(b.x.key, held, b.x.opId);
        }
        b.done({ kind: 'failed', error, opId: b.x.opId });
      }
    }
    this.pendingByKey.clear();
    for (const b of batch.slice(0, written)) {
      try {
        this.o.onAccepted?.(b.accepted);
        b.done(b.accepted);
      } catch (e) {
        b.done(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  /**
   * After a batch's write failed: writes its ops one at a time, in order, up to the first that
   * fails, each with the heads as they were after it. Returns how many were written.
   */
  private async writeOneByOne(batch: readonly Staged[]): Promise<number> {
    let heads: OpId[];
    try {
      heads = await this.o.storage.getHeads(this.o.space);
    } catch {
      return 0;
    }
    let written = 0;
    for (const b of batch) {
      const gone = new Set(b.deps.map(bytesKey));
      heads = [b.x.opId, ...heads.filter((h) => !gone.has(bytesKey(h)))];
      try {
        await this.o.storage.putOp(this.o.space, storedOf(b), canonicalDeps(heads));
      } catch {
        break;
      }
      written++;
    }
    return written;
  }

  private applyChecked(
    x: Opened,
    deps: number[],
    past: ReturnType<SpaceState['pastOfDeps']>,
  ): { late: boolean } {
    const { idx, late } = this.state.apply({
      op: x.op,
      content: x.content,
      opId: x.opId,
      opKey: x.key,
      userKey: x.userKey,
      deviceKey: x.deviceKey,
      deps,
      past,
    });
    for (const d of deps) this.headIds.delete(d);
    this.headIds.set(idx, x.opId);
    this.signatures.add(x.op.sig, idx);
    this.hlc.observe(x.op.hlc);
    return { late };
  }

  private hold(key: string, h: Held, opId: OpId): AcceptOutcome {
    this.held.set(key, h);
    while (this.held.size > this.maxHoldback) {
      const oldest = this.held.keys().next().value as string;
      this.held.delete(oldest);
      this.o.onDropped?.(keyBytes(oldest) as OpId);
    }
    return { kind: 'buffered', why: h.why, opId, missing: missingOf(h) };
  }

  /**
   * Offers again the ops that waited for an epoch key or membership (call when the MLS layer
   * learned a new epoch) and those whose clock was ahead (call now and then).
   */
  async retryHeld(): Promise<AcceptOutcome[]> {
    const now = this.o.clock.now();
    const again: Held[] = [];
    for (const [k, h] of this.held) {
      const due =
        h.why === 'awaiting-epoch' ||
        h.why === 'store-failed' ||
        (h.why === 'clock-ahead' &&
          h.opened !== undefined &&
          h.opened.op.hlc.wallMs <= now + MAX_CLOCK_SKEW_MS);
      if (due) {
        this.held.delete(k);
        again.push(h);
      }
    }
    // All offered at once, in order: they settle one by one and are written in one batch.
    return Promise.all(again.map((h) => this.accept(h.sealed)));
  }

  /**
   * Writes a new op as `author` at `epoch`: stamps deps and clock, signs, seals, and runs it
   * through the same pipeline as everyone else's ops.
   */
  async write<K extends OpKind>(
    author: DeviceIdentity,
    epoch: EpochRef,
    kind: K,
    draft: Drafts[K],
  ): Promise<WriteResult> {
    const epochKey = await this.epochKey(epoch);
    if (epochKey === undefined) return { kind: 'no-epoch-key', epoch };
    const split = splitDraft(kind, draft);
    let body = split.body;
    if (split.content !== undefined && isContentKind(kind)) {
      const contentKey = await this.contentKey(epoch);
      if (contentKey === undefined) return { kind: 'no-epoch-key', epoch };
      const sealedContent = await sealContent(
        this.aead,
        contentKey,
        contentAd(this.o.space, epoch, kind, author.device),
        encodeContent<ContentKind>(kind, split.content),
        this.o.rng.randomBytes(12),
      );
      body = { ...body, content: sealedContent };
    }
    const sealed = await this.serially(async () => {
      const unsigned = {
        v: OP_VERSION,
        space: this.o.space,
        kind,
        body,
        deps: kind === 'CreateSpace' ? [] : this.currentHeads(),
        epoch,
        hlc: this.hlc.tick(),
        author: author.device,
        cert: author.cert,
      } as UnsignedOp;
      const sig = await author.deviceKey.sign(encodeUnsigned(unsigned));
      const opBytes = encodeOp({ ...unsigned, sig });
      return sealWith(this.aead, opBytes, this.topic, epoch, epochKey.key, this.o.rng.randomBytes(12));
    });
    const outcome = await this.accept(sealed);
    return { kind: 'written', sealed, opId: this.hash(sealed) as OpId, outcome };
  }

  /** The sealed bytes of an accepted op (what sync serves), from the store. */
  async sealedOf(opId: OpId): Promise<Uint8Array | undefined> {
    return (
      this.pendingByKey.get(bytesKey(opId))?.x.sealed ??
      (await this.o.storage.getOp(this.o.space, opId))?.sealed
    );
  }

  /** The signed op bytes of every audit-log entry: a bundle anyone can verify (section 5). */
  async auditBundle(): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (const e of this.state.auditLog()) {
      const op =
        this.pendingByKey.get(bytesKey(e.opId))?.x.plain ??
        (await this.o.storage.getOp(this.o.space, e.opId as OpId))?.op;
      if (op !== undefined) out.push(op);
    }
    return out;
  }
}

function storedOf(b: Staged): StoredOp {
  return { opId: b.x.opId, sealed: b.x.sealed, op: b.x.plain, content: b.x.contentPlain ?? null };
}

function missingOf(h: Held): OpId[] {
  return [...h.missing].map((m) => keyBytes(m) as OpId).sort(compareBytes);
}

/**
 * The signed bytes of an op, cut from its canonical encoding: the 10-item array minus its last
 * item (the 64-byte signature, `58 40` + 64 bytes), re-headed as a 9-item array.
 */
export function unsignedBytes(plain: Uint8Array): Uint8Array {
  return concatBytes(UNSIGNED_HEAD, plain.subarray(1, plain.length - 66));
}

/** What `unsignedBytes` joins, without joining it: the context and array head, then the fields. */
function unsignedParts(plain: Uint8Array): readonly Uint8Array[] {
  return [UNSIGNED_HEAD, plain.subarray(1, plain.length - 66)];
}

/** The signature context and the 9-item array head that begin an op's signed bytes. */
const UNSIGNED_HEAD = concatBytes(OP_SIG_CONTEXT, new Uint8Array([0x89]));

/** A device whose certificate verified, with its key and its user's key as `bytesKey` strings. */
interface KnownDevice {
  readonly device: Uint8Array;
  readonly cert: DeviceCert;
  readonly deviceKey: string;
  readonly userKey: string;
}

/**
 * The first two bytes of a key, as a small integer: a map key that costs no allocation. Devices
 * whose keys share them share a bucket and are told apart by the whole key.
 */
function keyPrefix(key: Uint8Array): number {
  return (key[0] ?? 0) | ((key[1] ?? 0) << 8);
}

/** An op whose signature verified, before its content is opened. */
interface Verified {
  readonly opId: OpId;
  readonly key: string;
  readonly sealed: Uint8Array;
  readonly plain: Uint8Array;
  readonly op: SignedOp;
  readonly deviceKey: string;
  readonly userKey: string;
}

function opened(
  v: Verified,
  content: AnyContent | null | undefined,
  contentPlain: Uint8Array | undefined,
): Opened {
  return {
    opId: v.opId,
    key: v.key,
    sealed: v.sealed,
    plain: v.plain,
    op: v.op,
    content,
    contentPlain,
    userKey: v.userKey,
    deviceKey: v.deviceKey,
  };
}

/** A collaborative post's creation must load, or there is nothing to edit or show. */
function collabChecked(v: Verified, op: ContentOp, content: AnyContent, contentPlain: Uint8Array): Opened {
  const creation = op.kind === 'CreatePost' ? (content as Contents['CreatePost']).collab : null;
  if (creation !== null && !loadCollab(creation).ok) return opened(v, null, undefined);
  return opened(v, content, contentPlain);
}

function sameCert(a: DeviceCert, b: DeviceCert): boolean {
  return a.createdMs === b.createdMs && equalBytes(a.user, b.user) && equalBytes(a.sig, b.sig);
}

function rejected(opId: OpId, reason: RejectReason, detail: string): AcceptOutcome {
  return { kind: 'rejected', reason, detail, opId };
}
