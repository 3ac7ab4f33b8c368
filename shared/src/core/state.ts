/**
 * The reducer (ARCHITECTURE.md section 5): the state of one Space as a function of its set of
 * accepted ops. It is incremental — each op is applied once, in acceptance order — and every
 * rule is a function of the *set* (order keys, causal pasts, add-wins sets), so any two
 * replicas that accepted the same ops hold the same state whatever the order they arrived
 * in. `canonicalState()` encodes that state to bytes for comparison.
 *
 * `check` decides whether an op is authorized, looking only at its causal past, and is
 * called before `apply`; `apply` never refuses.
 */
import { type CborValue, encode } from '../protocol/cbor.js';
import { CodecError } from '../protocol/errors.js';
import {
  type AnyContent,
  BODY_CODECS,
  type Bodies,
  type Contents,
  KIND_CODES,
  OP_KINDS,
} from '../protocol/op.js';
import {
  type BlobRef,
  type DeviceId,
  type EpochRef,
  type OpKind,
  type Role,
  type SignedOp,
  type UserId,
  blobWire,
  bytesKey,
  keyBytes,
} from '../protocol/index.js';
import {
  type AuthState,
  type ControlPast,
  type ControlKind,
  type ControlRecord,
  ControlPasts,
  RANK,
  type Rank,
  computeAuth,
  extendAuth,
  isControlKind,
} from './control.js';
import { FLAG_LATE, OpTable } from './optable.js';
import { below, bin, bool, column, columnBytes, corrupt, int, list, nullable, str } from './checkpoint.js';
import { type CollabDoc, applyCollabChange, collabChangeInfo, collabText, loadCollab } from './collab.js';

/** Why an op was refused by the reducer's checks. */
export type CheckReason =
  | 'invalid' // structurally valid but impossible (a second genesis, an op before the genesis)
  | 'unauthorized' // the author's role in the op's causal past does not allow it
  | 'muted' // the author is muted or timed out at the op's time
  | 'banned' // the author is banned in the op's causal past
  | 'not-member' // the author's removal is in the op's causal past but the op claims an older epoch
  | 'invalid-target' // the post, thread, channel or invite it acts on is not in its causal past
  | 'duplicate-id'; // it re-creates an id that already exists in its causal past

export interface CheckResult {
  readonly reason: CheckReason;
  readonly detail: string;
}

interface PostCreate {
  readonly idx: number;
  readonly user: number;
  readonly channel: string;
  readonly thread: string | null;
  readonly parent: string | null;
  readonly text: string;
  readonly body: BlobRef | null;
  readonly attachments: readonly BlobRef[];
  /** The creation change of a collaborative post whose content this device opened. */
  readonly collab: Uint8Array | null;
  /** Whether the post is collaborative (known to every member, readable or not). */
  readonly isCollab: boolean;
  /** Sealed under a content key this device does not have (or malformed): nothing to show. */
  readonly locked: boolean;
}

interface PostEdit {
  readonly idx: number;
  readonly user: number;
  readonly text: string | null;
  readonly change: Uint8Array | null;
}

interface PostDelete {
  readonly idx: number;
  readonly user: number;
  readonly reason: string;
}

interface PostRec {
  creates: PostCreate[];
  edits: PostEdit[] | undefined;
  deletes: PostDelete[] | undefined;
  doc: { doc: CollabDoc; applied: number; create: number } | undefined;
  /** For collaborative posts: Automerge change hash → the ops that carried it. */
  changes: Map<string, number[]> | undefined;
}

interface ThreadCreate {
  readonly idx: number;
  readonly user: number;
  readonly channel: string;
  readonly title: string;
  readonly root: string | null;
  readonly locked: boolean;
}

/** A post as a reader sees it. */
export interface PostView {
  readonly postId: Uint8Array;
  readonly opId: Uint8Array;
  readonly channel: Uint8Array;
  readonly thread: Uint8Array | null;
  readonly parent: Uint8Array | null;
  readonly author: UserId;
  readonly wallMs: number;
  /** The current text (the last valid edit, or the merged collaborative document). */
  readonly text: string;
  readonly body: BlobRef | null;
  readonly attachments: readonly BlobRef[];
  readonly collab: boolean;
  /** Earlier texts, oldest first, then the current one: one entry per version. */
  readonly history: readonly { readonly opId: Uint8Array; readonly text: string; readonly wallMs: number }[];
  readonly edited: boolean;
  readonly deleted: boolean;
  /** Who deleted it (the author or a moderator), when deleted. */
  readonly deletedBy: UserId | null;
  /** Written before its author's removal but first seen by the remover after it (section 4 step 5). */
  readonly lateAfterRemoval: boolean;
  /**
   * Its content is sealed under a key this device does not have: history from before this
   * device's user joined a Space that hides it from new members. Text and attachments are empty.
   */
  readonly locked: boolean;
}

export interface ThreadView {
  readonly threadId: Uint8Array;
  readonly channel: Uint8Array;
  readonly title: string;
  readonly root: Uint8Array | null;
  readonly author: UserId;
  readonly wallMs: number;
  readonly lateAfterRemoval: boolean;
  /** The title is sealed under a key this device does not have (see `PostView.locked`); empty. */
  readonly locked: boolean;
}

export interface ChannelView {
  readonly channelId: Uint8Array;
  readonly name: string;
  readonly topic: string;
  readonly type: 'chat' | 'forum';
  readonly archived: boolean;
}

export interface AuditEntry {
  readonly opId: Uint8Array;
  readonly kind: OpKind;
  readonly author: UserId;
  readonly target: UserId | null;
  readonly reason: string;
  readonly epoch: EpochRef;
  readonly wallMs: number;
  readonly sig: Uint8Array;
}

export interface MemberRoleView {
  readonly user: UserId;
  readonly roles: readonly Role[];
}

