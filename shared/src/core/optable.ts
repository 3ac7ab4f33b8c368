/**
 * The accepted ops of one Space, as compact columns indexed by acceptance number. Holds what
 * ordering and ancestry questions need and nothing else, so 100,000 ops cost little heap.
 * Acceptance order is a causal order: an op is accepted only after all its deps.
 */
import type { CborValue } from '../protocol/cbor.js';
import { bytesKey, keyBytes } from '../protocol/ids.js';
import type { Hlc } from '../protocol/op.js';
import { below, bin, column, columnBytes, corrupt, int, list } from './checkpoint.js';

function grow<T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  let n = a.length * 2;
  while (n < need) n *= 2;
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

/** Interns byte strings (user ids, device ids) as small integers. */
export class Interner {
  readonly keys: string[] = [];
  private readonly index = new Map<string, number>();

  intern(key: string): number {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.keys.length;
      this.keys.push(key);
      this.index.set(key, i);
    }
    return i;
  }

  get(key: string): number | undefined {
    return this.index.get(key);
  }

  /** Interns the keys of a checkpoint, in order, into this empty interner. */
  restore(v: CborValue | undefined): void {
    for (const k of list(v)) this.intern(bytesKey(bin(k)));
  }
}

/** A copy of `a` in an array of at least `min` slots (room to grow before the next doubling). */
function sized<T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(a: T, min: number): T {
  if (a.length >= min) return a;
  const b = new (a.constructor as new (n: number) => T)(min);
  b.set(a);
  return b;
}

export const FLAG_LATE = 1;

export class OpTable {
  count = 0;
  readonly users = new Interner();
  readonly devices = new Interner();
  /** `bytesKey(opId)` of each op. */
  readonly ids: string[] = [];
  private readonly byId = new Map<string, number>();
  private wall = new Float64Array(1024);
  private counter = new Uint32Array(1024);
  private epochNo = new Float64Array(1024);
  private userOf = new Int32Array(1024);
  private deviceOf = new Int32Array(1024);
  private flagBits = new Uint8Array(1024);
  private depsStart = new Int32Array(1025);
  private depsFlat = new Int32Array(2048);
  private mark = new Uint32Array(1024);
  private generation = 0;

  /** Adds an op; `key` is `bytesKey` of its OpId, `user` and `device` of its author's ids. */
  add(key: string, hlc: Hlc, epoch: number, user: string, device: string, deps: readonly number[]): number {
    const i = this.count;
    const n = i + 1;
    this.wall = grow(this.wall, n);
    this.counter = grow(this.counter, n);
    this.epochNo = grow(this.epochNo, n);
    this.userOf = grow(this.userOf, n);
    this.deviceOf = grow(this.deviceOf, n);
    this.flagBits = grow(this.flagBits, n);
    this.mark = grow(this.mark, n);
    this.depsStart = grow(this.depsStart, n + 1);
    const start = this.depsStart[i] as number;
    this.depsFlat = grow(this.depsFlat, start + deps.length);
    for (let d = 0; d < deps.length; d++) this.depsFlat[start + d] = deps[d] as number;
    this.depsStart[n] = start + deps.length;
    this.ids.push(key);
    this.byId.set(key, i);
    this.wall[i] = hlc.wallMs;
    this.counter[i] = hlc.counter;
    this.epochNo[i] = epoch;
    this.userOf[i] = this.users.intern(user);
    this.deviceOf[i] = this.devices.intern(device);
    this.count = n;
    return i;
  }

  indexOf(opIdKey: string): number | undefined {
    return this.byId.get(opIdKey);
  }

  user(i: number): number {
    return this.userOf[i] as number;
  }

  epoch(i: number): number {
    return this.epochNo[i] as number;
  }

  hlc(i: number): Hlc {
    return { wallMs: this.wall[i] as number, counter: this.counter[i] as number };
  }

  wallMs(i: number): number {
    return this.wall[i] as number;
  }

  deps(i: number): Int32Array {
    return this.depsFlat.subarray(this.depsStart[i], this.depsStart[i + 1]);
  }

  flags(i: number): number {
    return this.flagBits[i] as number;
  }

  setFlag(i: number, flag: number): void {
    this.flagBits[i] = (this.flagBits[i] as number) | flag;
  }

  /** Whether op `i` is after op `j` in HLC order (the first two keys of the total order). */
  hlcAfter(i: number, wallMs: number, counter: number): boolean {
    const w = this.wall[i] as number;
    return w !== wallMs ? w > wallMs : (this.counter[i] as number) > counter;
  }

