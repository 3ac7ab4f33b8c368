/**
 * Control ops (roles, moderation, channels, invites, settings, the genesis) and the
 * authority they confer. Authorization of every op is decided against the control ops in
 * its *causal past* (ARCHITECTURE.md section 4 step 6), so every replica decides alike.
 *
 * Control ops are few, so each op's causal past is summarised by the set of control ops in
 * it (`ControlPast`), interned so that the many ops sharing one past share one object, and
 * the authority it confers (`AuthState`) is computed once per distinct past.
 */
import type { CborValue } from '../protocol/cbor.js';
import { bytesKey } from '../protocol/ids.js';
import { bin, column, columnBytes, corrupt, int, list, nullable } from './checkpoint.js';
import type { Bodies, EpochRef, HistoryVisibility, Hlc, Role } from '../protocol/index.js';
import type { OpTable } from './optable.js';

export const CONTROL_KINDS = [
  'CreateSpace',
  'CreateChannel',
  'EditChannel',
  'AssignRole',
  'RevokeRole',
  'CreateInvite',
  'RevokeInvite',
  'Admit',
  'RemoveMember',
  'Ban',
  'Unban',
  'Mute',
  'Unmute',
  'Timeout',
  'SetSpaceSettings',
] as const;
export type ControlKind = (typeof CONTROL_KINDS)[number];
const CONTROL_SET = new Set<string>(CONTROL_KINDS);

export function isControlKind(kind: string): kind is ControlKind {
  return CONTROL_SET.has(kind);
}

/** Rank of a role for precedence: admin > moderator > member. */
export const RANK = { member: 0, moderator: 1, admin: 2 } as const;
export type Rank = 0 | 1 | 2;

export type ControlRecord = {
  [K in ControlKind]: {
    readonly idx: number;
    readonly kind: K;
    readonly body: Bodies[K];
    /** Interned author user. */
    readonly user: number;
    /** The author's rank in the op's causal past. */
    readonly rank: Rank;
    /** The control ops in the op's causal past (not including itself). */
    readonly past: ControlPast;
    readonly opId: Uint8Array;
    readonly sig: Uint8Array;
    readonly epoch: EpochRef;
    readonly hlc: Hlc;
  };
}[ControlKind];

export type RecordOf<K extends ControlKind> = Extract<ControlRecord, { kind: K }>;

/** A set of control ops (by acceptance index, ascending), interned. */
export class ControlPast {
  auth: AuthState | undefined;
  /** When made by `with`: the set it extends and the op it adds (for incremental authority). */
  parent: ControlPast | undefined;
  added: number | undefined;
  constructor(readonly ops: Int32Array) {}

  has(idx: number): boolean {
    let lo = 0;
    let hi = this.ops.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.ops[mid] as number;
      if (v === idx) return true;
      if (v < idx) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }
}

/** Whether every item of the ascending `a` is in the ascending `b`. */
function isSubset(a: Int32Array, b: Int32Array): boolean {
  if (a.length > b.length) return false;
  let j = 0;
  for (const x of a) {
    while (j < b.length && (b[j] as number) < x) j++;
    if (j === b.length || b[j] !== x) return false;
    j++;
  }
  return true;
}

/** The ascending union of two ascending sets. */
function mergeSorted(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? (a[i] as number) : Infinity;
    const y = j < b.length ? (b[j] as number) : Infinity;
    const v = x <= y ? x : y;
    if (x === v) i++;
    if (y === v) j++;
    out[n++] = v;
  }
  return out.slice(0, n);
}

export class ControlPasts {
  readonly empty = new ControlPast(new Int32Array(0));
  private readonly interned = new Map<string, ControlPast>([['', this.empty]]);

  private intern(ops: Int32Array): ControlPast {
    const key = ops.join(',');
    let p = this.interned.get(key);
    if (p === undefined) {
      p = new ControlPast(ops);
      this.interned.set(key, p);
    }
    return p;
  }

  union(pasts: readonly ControlPast[]): ControlPast {
    const first = pasts[0];
    if (first === undefined) return this.empty;
    let largest = first;
    let same = true;
    for (const p of pasts) {
      if (p !== first) same = false;
      if (p.ops.length > largest.ops.length) largest = p;
    }
    if (same) return first;
    // Usually one dep saw every control op the others saw: its set is the union, found
    // without building anything (this runs for every op accepted).
    let union = largest.ops;
    for (const p of pasts) if (p !== largest && !isSubset(p.ops, union)) union = mergeSorted(union, p.ops);
    return union === largest.ops ? largest : this.intern(union);
  }