export interface ModerationView {
  readonly user: UserId;
  readonly muted: { readonly untilMs: number | null; readonly kind: 'Mute' | 'Timeout' } | null;
  readonly banned: boolean;
}

const NO_ATTACHMENTS: readonly BlobRef[] = Object.freeze([]);
const CONTENT_KINDS = new Set<OpKind>(['CreateThread', 'CreatePost', 'EditPost']);
const MODERATION_ON_USER = new Set<OpKind>(['RemoveMember', 'Ban', 'Unban', 'Mute', 'Unmute', 'Timeout']);

/** Context of one op under check/apply, computed once by the pipeline. */
export interface OpContext {
  readonly op: SignedOp;
  /**
   * The opened content of a post, thread or edit; `null` when this device cannot read it.
   * Acceptance never depends on it (members with and without the key must agree); only what
   * is shown does.
   */
  readonly content: AnyContent | null | undefined;
  readonly opId: Uint8Array;
  /** `bytesKey` of the OpId, the author's user id and device id (computed once upstream). */
  readonly opKey: string;
  readonly userKey: string;
  readonly deviceKey: string;
  /** Acceptance indices of the deps. */
  readonly deps: readonly number[];
  /** Control ops in the causal past. */
  readonly past: ControlPast;
}

export class SpaceState {
  readonly table = new OpTable();
  readonly pasts = new ControlPasts();
  /** Control ops in the causal past of each op, including the op itself when it is one. */
  private readonly pastIncl: ControlPast[] = [];
  private readonly control = new Map<number, ControlRecord>();
  private allControl: ControlPast;
  private readonly posts = new Map<string, PostRec>();
  private readonly threads = new Map<string, ThreadCreate[]>();
  /** Moderator deletes of others' posts, for the audit log. */
  private readonly modDeletes: number[] = [];
  /** Each user's display name: the SetProfile latest in the total order. */
  private readonly profiles = new Map<number, { idx: number; name: string }>();
  private readonly deleteMeta = new Map<
    number,
    { sig: Uint8Array; epoch: EpochRef; target: number; reason: string }
  >();
  /** One string per channel and thread id, shared by every post that names it. */
  private readonly idStrings = new Map<string, string>();
  /** For a target op: a later op known to have it in its causal past (shortens ancestry walks). */
  private readonly witness = new Map<number, number>();

  constructor() {
    this.allControl = this.pasts.empty;
  }

  get size(): number {
    return this.table.count;
  }

  /** Control ops in the causal past of the given ops (including them). */
  pastOfDeps(deps: readonly number[]): ControlPast {
    return this.pasts.union(deps.map((d) => this.pastIncl[d] as ControlPast));
  }

  private record = (idx: number): ControlRecord => this.control.get(idx) as ControlRecord;

  authAt(past: ControlPast): AuthState {
    if (past.auth !== undefined) return past.auth;
    const parent = past.parent;
    const added = past.added === undefined ? undefined : this.control.get(past.added);
    // One step when the added op saw the whole parent set; else from scratch.
    past.auth =
      parent?.auth !== undefined &&
      added !== undefined &&
      added.past === parent &&
      added.kind !== 'CreateSpace'
        ? extendAuth(this.table, parent.auth, added)
        : computeAuth(this.table, past.ops, this.record);
    return past.auth;
  }

  /** The current authority computed from scratch, to check the incremental one (tests). */
  recomputedAuth(): AuthState {
    return computeAuth(this.table, this.allControl.ops, this.record);
  }

  /** The authority in force now: every accepted control op. */
  current(): AuthState {
    return this.authAt(this.allControl);
  }

  private userIdx(u: Uint8Array): number {
    return this.table.users.intern(bytesKey(u));
  }

  /** Targets found in the causal past of the op under check; it becomes their witness if applied. */
  private confirmed: number[] = [];

  /** Whether `target` is in the causal past of an op with these deps. */
  private inPast(deps: readonly number[], target: number): boolean {
    if (deps.includes(target)) return true;
    const w = this.witness.get(target);
    const found =
      (w !== undefined && (deps.includes(w) || this.table.reaches(deps, w))) ||
      this.table.reaches(deps, target);
    if (found) this.confirmed.push(target);
    return found;
  }

  /** The first (in total order) create of a post that is in the causal past of `deps`. */
  private postInPast(key: string, deps: readonly number[]): PostCreate | undefined {
    const rec = this.posts.get(key);
    if (rec === undefined) return undefined;
    let found: PostCreate | undefined;
    for (const c of rec.creates) {
      if ((found === undefined || this.table.compare(c.idx, found.idx) < 0) && this.inPast(deps, c.idx))
        found = c;
    }
    return found;
  }

