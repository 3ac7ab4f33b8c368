/**
 * A Space's epoch history as one device knows it: each epoch's reference, control key and
 * (when this device may read that epoch's posts) content key (section 6.2), and which devices were members in which epochs (section 4 step 5). Kept as
 * spans per device rather than a member set per epoch, so a 5,000-member Space with thousands
 * of epochs costs memory in proportion to its membership changes, not their product.
 */
import type { MembershipAnswer } from '../ports/keys.js';
import { type CborValue, type DecodeLimits, decode, encode } from '../protocol/cbor.js';
import { CodecError } from '../protocol/errors.js';
import type { DeviceId, EpochRef, UserId } from '../protocol/ids.js';
import { HASH_BYTES, KEY_BYTES, bytesKey, equalBytes, keyBytes } from '../protocol/ids.js';
import { MAX_HISTORY_ENTRIES } from '../protocol/limits.js';
import type { GroupMember } from './suite.js';

/** Marks a span that is still open (the device is a member of the latest epoch recorded). */
const OPEN = 0;

interface EpochEntry {
  readonly ref: EpochRef;
  /** The control key: opens every op of the epoch. */
  readonly key: Uint8Array;
  /** The content key: opens the readable part of posts, threads and edits. */
  readonly content: Uint8Array | undefined;
}

interface DeviceSpans {
  readonly user: UserId;
  readonly device: DeviceId;
  /** Flat `[from, to)` pairs in increasing order; `to` is {@link OPEN} for the last while current. */
  readonly spans: number[];
}

function forkKey(ref: EpochRef): string {
  return `${ref.epoch}/${bytesKey(ref.commitHash)}`;
}

const HISTORY_LIMITS: DecodeLimits = {
  maxBytes: 256 * 1024 * 1024,
  maxArrayLength: MAX_HISTORY_ENTRIES,
  maxStringBytes: 1024,
  maxDepth: 4,
};

/** What recording one epoch changed, to undo it when a fork choice abandons the epoch. */
interface Undo {
  readonly epoch: number;
  readonly opened: string[];
  readonly closed: string[];
}

/** Recorded epochs that can still be undone (a fork reaches back at most this far). */
const UNDO_WINDOW = 16;

export class EpochHistory {
  private readonly epochs = new Map<number, EpochEntry>();
  private readonly devices = new Map<string, DeviceSpans>();
  private last: number | undefined;
  private readonly undo: Undo[] = [];
  /** Epochs abandoned by fork choice: their keys and members, to read ops sealed on them. */
  private readonly forked = new Map<string, { entry: EpochEntry; members: Map<string, UserId> }>();

  /** The latest epoch recorded. */
  get latest(): EpochRef | undefined {
    return this.last === undefined ? undefined : this.epochs.get(this.last)?.ref;
  }

  /** The earliest epoch this device has a key for. */
  get earliest(): number | undefined {
    let min: number | undefined;
    for (const n of this.epochs.keys()) if (min === undefined || n < min) min = n;
    return min;
  }

  /**
   * Records the next epoch of the chain with its keys and its complete member list.
   *
   * @throws RangeError when `ref` does not come after the latest epoch (a bug in the caller).
   */
  record(ref: EpochRef, key: Uint8Array, content: Uint8Array, members: readonly GroupMember[]): void {
    if (this.last !== undefined && ref.epoch <= this.last) {
      throw new RangeError(`epoch ${ref.epoch} does not follow ${this.last}`);
    }
    const present = new Set<string>();
    const undo: Undo = { epoch: ref.epoch, opened: [], closed: [] };
    for (const m of members) {
      const k = bytesKey(m.device);
      present.add(k);
      const d = this.devices.get(k);
      if (d === undefined) {
        this.devices.set(k, { user: m.user, device: m.device, spans: [ref.epoch, OPEN] });
        undo.opened.push(k);
      } else if (d.spans[d.spans.length - 1] !== OPEN) {
        d.spans.push(ref.epoch, OPEN);
        undo.opened.push(k);
      }
    }
    for (const [k, d] of this.devices) {
      if (!present.has(k) && d.spans[d.spans.length - 1] === OPEN) {
        d.spans[d.spans.length - 1] = ref.epoch;
        undo.closed.push(k);
      }
    }
    this.epochs.set(ref.epoch, { ref, key, content });
    this.last = ref.epoch;
    this.undo.push(undo);
    if (this.undo.length > UNDO_WINDOW) this.undo.shift();
  }