  /** `past` plus `idx`, which is after every op in it (acceptance order). */
  with(past: ControlPast, idx: number): ControlPast {
    const ops = new Int32Array(past.ops.length + 1);
    ops.set(past.ops);
    ops[past.ops.length] = idx;
    const made = this.intern(ops);
    if (made.parent === undefined && made !== past) {
      made.parent = past;
      made.added = idx;
    }
    return made;
  }

  get size(): number {
    return this.interned.size;
  }

  /**
   * Every interned set as checkpoint items, in the order interned (the empty set first), each
   * with the set it extends and the op it adds; `index` numbers them for the items that refer
   * to one. The authority each set confers is not kept: it is computed again when asked.
   */
  snapshot(): { items: CborValue; index: Map<ControlPast, number> } {
    const index = new Map<ControlPast, number>();
    for (const p of this.interned.values()) index.set(p, index.size);
    const items: CborValue[] = [];
    for (const p of this.interned.values()) {
      const parent = p.parent === undefined ? null : (index.get(p.parent) ?? null);
      items.push([columnBytes(p.ops, p.ops.length), parent, p.added ?? null]);
    }
    return { items, index };
  }

  /**
   * Interns the sets of {@link snapshot}'s items into this fresh instance; returns them by number.
   *
   * @throws CheckpointError `corrupt`
   */
  restore(v: CborValue | undefined, opCount: number): ControlPast[] {
    const items = list(v);
    if (this.interned.size !== 1) throw new Error('restore into a fresh ControlPasts only');
    const out: ControlPast[] = [];
    for (const [i, item] of items.entries()) {
      const f = list(item, 3);
      const ops = column(f[0], Int32Array, bin(f[0]).length / 4);
      for (let k = 0; k < ops.length; k++) {
        const x = ops[k] as number;
        if (x < 0 || x >= opCount || (k > 0 && x <= (ops[k - 1] as number)))
          corrupt('a control set out of order');
      }
      if ((i === 0) !== (ops.length === 0)) corrupt('the empty control set is not first');
      const p = i === 0 ? this.empty : this.intern(ops);
      if (this.interned.size !== i + 1) corrupt('a control set twice');
      const parent = nullable(f[1], (x) => int(x));
      if (parent !== null) {
        if (parent >= i) corrupt('a control set extends a later one');
        p.parent = out[parent];
        p.added = int(f[2]);
      } else if (f[2] !== null) corrupt('a control set adds an op to nothing');
      out.push(p);
    }
    if (out.length === 0) corrupt('no control sets');
    return out;
  }
}

interface ChannelState {
  readonly create: RecordOf<'CreateChannel'>;
  readonly name: string;
  readonly topic: string;
  readonly archived: boolean;
}

interface InviteState {
  readonly create: RecordOf<'CreateInvite'>;
  readonly revoked: boolean;
  /** Admit ops naming this invite. */
  readonly uses: number;
}

export interface SpaceSettings {
  readonly name: string;
  readonly description: string;
  readonly historyVisibility: HistoryVisibility;
}

/**
 * Who holds which role, who is muted or banned, which channels and invites exist, and the
 * Space settings — as conferred by one set of control ops. A pure function of the set.
 */
export class AuthState {
  genesis: RecordOf<'CreateSpace'> | undefined;
  readonly roles = new Map<number, Set<Role>>();
  readonly muteWinner = new Map<number, RecordOf<'Mute' | 'Unmute' | 'Timeout'>>();
  readonly banWinner = new Map<number, RecordOf<'Ban' | 'Unban'>>();
  readonly channels = new Map<string, ChannelState>();
  readonly invites = new Map<string, InviteState>();
  readonly removals = new Map<number, RecordOf<'RemoveMember' | 'Ban'>[]>();
  settings: SpaceSettings = { name: '', description: '', historyVisibility: 'all' };

  rank(user: number): Rank {
    const r = this.roles.get(user);
    if (r === undefined) return RANK.member;
    return r.has('admin') ? RANK.admin : r.has('moderator') ? RANK.moderator : RANK.member;
  }

  /** Whether `user` may not post at `wallMs` (muted or timed out then). */
  mutedAt(user: number, wallMs: number): boolean {
    const w = this.muteWinner.get(user);
    if (w === undefined || w.kind === 'Unmute') return false;
    return w.body.untilMs === null || wallMs < w.body.untilMs;
  }

  banned(user: number): boolean {
    return this.banWinner.get(user)?.kind === 'Ban';
  }
}

/**
 * Channels, invites and settings: applied in total order, the first create of an id wins and
 * later edits overwrite field by field (an edit or revoke of an unknown id is inert).
 */