  /** Decides whether `ctx.op` is authorized by its causal past. `undefined` means yes. */
  check(ctx: OpContext): CheckResult | undefined {
    const { op, deps, past } = ctx;
    this.confirmed.length = 0;
    if (op.kind === 'CreateSpace') {
      if (deps.length !== 0 || op.epoch.epoch !== 0)
        return fail('invalid', 'the genesis has no deps and epoch 0');
      return undefined;
    }
    if (deps.length === 0) return fail('invalid', 'only the genesis has no deps');
    const auth = this.authAt(past);
    if (auth.genesis === undefined) return fail('invalid', 'no genesis in the causal past');
    const user = this.table.users.intern(ctx.userKey);
    if (auth.banned(user)) return fail('banned', 'the author is banned in the causal past');
    for (const r of auth.removals.get(user) ?? []) {
      if (r.body.atEpoch > op.epoch.epoch) {
        return fail('not-member', 'the author saw its own removal and wrote with an older epoch');
      }
    }
    if (CONTENT_KINDS.has(op.kind) && auth.mutedAt(user, op.hlc.wallMs)) {
      return fail('muted', 'the author is muted or timed out at this time');
    }
    const rank = auth.rank(user);
    switch (op.kind) {
      case 'CreateChannel':
      case 'SetSpaceSettings':
        return atLeast(rank, RANK.admin, `${op.kind} needs an admin`);
      case 'EditChannel':
        if (!auth.channels.has(bytesKey(op.body.channel))) return fail('invalid-target', 'unknown channel');
        return atLeast(rank, RANK.admin, 'EditChannel needs an admin');
      case 'AssignRole':
      case 'RevokeRole':
        return atLeast(rank, RANK.admin, 'only admins assign and revoke roles');
      case 'CreateInvite':
        return op.body.role === 'moderator'
          ? atLeast(rank, RANK.admin, 'only admins invite moderators')
          : undefined;
      case 'RevokeInvite': {
        const inv = auth.invites.get(bytesKey(op.body.invite));
        if (inv === undefined) return fail('invalid-target', 'unknown invite');
        return inv.create.user === user
          ? undefined
          : atLeast(rank, RANK.moderator, 'revoking needs a moderator');
      }
      case 'RemoveMember':
      case 'Ban':
      case 'Unban':
      case 'Mute':
      case 'Unmute':
      case 'Timeout': {
        const target = this.userIdx(op.body.user);
        if (rank < RANK.moderator) return fail('unauthorized', `${op.kind} needs a moderator`);
        if (auth.rank(target) >= rank)
          return fail('unauthorized', `${op.kind} of a user of equal or higher role`);
        return undefined;
      }
      case 'Admit': {
        const inv = auth.invites.get(bytesKey(op.body.invite));
        if (inv === undefined) return fail('invalid-target', 'unknown invite');
        if (inv.create.user !== user && rank < RANK.moderator) {
          return fail('unauthorized', 'admitting needs a moderator or the inviter');
        }
        if (inv.revoked) return fail('invalid-target', 'the invite was revoked');
        if (op.hlc.wallMs > inv.create.body.expiresAtMs)
          return fail('invalid-target', 'the invite has expired');
        if (inv.create.body.maxUses !== 0 && inv.uses >= inv.create.body.maxUses) {
          return fail('invalid-target', 'the invite is used up');
        }
        if (auth.banned(this.userIdx(op.body.user))) return fail('banned', 'the admitted user is banned');
        return undefined;
      }
      case 'KeyHistory':
      case 'SetProfile':
        return undefined;
      case 'CreateThread': {
        const ch = auth.channels.get(bytesKey(op.body.channel));
        if (ch === undefined || ch.archived) return fail('invalid-target', 'unknown or archived channel');
        const tk = bytesKey(op.body.thread);
        for (const t of this.threads.get(tk) ?? []) {
          if (this.inPast(deps, t.idx)) return fail('duplicate-id', 'thread id exists in the causal past');
        }
        if (op.body.root !== null) {
          const root = this.postInPast(bytesKey(op.body.root), deps);
          if (root?.channel !== bytesKey(op.body.channel)) return fail('invalid-target', 'unknown root post');
        }
        return undefined;
      }
      case 'CreatePost': {
        const chKey = bytesKey(op.body.channel);
        const ch = auth.channels.get(chKey);
        if (ch === undefined || ch.archived) return fail('invalid-target', 'unknown or archived channel');
        const pk = bytesKey(op.body.post);
        if (this.posts.has(pk) && this.postInPast(pk, deps) !== undefined) {
          return fail('duplicate-id', 'post id exists in the causal past');
        }
        if (op.body.thread !== null) {
          const tk = bytesKey(op.body.thread);
          const t = (this.threads.get(tk) ?? []).find((x) => x.channel === chKey && this.inPast(deps, x.idx));
          if (t === undefined) return fail('invalid-target', 'unknown thread');
        } else if (ch.create.body.type === 'forum') {
          return fail('invalid-target', 'a forum post belongs to a thread');
        }
        if (op.body.parent !== null) {
          const parent = this.postInPast(bytesKey(op.body.parent), deps);
          if (parent?.channel !== chKey) return fail('invalid-target', 'unknown parent post');
        }
        return undefined;
      }
      case 'EditPost': {
        const target = this.postInPast(bytesKey(op.body.post), deps);
        if (target === undefined) return fail('invalid-target', 'unknown post');
        if (target.isCollab) {
          return op.body.collab ? undefined : fail('invalid-target', 'a collaborative post takes changes');
        }
        if (op.body.collab) return fail('invalid-target', 'a plain post takes text');
        return target.user === user ? undefined : fail('unauthorized', 'only the author edits a post');
      }
      case 'DeletePost': {
        const target = this.postInPast(bytesKey(op.body.post), deps);
        if (target === undefined) return fail('invalid-target', 'unknown post');
        return target.user === user
          ? undefined
          : atLeast(rank, RANK.moderator, "deleting another's post needs a moderator");
      }
    }
  }

  /**
   * A collaborative change counts when every change it builds on was carried by an op in its
   * causal past, and it applies to the document made of those (checked by collab.ts): both
   * answers are the same on every replica that can read it, whatever else each has seen. One
   * that does not count is kept in the log but changes nothing (the op itself was accepted on
   * what every member can check, readable or not).
   */
  private collabChangeCounts(
    rec: PostRec,
    postKey: string,
    change: Uint8Array,
    deps: readonly number[],
  ): boolean {
    const info = collabChangeInfo(change);
    if (info === undefined) return false;
    // The same change carried twice (a client that sent an edit again) is harmless: applying
    // it again is a no-op, and ignoring it would depend on which copy arrived first.
    for (const h of info.deps) {
      const carriers = rec.changes?.get(h) ?? [];
      if (!carriers.some((at) => this.inPast(deps, at))) return false;
    }
    const doc = this.collabDoc(keyBytes(postKey));
    return doc !== undefined && applyCollabChange(doc, change).ok;
  }