  /** Every epoch this device has a key for, oldest first. */
  refs(): EpochRef[] {
    return [...this.epochs.values()].map((e) => e.ref).sort((a, b) => a.epoch - b.epoch);
  }

  /**
   * Forgets every epoch after `epoch` (a fork choice abandoned them), keeping each one's key
   * and members aside to read ops already sealed on it. Returns the abandoned epochs.
   *
   * @throws RangeError when that reaches further back than the undo window (a bug in the caller).
   */
  rewindTo(epoch: number): EpochRef[] {
    const abandoned: EpochRef[] = [];
    while (this.last !== undefined && this.last > epoch) {
      const u = this.undo.pop();
      const entry = this.epochs.get(this.last);
      if (u?.epoch !== this.last || entry === undefined) throw new RangeError('cannot rewind that far');
      const members = new Map<string, UserId>();
      for (const [k, d] of this.devices) {
        if (this.spanAt(d, this.last)) members.set(k, d.user);
      }
      this.forked.set(forkKey(entry.ref), { entry, members });
      for (const k of u.opened) {
        const d = this.devices.get(k);
        if (d === undefined) continue;
        d.spans.length -= 2;
        if (d.spans.length === 0) this.devices.delete(k);
      }
      for (const k of u.closed) {
        const d = this.devices.get(k);
        if (d !== undefined) d.spans[d.spans.length - 1] = OPEN;
      }
      this.epochs.delete(this.last);
      abandoned.push(entry.ref);
      let prev: number | undefined;
      for (const n of this.epochs.keys()) if (n < this.last && (prev === undefined || n > prev)) prev = n;
      this.last = prev;
    }
    return abandoned;
  }

  private spanAt(d: DeviceSpans, epoch: number): boolean {
    for (let i = 0; i < d.spans.length; i += 2) {
      const from = d.spans[i] as number;
      const to = d.spans[i + 1] as number;
      if (epoch >= from && (to === OPEN || epoch < to)) return true;
    }
    return false;
  }

  /** The control key of `ref`, when this device has it and the commit hash matches. */
  keyOf(ref: EpochRef): Uint8Array | undefined {
    return this.entryOf(ref)?.key;
  }

  /** The content key of `ref`, when this device has it and the commit hash matches. */
  contentKeyOf(ref: EpochRef): Uint8Array | undefined {
    return this.entryOf(ref)?.content;
  }

  private entryOf(ref: EpochRef): EpochEntry | undefined {
    const e = this.epochs.get(ref.epoch);
    if (e !== undefined && equalBytes(e.ref.commitHash, ref.commitHash)) return e;
    return this.forked.get(forkKey(ref))?.entry;
  }

  /** Whether `device` of `user` was a member in `ref` (see `MembershipView`). */
  memberAt(ref: EpochRef, user: UserId, device: DeviceId): MembershipAnswer {
    const fork = this.forked.get(forkKey(ref));
    if (fork !== undefined) {
      const u = fork.members.get(bytesKey(device));
      return u !== undefined && equalBytes(u, user) ? 'member' : 'not-member';
    }
    if (this.keyOf(ref) === undefined) return 'unknown-epoch';
    const d = this.devices.get(bytesKey(device));
    if (d === undefined || !equalBytes(d.user, user)) return 'not-member';
    return this.spanAt(d, ref.epoch) ? 'member' : 'not-member';
  }