function applyStructure(
  s: AuthState,
  r: RecordOf<'CreateChannel' | 'EditChannel' | 'CreateInvite' | 'RevokeInvite' | 'SetSpaceSettings'>,
): void {
  switch (r.kind) {
    case 'CreateChannel': {
      const k = bytesKey(r.body.channel);
      if (!s.channels.has(k))
        s.channels.set(k, { create: r, name: r.body.name, topic: r.body.topic, archived: false });
      break;
    }
    case 'EditChannel': {
      const k = bytesKey(r.body.channel);
      const c = s.channels.get(k);
      if (c !== undefined) {
        s.channels.set(k, {
          create: c.create,
          name: r.body.name ?? c.name,
          topic: r.body.topic ?? c.topic,
          archived: r.body.archived ?? c.archived,
        });
      }
      break;
    }
    case 'CreateInvite': {
      const k = bytesKey(r.body.invite);
      if (!s.invites.has(k)) s.invites.set(k, { create: r, revoked: false, uses: 0 });
      break;
    }
    case 'RevokeInvite': {
      const k = bytesKey(r.body.invite);
      const prev = s.invites.get(k);
      if (prev !== undefined) s.invites.set(k, { ...prev, revoked: true });
      break;
    }
    case 'SetSpaceSettings':
      s.settings = {
        name: r.body.name ?? s.settings.name,
        description: r.body.description ?? s.settings.description,
        historyVisibility: r.body.historyVisibility ?? s.settings.historyVisibility,
      };
      break;
  }
}

/** Computes the authority conferred by a set of control ops. */
export function computeAuth(
  table: OpTable,
  ops: ArrayLike<number>,
  record: (idx: number) => ControlRecord,
): AuthState {
  const s = new AuthState();
  const recs: ControlRecord[] = [];
  for (let k = 0; k < ops.length; k++) recs.push(record(ops[k] as number));
  recs.sort((a, b) => table.compare(a.idx, b.idx));
  const before = (a: ControlRecord, b: ControlRecord) => table.compare(a.idx, b.idx) < 0;

  type RoleOps = { assigns: ControlRecord[]; revokes: ControlRecord[] };
  const roleOps = new Map<string, RoleOps>();
  const roleEntry = (user: number, role: Role): RoleOps => {
    const k = `${user}/${role}`;
    let e = roleOps.get(k);
    if (e === undefined) {
      e = { assigns: [], revokes: [] };
      roleOps.set(k, e);
    }
    return e;
  };
  const mutes = new Map<number, RecordOf<'Mute' | 'Unmute' | 'Timeout'>[]>();
  const bans = new Map<number, RecordOf<'Ban' | 'Unban'>[]>();
  const push = <T>(m: Map<number, T[]>, k: number, v: T) => {
    const l = m.get(k);
    if (l === undefined) m.set(k, [v]);
    else l.push(v);
  };
  const target = (u: Uint8Array) => table.users.intern(bytesKey(u));

  for (const r of recs) {
    switch (r.kind) {
      case 'CreateSpace':
        // Concurrent genesis ops (only the epoch-0 creator can make one): the first in order wins.
        if (s.genesis === undefined) {
          s.genesis = r;
          s.settings = { ...s.settings, name: r.body.name, description: r.body.description };
          roleEntry(r.user, 'admin').assigns.push(r);
        }
        break;
      case 'AssignRole':
        roleEntry(target(r.body.user), r.body.role).assigns.push(r);
        break;
      case 'RevokeRole':
        roleEntry(target(r.body.user), r.body.role).revokes.push(r);
        break;
      case 'Mute':
      case 'Unmute':
      case 'Timeout':
        push(mutes, target(r.body.user), r);
        break;
      case 'Ban':
        push(bans, target(r.body.user), r);
        push(s.removals, target(r.body.user), r);
        break;
      case 'Unban':
        push(bans, target(r.body.user), r);
        break;
      case 'RemoveMember':
        push(s.removals, target(r.body.user), r);
        break;
      case 'CreateChannel':
      case 'EditChannel':
      case 'CreateInvite':
      case 'RevokeInvite':
      case 'SetSpaceSettings':
        applyStructure(s, r);
        break;
      case 'Admit': {
        // The invite is in the Admit's causal past, so it came earlier in this order.
        const inv = admit(s, r);
        if (inv?.create.body.role === 'moderator')
          roleEntry(target(r.body.user), 'moderator').assigns.push(r);
        break;
      }
    }
  }

  // Roles: an add-wins set. A revoke removes exactly the assigns in its causal past.
  for (const [k, e] of roleOps) {
    const held = e.assigns.some((a) => !e.revokes.some((r) => r.past.has(a.idx)));
    if (!held) continue;
    const [user, role] = k.split('/') as [string, Role];
    const u = Number(user);
    let set = s.roles.get(u);
    if (set === undefined) s.roles.set(u, (set = new Set()));
    set.add(role);
  }

  // Mute and ban registers: among the ops no later op (on the same user) has seen, the
  // author with the higher rank wins, then the later op in the total order.
  const winner = <T extends ControlRecord>(list: readonly T[]): T | undefined => {
    let best: T | undefined;
    for (const x of list) {
      if (list.some((y) => y !== x && y.past.has(x.idx))) continue;
      if (best === undefined || x.rank > best.rank || (x.rank === best.rank && before(best, x))) best = x;
    }
    return best;
  };
  for (const [u, list] of mutes) {
    const w = winner(list);
    if (w !== undefined) s.muteWinner.set(u, w);
  }
  for (const [u, list] of bans) {
    const w = winner(list);
    if (w !== undefined) s.banWinner.set(u, w);
  }
  return s;
}