  /** Applies an op that passed `check`. Returns its acceptance index and whether it is late. */
  apply(ctx: OpContext): { idx: number; late: boolean } {
    const { op, deps, past } = ctx;
    const idx = this.table.add(ctx.opKey, op.hlc, op.epoch.epoch, ctx.userKey, ctx.deviceKey, deps);
    const user = this.table.user(idx);
    for (const t of this.confirmed) this.witness.set(t, idx);
    this.confirmed.length = 0;
    let late = false;

    if (isControlKind(op.kind)) {
      const auth = op.kind === 'CreateSpace' ? undefined : this.authAt(past);
      const rec = {
        idx,
        kind: op.kind,
        body: op.body,
        user,
        rank: auth === undefined ? RANK.admin : auth.rank(user),
        past,
        opId: ctx.opId,
        sig: op.sig,
        epoch: op.epoch,
        hlc: op.hlc,
      } as ControlRecord;
      this.control.set(idx, rec);
      this.pastIncl.push(this.pasts.with(past, idx));
      this.allControl = this.pasts.with(this.allControl, idx);
      if (rec.kind === 'RemoveMember' || rec.kind === 'Ban')
        this.markLate(idx, rec.body.user, rec.body.atEpoch);
    } else {
      this.pastIncl.push(past);
      late = this.lateOnArrival(user, op.epoch.epoch);
      if (late) this.table.setFlag(idx, FLAG_LATE);
      switch (op.kind) {
        case 'CreateThread': {
          const k = bytesKey(op.body.thread);
          const content = ctx.content as Contents['CreateThread'] | null;
          const t: ThreadCreate = {
            idx,
            user,
            channel: bytesKey(op.body.channel),
            title: content?.title ?? '',
            root: op.body.root === null ? null : bytesKey(op.body.root),
            locked: content === null,
          };
          const list = this.threads.get(k);
          if (list === undefined) this.threads.set(k, [t]);
          else list.push(t);
          break;
        }
        case 'CreatePost': {
          const b = op.body;
          const content = ctx.content as Contents['CreatePost'] | null;
          const c: PostCreate = {
            idx,
            user,
            channel: this.shared(bytesKey(b.channel)),
            thread: b.thread === null ? null : this.shared(bytesKey(b.thread)),
            parent: b.parent === null ? null : bytesKey(b.parent),
            text: content?.text ?? '',
            body: content?.body ?? null,
            attachments:
              content === null || content.attachments.length === 0 ? NO_ATTACHMENTS : content.attachments,
            collab: content?.collab ?? null,
            isCollab: b.collab,
            locked: content === null,
          };
          const k = bytesKey(b.post);
          const rec = this.posts.get(k);
          const r = rec ?? {
            creates: [],
            edits: undefined,
            deletes: undefined,
            doc: undefined,
            changes: undefined,
          };
          if (rec === undefined) this.posts.set(k, r);
          r.creates.push(c);
          if (c.collab !== null) this.noteChange(r, c.collab, idx);
          break;
        }
        case 'EditPost': {
          const postKey = bytesKey(op.body.post);
          const rec = this.posts.get(postKey) as PostRec;
          const content = ctx.content as Contents['EditPost'] | null;
          if (content === null) break;
          if (content.change !== null) {
            if (!this.collabChangeCounts(rec, postKey, content.change, deps)) break;
            this.noteChange(rec, content.change, idx);
          }
          (rec.edits ??= []).push({ idx, user, text: content.text, change: content.change });
          break;
        }
        case 'DeletePost': {
          const rec = this.posts.get(bytesKey(op.body.post)) as PostRec;
          (rec.deletes ??= []).push({ idx, user, reason: op.body.reason });
          const target = this.postInPast(bytesKey(op.body.post), deps);
          if (target !== undefined && target.user !== user) {
            this.modDeletes.push(idx);
            this.deleteMeta.set(idx, {
              sig: op.sig,
              epoch: op.epoch,
              target: target.user,
              reason: op.body.reason,
            });
          }
          break;
        }
        case 'KeyHistory':
          break;
        case 'SetProfile': {
          const was = this.profiles.get(user);
          if (was === undefined || this.table.compare(was.idx, idx) < 0)
            this.profiles.set(user, { idx, name: op.body.name });
          break;
        }
      }
    }
    // Targets found while applying (a deleted post, the changes an edit builds on) are in this
    // op's causal past too; left in `confirmed`, they would be credited to the next op applied.
    for (const t of this.confirmed) this.witness.set(t, idx);
    this.confirmed.length = 0;
    return { idx, late };
  }

  private noteChange(rec: PostRec, change: Uint8Array, idx: number): void {
    const info = collabChangeInfo(change);
    if (info === undefined) return;
    const carriers = (rec.changes ??= new Map<string, number[]>()).get(info.hash);
    if (carriers === undefined) rec.changes.set(info.hash, [idx]);
    else carriers.push(idx);
  }

  private shared(key: string): string {
    const s = this.idStrings.get(key);
    if (s !== undefined) return s;
    this.idStrings.set(key, key);
    return key;
  }

  /** An op first seen after its author's removal (which did not see it) is late. */
  private lateOnArrival(user: number, epoch: number): boolean {
    for (const r of this.current().removals.get(user) ?? []) if (r.body.atEpoch > epoch) return true;
    return false;
  }

  /** On a removal: the removed user's earlier-epoch ops that the remover had not seen are late. */
  private markLate(removal: number, target: UserId, atEpoch: number): void {
    const u = this.table.users.get(bytesKey(target));
    if (u === undefined) return;
    const t = this.table;
    const candidates: number[] = [];
    for (let i = 0; i < removal; i++) {
      if (t.user(i) === u && t.epoch(i) < atEpoch && !this.control.has(i)) candidates.push(i);
    }
    if (candidates.length === 0) return;
    const seen = new Set<number>();
    t.walkPast(t.deps(removal), (i) => {
      if (t.user(i) === u) seen.add(i);
    });
    for (const i of candidates) if (!seen.has(i)) t.setFlag(i, FLAG_LATE);
  }