  /**
   * Adds what `older` knows of epochs before this history's earliest one (a key history
   * received on joining). Spans that reach the join epoch continue into this history's own.
   */
  prepend(older: EpochHistory): void {
    const first = this.earliest;
    if (first === undefined) throw new RangeError('prepend to an empty history');
    for (const [n, e] of older.epochs) if (n < first) this.epochs.set(n, e);
    for (const [k, old] of older.devices) {
      const clipped: number[] = [];
      for (let i = 0; i < old.spans.length; i += 2) {
        const from = old.spans[i] as number;
        const to = old.spans[i + 1] as number;
        if (from >= first) continue;
        clipped.push(from, to === OPEN || to > first ? first : to);
      }
      if (clipped.length === 0) continue;
      const mine = this.devices.get(k);
      if (mine === undefined) {
        this.devices.set(k, { user: old.user, device: old.device, spans: clipped });
      } else if (equalBytes(mine.user, old.user)) {
        // Join [a, first) and [first, b) into [a, b).
        if (clipped[clipped.length - 1] === first && mine.spans[0] === first) {
          clipped[clipped.length - 1] = mine.spans[1] as number;
          mine.spans.splice(0, 2);
        }
        mine.spans.unshift(...clipped);
      }
    }
  }

  /**
   * This history as CBOR, limited to epochs before `before` when given (a key history for a
   * joiner), with content keys unless `withContent` is false (a Space that hides its history
   * from new members: the joiner can place and check every earlier op, and read none).
   */
  toCbor(before = Number.MAX_SAFE_INTEGER, withContent = true): CborValue {
    const epochs: CborValue[] = [];
    for (const [n, e] of [...this.epochs].sort((a, b) => a[0] - b[0])) {
      if (n >= before) continue;
      epochs.push(
        withContent && e.content !== undefined
          ? [n, e.ref.commitHash, e.key, e.content]
          : [n, e.ref.commitHash, e.key],
      );
    }
    const devices: CborValue[] = [];
    for (const d of this.devices.values()) {
      const spans: number[] = [];
      for (let i = 0; i < d.spans.length; i += 2) {
        const from = d.spans[i] as number;
        const to = d.spans[i + 1] as number;
        if (from >= before) continue;
        spans.push(
          from,
          to === OPEN || to > before ? (before === Number.MAX_SAFE_INTEGER ? OPEN : before) : to,
        );
      }
      if (spans.length > 0) devices.push([d.device, d.user, spans]);
    }
    return [epochs, devices];
  }

  encode(before?: number, withContent?: boolean): Uint8Array {
    return encode(this.toCbor(before, withContent));
  }

  /**
   * A history from its encoding.
   *
   * @throws CodecError for malformed input (a bad key history from the network, a corrupt save).
   */
  static decode(bytes: Uint8Array): EpochHistory {
    return EpochHistory.fromCbor(decode(bytes, HISTORY_LIMITS));
  }

  /**
   * Everything this history holds, for the device's own save: {@link toCbor} plus what fork
   * choice needs after a restart (the undo records of recent epochs, and the keys and members
   * of abandoned ones). Never sent to anyone.
   */
  toSaved(): CborValue {
    return [
      this.toCbor(),
      this.undo.map((u) => [u.epoch, u.opened.map(keyBytes), u.closed.map(keyBytes)]),
      [...this.forked.values()].map(({ entry, members }) => [
        entry.ref.epoch,
        entry.ref.commitHash,
        entry.key,
        entry.content ?? null,
        [...members].map(([device, user]) => [keyBytes(device), user]),
      ]),
    ];
  }