/**
 * The authority of `parent`'s set plus `r`, when `r` saw every op of that set (its causal past
 * is exactly the set): then `r` comes after all of them in the total order and supersedes
 * every earlier op on the same register, so one step gives what `computeAuth` would compute
 * from scratch. Inputs are not changed.
 */
export function extendAuth(table: OpTable, parent: AuthState, r: ControlRecord): AuthState {
  const s = new AuthState();
  s.genesis = parent.genesis;
  s.settings = parent.settings;
  for (const [k, v] of parent.roles) s.roles.set(k, v);
  for (const [k, v] of parent.muteWinner) s.muteWinner.set(k, v);
  for (const [k, v] of parent.banWinner) s.banWinner.set(k, v);
  for (const [k, v] of parent.channels) s.channels.set(k, v);
  for (const [k, v] of parent.invites) s.invites.set(k, v);
  for (const [k, v] of parent.removals) s.removals.set(k, v);
  const target = (u: Uint8Array) => table.users.intern(bytesKey(u));
  switch (r.kind) {
    case 'CreateSpace':
      throw new Error('the genesis has no causal past to extend');
    case 'AssignRole': {
      const u = target(r.body.user);
      s.roles.set(u, new Set([...(s.roles.get(u) ?? []), r.body.role]));
      break;
    }
    case 'RevokeRole': {
      // Every assignment of this role is in the revoke's causal past, so none survives.
      const u = target(r.body.user);
      const rest = new Set(s.roles.get(u) ?? []);
      rest.delete(r.body.role);
      if (rest.size === 0) s.roles.delete(u);
      else s.roles.set(u, rest);
      break;
    }
    case 'Mute':
    case 'Unmute':
    case 'Timeout':
      s.muteWinner.set(target(r.body.user), r);
      break;
    case 'Ban':
      s.banWinner.set(target(r.body.user), r);
      s.removals.set(target(r.body.user), [...(s.removals.get(target(r.body.user)) ?? []), r]);
      break;
    case 'Unban':
      s.banWinner.set(target(r.body.user), r);
      break;
    case 'RemoveMember':
      s.removals.set(target(r.body.user), [...(s.removals.get(target(r.body.user)) ?? []), r]);
      break;
    case 'CreateChannel':
    case 'EditChannel':
    case 'CreateInvite':
    case 'RevokeInvite':
    case 'SetSpaceSettings':
      applyStructure(s, r);
      break;
    case 'Admit': {
      const inv = admit(s, r);
      if (inv?.create.body.role === 'moderator') {
        const u = target(r.body.user);
        s.roles.set(u, new Set([...(s.roles.get(u) ?? []), 'moderator']));
      }
      break;
    }
  }
  return s;
}

/** Counts a use of the Admit's invite; the invite, when known. */
function admit(s: AuthState, r: RecordOf<'Admit'>): InviteState | undefined {
  const k = bytesKey(r.body.invite);
  const inv = s.invites.get(k);
  if (inv === undefined) return undefined;
  const next = { ...inv, uses: inv.uses + 1 };
  s.invites.set(k, next);
  return next;
}

/** A canonical text of an authority, to compare two (tests of `extendAuth`). */
export function describeAuth(a: AuthState): string {
  const id = (r: { opId: Uint8Array } | undefined) => (r === undefined ? '-' : bytesKey(r.opId));
  const sorted = <T>(m: ReadonlyMap<number | string, T>, f: (v: T) => string) =>
    [...m.entries()]
      .map(([k, v]) => `${String(k)}=${f(v)}`)
      .sort()
      .join(';');
  return [
    id(a.genesis),
    JSON.stringify(a.settings),
    sorted(a.roles, (v) => [...v].sort().join(',')),
    sorted(a.muteWinner, (v) => id(v)),
    sorted(a.banWinner, (v) => id(v)),
    sorted(a.channels, (v) => `${id(v.create)}/${v.name}/${v.topic}/${String(v.archived)}`),
    sorted(a.invites, (v) => `${id(v.create)}/${String(v.revoked)}/${String(v.uses)}`),
    sorted(a.removals, (v) => v.map(id).sort().join(',')),
  ].join('|');
}