  // ---------------- checkpoint ----------------

  /**
   * The state as checkpoint items (checkpoint.ts): everything `check` and `apply` read, so that
   * {@link SpaceState.restore} gives a state that goes on exactly as this one would. Caches (the
   * authority each control set confers, merged collaborative documents) are left out: they are
   * computed again, alike, when next needed.
   */
  snapshot(): CborValue {
    const n = this.table.count;
    const pasts = this.pasts.snapshot();
    const pastNo = (p: ControlPast | undefined): number => {
      const i = p === undefined ? undefined : pasts.index.get(p);
      if (i === undefined) throw new Error('a control set that was not interned');
      return i;
    };
    const incl = new Int32Array(n);
    for (let i = 0; i < n; i++) incl[i] = pastNo(this.pastIncl[i]);
    const strings = new Map<string, number>();
    const sid = (k: string): number => {
      let i = strings.get(k);
      if (i === undefined) strings.set(k, (i = strings.size));
      return i;
    };
    const control: CborValue[] = [];
    for (const r of this.control.values()) {
      const codec = BODY_CODECS[r.kind] as unknown as { encode(b: unknown): CborValue[] };
      control.push([
        r.idx,
        KIND_CODES[r.kind],
        codec.encode(r.body),
        r.sig,
        r.epoch.epoch,
        r.epoch.commitHash,
        r.rank,
        pastNo(r.past),
      ]);
    }
    const posts: CborValue[] = [];
    for (const [k, rec] of this.posts) {
      posts.push([
        keyBytes(k),
        rec.creates.map((c) => [
          c.idx,
          c.user,
          sid(c.channel),
          c.thread === null ? null : sid(c.thread),
          c.parent === null ? null : keyBytes(c.parent),
          c.text,
          c.body === null ? null : blobWire(c.body),
          c.attachments.map(blobWire),
          c.collab,
          c.isCollab,
          c.locked,
        ]),
        rec.edits?.map((e) => [e.idx, e.user, e.text, e.change]) ?? null,
        rec.deletes?.map((d) => [d.idx, d.user, d.reason]) ?? null,
        rec.changes === undefined ? null : [...rec.changes].map(([h, at]) => [h, at]),
      ]);
    }
    const threads: CborValue[] = [];
    for (const [k, ts] of this.threads) {
      threads.push([
        keyBytes(k),
        ts.map((t) => [
          t.idx,
          t.user,
          sid(t.channel),
          t.title,
          t.root === null ? null : keyBytes(t.root),
          t.locked,
        ]),
      ]);
    }
    const witness = new Int32Array(this.witness.size * 2);
    let w = 0;
    for (const [t, by] of this.witness) {
      witness[w++] = t;
      witness[w++] = by;
    }
    return [
      this.table.snapshot(),
      pasts.items,
      columnBytes(incl, n),
      control,
      pastNo(this.allControl),
      [...strings.keys()].map(keyBytes),
      posts,
      threads,
      this.modDeletes,
      [...this.profiles].map(([u, p]) => [u, p.idx, p.name]),
      [...this.deleteMeta].map(([idx, m]) => [
        idx,
        m.sig,
        m.epoch.epoch,
        m.epoch.commitHash,
        m.target,
        m.reason,
      ]),
      columnBytes(witness, witness.length),
    ];
  }