  /**
   * A history from {@link toSaved}.
   *
   * @throws CodecError for malformed input (a corrupt save).
   */
  static fromSaved(v: CborValue): EpochHistory {
    const bad = (what: string): never => {
      throw new CodecError('wrong-type', `saved epoch history: ${what}`);
    };
    if (!Array.isArray(v) || v.length !== 3) return bad('not a triple');
    const [base, undo, forked] = v as CborValue[];
    const h = EpochHistory.fromCbor(base as CborValue);
    if (!Array.isArray(undo) || !Array.isArray(forked)) return bad('not lists');
    const keys = (list: CborValue | undefined): string[] => {
      if (!Array.isArray(list)) return bad('undo keys');
      return (list as CborValue[]).map((k) =>
        k instanceof Uint8Array && k.length === KEY_BYTES ? bytesKey(k) : bad('undo key'),
      );
    };
    for (const u of undo as CborValue[]) {
      if (!Array.isArray(u) || u.length !== 3) return bad('undo entry');
      const [epoch, opened, closed] = u as CborValue[];
      if (typeof epoch !== 'number') return bad('undo epoch');
      h.undo.push({ epoch, opened: keys(opened), closed: keys(closed) });
    }
    if (h.undo.length > UNDO_WINDOW) return bad('undo window');
    for (const f of forked as CborValue[]) {
      if (!Array.isArray(f) || f.length !== 5) return bad('forked entry');
      const [n, hash, key, content, members] = f as CborValue[];
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return bad('forked epoch');
      if (!(hash instanceof Uint8Array) || hash.length !== HASH_BYTES) return bad('forked hash');
      if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) return bad('forked key');
      if (content !== null && (!(content instanceof Uint8Array) || content.length !== KEY_BYTES))
        return bad('forked content key');
      if (!Array.isArray(members)) return bad('forked members');
      const map = new Map<string, UserId>();
      for (const m of members as CborValue[]) {
        if (!Array.isArray(m) || !(m[0] instanceof Uint8Array) || !(m[1] instanceof Uint8Array))
          return bad('forked member');
        map.set(bytesKey(m[0]), m[1] as UserId);
      }
      const ref = { epoch: n, commitHash: hash };
      h.forked.set(forkKey(ref), { entry: { ref, key, content: content ?? undefined }, members: map });
    }
    return h;
  }

  static fromCbor(v: CborValue): EpochHistory {
    const bad = (what: string): never => {
      throw new CodecError('wrong-type', `epoch history: ${what}`);
    };
    if (!Array.isArray(v) || v.length !== 2) return bad('not a pair');
    const [epochs, devices] = v as CborValue[];
    if (!Array.isArray(epochs) || !Array.isArray(devices)) return bad('not lists');
    const h = new EpochHistory();
    let prev = -1;
    for (const e of epochs as CborValue[]) {
      if (!Array.isArray(e) || (e.length !== 3 && e.length !== 4)) return bad('epoch entry');
      const [n, hash, key, content] = e as CborValue[];
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= prev) return bad('epoch number');
      if (!(hash instanceof Uint8Array) || hash.length !== HASH_BYTES) return bad('commit hash');
      if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) return bad('key');
      if (content !== undefined && (!(content instanceof Uint8Array) || content.length !== KEY_BYTES)) {
        return bad('content key');
      }
      h.epochs.set(n, { ref: { epoch: n, commitHash: hash }, key, content });
      prev = n;
    }
    h.last = prev < 0 ? undefined : prev;
    for (const d of devices as CborValue[]) {
      if (!Array.isArray(d) || d.length !== 3) return bad('device entry');
      const [device, user, spans] = d as CborValue[];
      if (!(device instanceof Uint8Array) || device.length !== KEY_BYTES) return bad('device');
      if (!(user instanceof Uint8Array) || user.length !== KEY_BYTES) return bad('user');
      if (!Array.isArray(spans) || spans.length === 0 || spans.length % 2 !== 0) return bad('spans');
      let at = -1;
      const list = spans as CborValue[];
      for (let i = 0; i < list.length; i += 2) {
        const from = list[i];
        const to = list[i + 1];
        if (typeof from !== 'number' || typeof to !== 'number') return bad('span');
        if (!Number.isSafeInteger(from) || from <= at) return bad('span order');
        const open = to === OPEN && i === list.length - 2;
        if (!open && (!Number.isSafeInteger(to) || to <= from)) return bad('span end');
        at = open ? Number.MAX_SAFE_INTEGER : to;
      }
      const k = bytesKey(device);
      if (h.devices.has(k)) return bad('device listed twice');
      h.devices.set(k, { user: user as UserId, device: device as DeviceId, spans: list as number[] });
    }
    return h;
  }
}