  /**
   * The total order of section 5: HLC (a linear extension of causal order, since every op's
   * HLC is after its deps'), then author device bytes, then OpId bytes.
   */
  compare(i: number, j: number): number {
    if (i === j) return 0;
    const dw = (this.wall[i] as number) - (this.wall[j] as number);
    if (dw !== 0) return dw;
    const dc = (this.counter[i] as number) - (this.counter[j] as number);
    if (dc !== 0) return dc;
    const a = this.devices.keys[this.deviceOf[i] as number] as string;
    const b = this.devices.keys[this.deviceOf[j] as number] as string;
    if (a !== b) return a < b ? -1 : 1;
    const x = this.ids[i] as string;
    const y = this.ids[j] as string;
    return x < y ? -1 : x > y ? 1 : 0;
  }

  /**
   * Whether op `a` is in the causal past of the ops `from` (their deps closure, including
   * themselves). Walks back from `from`, never below `a`'s HLC: an ancestor of `a`'s
   * descendants has a later HLC than `a`, so nothing older can lead to it.
   */
  reaches(from: ArrayLike<number>, a: number): boolean {
    const gen = this.nextGeneration();
    const aw = this.wall[a] as number;
    const ac = this.counter[a] as number;
    const stack: number[] = [];
    for (let k = 0; k < from.length; k++) stack.push(from[k] as number);
    while (stack.length > 0) {
      const x = stack.pop() as number;
      if (x === a) return true;
      if (this.mark[x] === gen || !this.hlcAfter(x, aw, ac)) continue;
      this.mark[x] = gen;
      const end = this.depsStart[x + 1] as number;
      for (let d = this.depsStart[x] as number; d < end; d++) stack.push(this.depsFlat[d] as number);
    }
    return false;
  }

  /** Calls `visit` once for every op in the causal past of `from` (including `from`). */
  walkPast(from: ArrayLike<number>, visit: (i: number) => void): void {
    const gen = this.nextGeneration();
    const stack: number[] = [];
    for (let k = 0; k < from.length; k++) stack.push(from[k] as number);
    while (stack.length > 0) {
      const x = stack.pop() as number;
      if (this.mark[x] === gen) continue;
      this.mark[x] = gen;
      visit(x);
      const end = this.depsStart[x + 1] as number;
      for (let d = this.depsStart[x] as number; d < end; d++) stack.push(this.depsFlat[d] as number);
    }
  }

  /** The table as checkpoint items (checkpoint.ts): its interned ids, then its columns. */
  snapshot(): CborValue {
    const n = this.count;
    return [
      n,
      this.users.keys.map(keyBytes),
      this.devices.keys.map(keyBytes),
      this.ids.map(keyBytes),
      columnBytes(this.wall, n),
      columnBytes(this.counter, n),
      columnBytes(this.epochNo, n),
      columnBytes(this.userOf, n),
      columnBytes(this.deviceOf, n),
      columnBytes(this.flagBits, n),
      columnBytes(this.depsStart, n + 1),
      columnBytes(this.depsFlat, this.depsStart[n] as number),
    ];
  }

  /**
   * Fills this empty table from {@link snapshot}'s items, checking that they hold together
   * (every dep an earlier op, every user and device interned).
   *
   * @throws CheckpointError `corrupt`
   */
  restore(v: CborValue | undefined): void {
    const f = list(v, 12);
    const n = int(f[0]);
    this.users.restore(f[1]);
    this.devices.restore(f[2]);
    const ids = list(f[3]);
    if (ids.length !== n) corrupt('op ids and count differ');
    const room = Math.max(1024, n + 1);
    this.wall = sized(column(f[4], Float64Array, n), room);
    this.counter = sized(column(f[5], Uint32Array, n), room);
    this.epochNo = sized(column(f[6], Float64Array, n), room);
    this.userOf = sized(column(f[7], Int32Array, n), room);
    this.deviceOf = sized(column(f[8], Int32Array, n), room);
    this.flagBits = sized(column(f[9], Uint8Array, n), room);
    this.depsStart = sized(column(f[10], Int32Array, n + 1), room + 1);
    const flat = bin(f[11]).length / 4;
    this.depsFlat = sized(column(f[11], Int32Array, flat), Math.max(2048, flat + 1));
    this.mark = new Uint32Array(room);
    this.generation = 0;
    if (this.depsStart[0] !== 0 || this.depsStart[n] !== flat) corrupt('deps do not add up');
    const users = this.users.keys.length;
    const devices = this.devices.keys.length;
    for (let i = 0; i < n; i++) {
      const key = bytesKey(bin(ids[i]));
      if (this.byId.has(key)) corrupt('an op id twice');
      this.ids.push(key);
      this.byId.set(key, i);
      below(this.userOf[i], users);
      below(this.deviceOf[i], devices);
      const start = this.depsStart[i] as number;
      const end = this.depsStart[i + 1] as number;
      if (end < start) corrupt('deps do not add up');
      for (let d = start; d < end; d++) below(this.depsFlat[d], i);
    }
    this.count = n;
  }

  private nextGeneration(): number {
    this.generation = (this.generation + 1) >>> 0;
    if (this.generation === 0) {
      this.mark.fill(0);
      this.generation = 1;
    }
    return this.generation;
  }
}