  /**
   * The state {@link snapshot} wrote, and whether it holds collaborative content (then Automerge
   * must be loaded before its posts are read).
   *
   * @throws CheckpointError `corrupt` when the items do not hold together.
   */
  static restore(v: CborValue): { state: SpaceState; collab: boolean } {
    const s = new SpaceState();
    const f = list(v, 12);
    s.table.restore(f[0]);
    const t = s.table;
    const n = t.count;
    const users = t.users.keys.length;
    const op = (x: CborValue | undefined) => below(x, n);
    const user = (x: CborValue | undefined) => below(x, users);
    const pasts = s.pasts.restore(f[1], n);
    const past = (x: CborValue | undefined) => pasts[below(x, pasts.length)] as ControlPast;
    const incl = column(f[2], Int32Array, n);
    for (let i = 0; i < n; i++) s.pastIncl.push(past(incl[i]));
    for (const item of list(f[3])) {
      const c = list(item, 8);
      const idx = op(c[0]);
      const kind = KIND_BY_CODE.get(int(c[1]));
      if (kind === undefined || !isControlKind(kind)) corrupt('a control op of no control kind');
      const codec = BODY_CODECS[kind] as unknown as {
        fields: number;
        decode(f: readonly CborValue[]): unknown;
      };
      let body: Bodies[ControlKind];
      try {
        body = codec.decode(list(owned(c[2]), codec.fields)) as Bodies[ControlKind];
      } catch (e) {
        if (e instanceof CodecError) corrupt(`a control op body: ${e.message}`);
        throw e;
      }
      const rank = int(c[6]);
      if (rank > RANK.admin) corrupt('a rank out of range');
      s.control.set(idx, {
        idx,
        kind,
        body,
        user: t.user(idx),
        rank: rank as Rank,
        past: past(c[7]),
        opId: keyBytes(t.ids[idx] as string),
        sig: bin(c[3]).slice(),
        epoch: { epoch: int(c[4]), commitHash: bin(c[5]).slice() },
        hlc: t.hlc(idx),
      } as ControlRecord);
    }
    s.allControl = past(f[4]);
    const strings = list(f[5]).map((b) => s.shared(bytesKey(bin(b))));
    const string = (x: CborValue | undefined) => strings[below(x, strings.length)] as string;
    let collab = false;
    for (const item of list(f[6])) {
      const p = list(item, 5);
      const creates: PostCreate[] = list(p[1]).map((x) => {
        const c = list(x, 11);
        const made: PostCreate = {
          idx: op(c[0]),
          user: user(c[1]),
          channel: string(c[2]),
          thread: nullable(c[3], string),
          parent: nullable(c[4], (y) => bytesKey(bin(y))),
          text: str(c[5]),
          body: nullable(c[6], blob),
          attachments: list(c[7]).length === 0 ? NO_ATTACHMENTS : list(c[7]).map(blob),
          collab: nullable(c[8], (y) => bin(y).slice()),
          isCollab: bool(c[9]),
          locked: bool(c[10]),
        };
        if (made.collab !== null) collab = true;
        return made;
      });
      if (creates.length === 0) corrupt('a post with no create');
      const edits = nullable(p[2], (y) =>
        list(y).map((x): PostEdit => {
          const e = list(x, 4);
          const change = nullable(e[3], (z) => bin(z).slice());
          if (change !== null) collab = true;
          return { idx: op(e[0]), user: user(e[1]), text: nullable(e[2], str), change };
        }),
      );
      const deletes = nullable(p[3], (y) =>
        list(y).map((x): PostDelete => {
          const d = list(x, 3);
          return { idx: op(d[0]), user: user(d[1]), reason: str(d[2]) };
        }),
      );
      const changes = nullable(p[4], (y) => {
        const m = new Map<string, number[]>();
        for (const x of list(y)) {
          const c = list(x, 2);
          m.set(str(c[0]), list(c[1]).map(op));
        }
        return m;
      });
      s.posts.set(bytesKey(bin(p[0])), {
        creates,
        edits: edits ?? undefined,
        deletes: deletes ?? undefined,
        doc: undefined,
        changes: changes ?? undefined,
      });
    }
    for (const item of list(f[7])) {
      const th = list(item, 2);
      s.threads.set(
        bytesKey(bin(th[0])),
        list(th[1]).map((x): ThreadCreate => {
          const c = list(x, 6);
          return {
            idx: op(c[0]),
            user: user(c[1]),
            channel: string(c[2]),
            title: str(c[3]),
            root: nullable(c[4], (y) => bytesKey(bin(y))),
            locked: bool(c[5]),
          };
        }),
      );
    }
    for (const x of list(f[8])) s.modDeletes.push(op(x));
    for (const x of list(f[9])) {
      const p = list(x, 3);
      s.profiles.set(user(p[0]), { idx: op(p[1]), name: str(p[2]) });
    }
    for (const x of list(f[10])) {
      const d = list(x, 6);
      s.deleteMeta.set(op(d[0]), {
        sig: bin(d[1]).slice(),
        epoch: { epoch: int(d[2]), commitHash: bin(d[3]).slice() },
        target: user(d[4]),
        reason: str(d[5]),
      });
    }
    const witness = column(f[11], Int32Array, bin(f[11]).length / 4);
    for (let i = 0; i + 1 < witness.length; i += 2) s.witness.set(op(witness[i]), op(witness[i + 1]));
    return { state: s, collab };
  }

  // ---------------- views ----------------

  private userId(u: number): UserId {
    return keyBytes(this.table.users.keys[u] as string) as UserId;
  }

  private opId(idx: number): Uint8Array {
    return keyBytes(this.table.ids[idx] as string);
  }

  private winner<T extends { idx: number }>(list: readonly T[]): T {
    let best = list[0] as T;
    for (const x of list) if (this.table.compare(x.idx, best.idx) < 0) best = x;
    return best;
  }

  private sortByOrder<T extends { idx: number }>(list: readonly T[]): T[] {
    return [...list].sort((a, b) => this.table.compare(a.idx, b.idx));
  }

  private postView(key: string, rec: PostRec): PostView {
    const c = this.winner(rec.creates);
    const history: { opId: Uint8Array; text: string; wallMs: number }[] = [];
    let text = c.text;
    if (c.collab !== null) {
      const validEdits = rec.edits ?? [];
      if (rec.doc?.create !== c.idx || rec.doc.applied !== validEdits.length) {
        const loaded = loadCollab(c.collab);
        // The creation was checked on acceptance, so it loads.
        if (!loaded.ok) throw new Error('a stored collaborative post does not load');
        let doc = loaded.doc;
        // Automerge merges changes in any order to the same document; ours is acceptance order.
        for (const e of validEdits) {
          if (e.change === null) continue;
          const r = applyCollabChange(doc, e.change);
          if (r.ok) doc = r.doc;
        }
        rec.doc = { doc, applied: validEdits.length, create: c.idx };
      }
      text = collabText(rec.doc.doc);
      history.push({ opId: this.opId(c.idx), text, wallMs: this.table.wallMs(c.idx) });
    } else if (!c.locked) {
      history.push({ opId: this.opId(c.idx), text: c.text, wallMs: this.table.wallMs(c.idx) });
      for (const e of this.sortByOrder(rec.edits ?? [])) {
        if (e.user !== c.user || e.text === null) continue;
        text = e.text;
        history.push({ opId: this.opId(e.idx), text: e.text, wallMs: this.table.wallMs(e.idx) });
      }
    }
    // Every accepted delete was authorized in its causal past; the first in order names the deleter.
    const deletedBy = rec.deletes === undefined ? undefined : this.winner(rec.deletes).user;
    return {
      postId: keyBytes(key),
      opId: this.opId(c.idx),
      channel: keyBytes(c.channel),
      thread: c.thread === null ? null : keyBytes(c.thread),
      parent: c.parent === null ? null : keyBytes(c.parent),
      author: this.userId(c.user),
      wallMs: this.table.wallMs(c.idx),
      text,
      body: c.body,
      attachments: c.attachments,
      collab: c.isCollab,
      history,
      edited: history.length > 1 || (c.collab !== null && (rec.edits?.length ?? 0) > 0),
      deleted: deletedBy !== undefined,
      deletedBy: deletedBy === undefined ? null : this.userId(deletedBy),
      lateAfterRemoval: (this.table.flags(c.idx) & FLAG_LATE) !== 0,
      locked: c.locked,
    };
  }

  /** The merged document of a collaborative post (to make the next edit from), if it is one. */
  collabDoc(postId: Uint8Array): CollabDoc | undefined {
    const k = bytesKey(postId);
    const rec = this.posts.get(k);
    if (rec === undefined) return undefined;
    this.postView(k, rec);
    return rec.doc?.doc;
  }

  /** One post, or undefined if it does not exist. Deleted posts are returned with `deleted`. */
  post(postId: Uint8Array): PostView | undefined {
    const k = bytesKey(postId);
    const rec = this.posts.get(k);
    return rec === undefined ? undefined : this.postView(k, rec);
  }

  /**
   * Posts of a channel (and thread, when given; `null` for the channel's top level) in display
   * order (the total order of their creation). Tombstones only with `includeDeleted`; never
   * posts this device cannot read (`locked`).
   */
  postsIn(channel: Uint8Array, thread?: Uint8Array | null, includeDeleted = false): PostView[] {
    const ch = bytesKey(channel);
    const th = thread === undefined ? undefined : thread === null ? null : bytesKey(thread);
    const out: { idx: number; view: PostView }[] = [];
    for (const [k, rec] of this.posts) {
      const c = this.winner(rec.creates);
      if (c.channel !== ch || (th !== undefined && c.thread !== th)) continue;
      if (c.locked) continue;
      const view = this.postView(k, rec);
      if (view.deleted && !includeDeleted) continue;
      out.push({ idx: c.idx, view });
    }
    return this.sortByOrder(out).map((x) => x.view);
  }

  allPosts(): PostView[] {
    const out: { idx: number; view: PostView }[] = [];
    for (const [k, rec] of this.posts)
      out.push({ idx: this.winner(rec.creates).idx, view: this.postView(k, rec) });
    return this.sortByOrder(out).map((x) => x.view);
  }

  threadsIn(channel: Uint8Array): ThreadView[] {
    const ch = bytesKey(channel);
    const out: { idx: number; view: ThreadView }[] = [];
    for (const [k, list] of this.threads) {
      const t = this.winner(list);
      if (t.channel !== ch) continue;
      out.push({
        idx: t.idx,
        view: {
          threadId: keyBytes(k),
          channel: keyBytes(t.channel),
          title: t.title,
          root: t.root === null ? null : keyBytes(t.root),
          author: this.userId(t.user),
          wallMs: this.table.wallMs(t.idx),
          lateAfterRemoval: (this.table.flags(t.idx) & FLAG_LATE) !== 0,
          locked: t.locked,
        },
      });
    }
    return this.sortByOrder(out).map((x) => x.view);
  }

  channels(): ChannelView[] {
    const out: { idx: number; view: ChannelView }[] = [];
    for (const [k, c] of this.current().channels) {
      out.push({
        idx: c.create.idx,
        view: {
          channelId: keyBytes(k),
          name: c.name,
          topic: c.topic,
          type: c.create.body.type,
          archived: c.archived,
        },
      });
    }
    return this.sortByOrder(out).map((x) => x.view);
  }

  roles(): MemberRoleView[] {
    const out: MemberRoleView[] = [];
    for (const [u, set] of this.current().roles) out.push({ user: this.userId(u), roles: [...set].sort() });
    return out.sort((a, b) => (bytesKey(a.user) < bytesKey(b.user) ? -1 : 1));
  }

  /**
   * The authority in the causal past of `heads` (the ops and everything before them), which
   * every replica holding those ops computes alike; `undefined` while one of them is not
   * accepted here. What MLS commits are judged by (section 6.3).
   */
  authorityAt(
    heads: readonly Uint8Array[],
  ): { roleOf(user: UserId): 'admin' | 'moderator' | 'member'; isBanned(user: UserId): boolean } | undefined {
    const idx: number[] = [];
    for (const h of heads) {
      const i = this.table.indexOf(bytesKey(h));
      if (i === undefined) return undefined;
      idx.push(i);
    }
    const auth = this.authAt(this.pastOfDeps(idx));
    const u = (user: UserId) => this.table.users.get(bytesKey(user));
    return {
      roleOf: (user) => {
        const x = u(user);
        const r = x === undefined ? 0 : auth.rank(x);
        return r === 2 ? 'admin' : r === 1 ? 'moderator' : 'member';
      },
      isBanned: (user) => {
        const x = u(user);
        return x !== undefined && auth.banned(x);
      },
    };
  }

  /** The display name `user` chose in this Space, if any. */
  nameOf(user: UserId): string | undefined {
    const u = this.table.users.get(bytesKey(user));
    return u === undefined ? undefined : this.profiles.get(u)?.name;
  }

  /** Every user who set a display name, with it. */
  profileNames(): { user: UserId; name: string }[] {
    return [...this.profiles].map(([u, p]) => ({ user: this.userId(u), name: p.name }));
  }

  roleOf(user: UserId): 'admin' | 'moderator' | 'member' {
    // `current()` first: computing it interns the users its ops name.
    const auth = this.current();
    const u = this.table.users.get(bytesKey(user));
    const r = u === undefined ? 0 : auth.rank(u);
    return r === 2 ? 'admin' : r === 1 ? 'moderator' : 'member';
  }

  moderation(nowMs: number): ModerationView[] {
    const a = this.current();
    const users = new Set<number>([...a.muteWinner.keys(), ...a.banWinner.keys()]);
    const out: ModerationView[] = [];
    for (const u of users) {
      const m = a.muteWinner.get(u);
      const muted =
        m !== undefined && m.kind !== 'Unmute' && (m.body.untilMs === null || nowMs < m.body.untilMs)
          ? { untilMs: m.body.untilMs, kind: m.kind }
          : null;
      out.push({ user: this.userId(u), muted, banned: a.banned(u) });
    }
    return out.sort((x, y) => (bytesKey(x.user) < bytesKey(y.user) ? -1 : 1));
  }

  /** Whether `user` may post at `wallMs` according to everything accepted so far. */
  isMutedAt(user: UserId, wallMs: number): boolean {
    const auth = this.current();
    const u = this.table.users.get(bytesKey(user));
    return u !== undefined && auth.mutedAt(u, wallMs);
  }

  isBanned(user: UserId): boolean {
    const auth = this.current();
    const u = this.table.users.get(bytesKey(user));
    return u !== undefined && auth.banned(u);
  }

  settings() {
    return this.current().settings;
  }

  creator(): UserId | undefined {
    const g = this.current().genesis;
    return g === undefined ? undefined : this.userId(g.user);
  }

  invites() {
    return [...this.current().invites.values()]
      .sort((a, b) => this.table.compare(a.create.idx, b.create.idx))
      .map((i) => ({
        ...i.create.body,
        creator: this.userId(i.create.user),
        revoked: i.revoked,
        uses: i.uses,
      }));
  }

  /** The audit log (section 5): every moderation op with its author, epoch and signature, in order. */
  auditLog(): AuditEntry[] {
    const entries: { idx: number; e: AuditEntry }[] = [];
    for (const r of this.control.values()) {
      const target = MODERATION_ON_USER.has(r.kind) || r.kind === 'AssignRole' || r.kind === 'RevokeRole';
      const body = r.body as { user?: UserId; reason?: string };
      entries.push({
        idx: r.idx,
        e: {
          opId: r.opId,
          kind: r.kind,
          author: this.userId(r.user),
          target: target && body.user !== undefined ? body.user : null,
          reason: body.reason ?? '',
          epoch: r.epoch,
          wallMs: r.hlc.wallMs,
          sig: r.sig,
        },
      });
    }
    for (const idx of this.modDeletes) {
      const m = this.deleteMeta.get(idx);
      if (m === undefined) continue;
      entries.push({
        idx,
        e: {
          opId: this.opId(idx),
          kind: 'DeletePost',
          author: this.userId(this.table.user(idx)),
          target: this.userId(m.target),
          reason: m.reason,
          epoch: m.epoch,
          wallMs: this.table.wallMs(idx),
          sig: m.sig,
        },
      });
    }
    return this.sortByOrder(entries).map((x) => x.e);
  }

  /** Every accepted op id, in acceptance order. */
  opIds(): Uint8Array[] {
    return this.table.ids.map(keyBytes);
  }

  /**
   * The whole state as canonical CBOR: equal bytes on two replicas mean equal state. Holds
   * everything a reader can observe (space, roles, moderation, channels, threads, posts with
   * their history, tombstones and late marks, invites, the audit log), each list sorted by id.
   */
  canonicalState(nowMs = 0): Uint8Array {
    const s = this.settings();
    const creator = this.creator();
    const byKey = <T>(list: T[], key: (x: T) => Uint8Array) =>
      list.sort((a, b) => {
        const x = bytesKey(key(a));
        const y = bytesKey(key(b));
        return x < y ? -1 : x > y ? 1 : 0;
      });
    const value: CborValue = [
      [creator ?? null, s.name, s.description, s.historyVisibility],
      this.roles().map((r) => [r.user, [...r.roles]]),
      this.moderation(nowMs).map((m) => [
        m.user,
        m.muted === null ? null : [m.muted.kind, m.muted.untilMs],
        m.banned,
      ]),
      byKey(this.channels(), (c) => c.channelId).map((c) => [
        c.channelId,
        c.name,
        c.topic,
        c.type,
        c.archived,
      ]),
      byKey([...this.threads.keys()].map(keyBytes), (x) => x).map((k) => {
        const t = this.winner(this.threads.get(bytesKey(k)) ?? []);
        return [
          k,
          keyBytes(t.channel),
          t.title,
          t.root === null ? null : keyBytes(t.root),
          this.userId(t.user),
          (this.table.flags(t.idx) & FLAG_LATE) !== 0,
        ];
      }),
      byKey(this.allPosts(), (p) => p.postId).map((p) => [
        p.postId,
        p.opId,
        p.channel,
        p.thread,
        p.parent,
        p.author,
        p.text,
        p.body === null ? null : blobWire(p.body),
        p.attachments.map(blobWire),
        p.history.map((h) => [h.opId, h.text]),
        p.deleted,
        p.deletedBy,
        p.lateAfterRemoval,
      ]),
      this.invites().map((i) => [
        i.invite,
        i.secret,
        i.expiresAtMs,
        i.maxUses,
        i.role,
        i.creator,
        i.revoked,
        i.uses,
      ]),
      this.auditLog().map((a) => [a.opId, a.kind, a.author, a.target, a.reason]),
      byKey(this.profileNames(), (p) => p.user).map((p) => [p.user, p.name]),
    ];
    return encode(value);
  }
}

export type { DeviceId };

const KIND_BY_CODE = new Map<number, OpKind>(OP_KINDS.map((k) => [KIND_CODES[k], k]));

/** `v` with its byte strings copied: a view would keep the whole checkpoint record in memory. */
function owned(v: CborValue | undefined): CborValue | undefined {
  if (v instanceof Uint8Array) return v.slice();
  if (Array.isArray(v)) return (v as readonly CborValue[]).map((x) => owned(x) ?? null);
  return v;
}

/** A blob reference from its wire form in a checkpoint. */
function blob(v: CborValue): BlobRef {
  const f = list(v, 5);
  return {
    hash: bin(f[0]).slice(),
    key: bin(f[1]).slice(),
    size: int(f[2]),
    mime: str(f[3]),
    name: str(f[4]),
  };
}

function fail(reason: CheckReason, detail: string): CheckResult {
  return { reason, detail };
}

function atLeast(rank: Rank, needed: Rank, what: string): CheckResult | undefined {
  return rank >= needed ? undefined : fail('unauthorized', what);
}
