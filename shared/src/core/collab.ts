/**
 * Collaboratively edited post bodies (ARCHITECTURE.md section 5): a wiki/doc post is an
 * Automerge document whose changes travel inside `EditPost` ops.
 *
 * Design
 * - The document is `{ text: string }`, the string an Automerge text object. Edits are recorded
 *   with `updateText` (a diff turned into splices), so concurrent edits by different authors
 *   merge character by character instead of one overwriting the other.
 * - `CreatePost.collab` holds the creation change: one Automerge change chunk (which Automerge
 *   loads as a document). Not a `save()`d document chunk: those may carry DEFLATE-compressed
 *   columns, so what they cost to load cannot be bounded before Automerge runs. Every
 *   `EditPost.change` is one change chunk too.
 * - Everything is deterministic: changes are stamped with time 0 and no message, and the actor id
 *   of each change is derived from the author, the heads it was made on and the text it produces
 *   ({@link collabActor}). Replicas that build a document from the same inputs get the same bytes
 *   and hashes, and an edit made twice (a retry) is the same change, applied once.
 * - Functions are pure: an Automerge document handed in is never passed to a mutating call; each
 *   transition works on a clone.
 * - Change bytes come from the network. Before Automerge sees them they are bounded (chunk shape,
 *   number of ops and predecessors, see {@link MAX_COLLAB_CHANGE_OPS}); then every op must be a
 *   plain text edit of this document's text object, and the change must apply to the state made
 *   of exactly its own causal past. Each of these checks gives the same answer on every replica,
 *   whatever else it has applied, so replicas that saw the same changes agree on which were
 *   accepted and hold the same text (Automerge's merge is order-independent).
 *
 * Known limit: Automerge refuses a second change with an (actor, seq) pair it already holds. An
 * honest author never makes one (actors are per edit), but a member crafting two changes with
 * the same actor id makes replicas keep whichever arrived first. The reducer's total order over
 * ops (section 5) is what settles that case.
 *
 * Loading: Automerge (about 1.1 MB of wasm) is imported on first need, not with the core: call
 * {@link loadAutomerge} before any function here. The acceptance pipeline does so when an op
 * carries a collaborative body, so a device that never meets one never loads it (a browser
 * bundle keeps it in a chunk of its own). The default `@automerge/automerge` entry loads its
 * wasm under Node; a browser bundle needs the wasm handled by the bundler (see vite.config.ts).
 */
import type * as AM from '@automerge/automerge';
import { sha256 } from '../crypto/sha256.js';
import { concatBytes, fromHex, toHex } from '../protocol/ids.js';
import { MAX_COLLAB_CHANGE_BYTES, MAX_COLLAB_CHANGE_OPS } from '../protocol/limits.js';

export { MAX_COLLAB_CHANGE_OPS };

let A: typeof AM | undefined;
let loading: Promise<void> | undefined;
let loader: () => Promise<typeof AM> = () => import('@automerge/automerge');

/**
 * How this host loads Automerge, when the default entry does not suit it (a browser bundle
 * loads `@automerge/automerge/slim` and initialises the wasm from its URL). Call before the
 * first {@link loadAutomerge}.
 */
export function setAutomergeLoader(load: () => Promise<typeof AM>): void {
  loader = load;
}

/** Loads Automerge once; every other function of this module needs it loaded. */
export function loadAutomerge(): Promise<void> {
  loading ??= loader().then((m) => {
    A = m;
  });
  return loading;
}

/** Whether Automerge has been loaded (by {@link loadAutomerge}). */
export function automergeLoaded(): boolean {
  return A !== undefined;
}

function automerge(): typeof AM {
  if (A === undefined) throw new Error('Automerge is not loaded: await loadAutomerge() first');
  return A;
}

interface CollabRoot {
  text: string;
}

/**
 * A collaborative post body as one replica holds it. Immutable: transitions return a new one.
 * Treat as opaque outside this module.
 */
export interface CollabDoc {
  readonly am: AM.Doc<CollabRoot>;
  /** The text object's Automerge id (`counter@actor`), fixed by the creation change. */
  readonly textObj: string;
}

export type CollabLoad =
  { readonly ok: true; readonly doc: CollabDoc } | { readonly ok: false; readonly reason: 'malformed-doc' };

export type CollabEdit =
  | { readonly ok: true; readonly change: Uint8Array; readonly doc: CollabDoc }
  /** `unchanged`: the text is already `newText`; `too-large`: the change exceeds the limits. */
  | { readonly ok: false; readonly reason: 'unchanged' | 'too-large' };

export type CollabApply =
  | { readonly ok: true; readonly doc: CollabDoc }
  /**
   * `malformed-change`: never applicable (bad bytes, over a limit, not a plain text edit of this
   * document, or not applicable to its own causal past). `missing-deps`: a change it depends on
   * is not applied yet; hold it back and retry once that one is.
   */
  | { readonly ok: false; readonly reason: 'malformed-change' | 'missing-deps' };

const ACTOR_CONTEXT = new TextEncoder().encode('conclave/collab-actor/1');
const utf8 = new TextEncoder();

/**
 * The Automerge actor id (16 bytes, hex) of a change by `author` (its device id) on a document
 * at `heads` producing `text`. Deterministic, so replicas rebuilding the creation change get
 * identical bytes, and never shared by two different edits: Automerge rejects a second change
 * with an (actor, seq) it already holds, so one fixed actor per device would make two concurrent
 * edits from the same device (two tabs, a restored backup) fail to merge.
 */
function collabActor(author: Uint8Array, heads: readonly string[], text: string): string {
  const hashes = heads.map((h) => fromHex(h) ?? new Uint8Array(0));
  const input = concatBytes(
    ACTOR_CONTEXT,
    u32(author.length),
    author,
    u32(heads.length),
    ...hashes,
    utf8.encode(text),
  );
  return toHex(sha256(input).subarray(0, 16));
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

const sortedHeads = (doc: AM.Doc<CollabRoot>): string[] => [...automerge().getHeads(doc)].sort();

/**
 * The creation change of a collaborative post with `text`, by the device `author` (its id):
 * what goes in `CreatePost.collab`. The same inputs always give the same bytes. The caller
 * checks the result against `MAX_COLLAB_CHANGE_BYTES` (the op codec's limit).
 */
export function createCollab(text: string, author: Uint8Array): Uint8Array {
  const doc = automerge().change(
    automerge().init<CollabRoot>({ actor: collabActor(author, [], text) }),
    { time: 0 },
    (d) => {
      d.text = text;
    },
  );
  const change = automerge().getLastLocalChange(doc);
  if (change === undefined) throw new Error('collab: Automerge recorded no creation change');
  return change;
}

/**
 * Loads a collaborative post from its creation change (`CreatePost.collab`, from the network).
 * Never throws: anything but one bounded change chunk that creates `{ text }` and only inserts
 * characters into it is `malformed-doc`.
 */
export function loadCollab(creation: Uint8Array): CollabLoad {
  const bad = { ok: false, reason: 'malformed-doc' } as const;
  if (!withinLimits(creation)) return bad;
  try {
    const decoded = automerge().decodeChange(creation);
    if (decoded.deps.length !== 0 || decoded.seq !== 1) return bad;
    const [first, ...rest] = decoded.ops as readonly unknown[];
    const textObj = `${decoded.startOp}@${decoded.actor}`;
    if (!isMakeText(first) || !rest.every((op) => isTextEdit(op, textObj) && !isDelete(op))) return bad;
    const am = automerge().load<CollabRoot>(creation);
    if (typeof am.text !== 'string' || automerge().getObjectId(am, 'text') !== textObj) return bad;
    return { ok: true, doc: { am, textObj } };
  } catch {
    return bad;
  }
}

function loaded(from: Uint8Array | CollabDoc): CollabDoc {
  if (!(from instanceof Uint8Array)) return from;
  const r = loadCollab(from);
  // Callers edit documents they created or accepted; bytes that do not load are a bug.
  if (!r.ok) throw new Error('collab: editing a document that does not load');
  return r.doc;
}

/**
 * The change that turns `from`'s text into `newText`, made by the device `author` (its id): what
 * goes in `EditPost.change`, with the document after it. Only the difference is recorded, so it
 * merges with concurrent edits elsewhere in the text. Throws only if `from` is bytes that do not
 * load (a bug: callers hold documents they created or accepted).
 */
export function editCollab(from: Uint8Array | CollabDoc, newText: string, author: Uint8Array): CollabEdit {
  const base = loaded(from);
  if (base.am.text === newText) return { ok: false, reason: 'unchanged' };
  const actor = collabActor(author, sortedHeads(base.am), newText);
  const am = automerge().change(automerge().clone(base.am, { actor }), { time: 0 }, (d) => {
    automerge().updateText(d, ['text'], newText);
  });
  const change = automerge().getLastLocalChange(am);
  if (change === undefined) return { ok: false, reason: 'unchanged' };
  if (!withinLimits(change)) return { ok: false, reason: 'too-large' };
  return { ok: true, change, doc: { am, textObj: base.textObj } };
}

/**
 * Applies one change from an `EditPost`. Never throws, and never changes `doc`. A change
 * already applied is accepted again as a no-op.
 */
export function applyCollabChange(doc: CollabDoc, change: Uint8Array): CollabApply {
  const malformed = { ok: false, reason: 'malformed-change' } as const;
  if (!withinLimits(change)) return malformed;
  try {
    const decoded = automerge().decodeChange(change);
    const ops = decoded.ops as readonly unknown[];
    if (decoded.deps.length === 0 || ops.length === 0) return malformed;
    if (!ops.every((op) => isTextEdit(op, doc.textObj))) return malformed;
    if (automerge().hasHeads(doc.am, [decoded.hash])) return { ok: true, doc };
    if (!automerge().hasHeads(doc.am, decoded.deps)) return { ok: false, reason: 'missing-deps' };
    const heads = sortedHeads(doc.am);
    const deps = [...decoded.deps].sort();
    if (heads.length !== deps.length || heads.some((h, i) => h !== deps[i])) {
      // Applied to the current state, a change naming elements of a concurrent change it does
      // not depend on would succeed or fail depending on delivery order. Applied to exactly its
      // causal past, every replica decides alike. (The backend's fork skips building the JS
      // view of that state, which `clone(view(...))` would do: a few ms against half of one.)
      const past = automerge().getBackend(doc.am).fork(undefined, decoded.deps);
      try {
        past.applyChanges([change]);
      } finally {
        past.free();
      }
    }
    const [am] = automerge().applyChanges(automerge().clone(doc.am), [change]);
    if (!automerge().hasHeads(am, [decoded.hash]) || typeof am.text !== 'string') return malformed;
    return { ok: true, doc: { am, textObj: doc.textObj } };
  } catch {
    // Automerge reports bad bytes and dangling references by throwing (a caught PanicError for
    // the latter); the clone it was working on is dropped.
    return malformed;
  }
}

/**
 * The hash of a change (a creation or an edit) and the hashes of the changes it depends on,
 * or `undefined` for bytes that are not a change within the limits. Never throws.
 */
export function collabChangeInfo(change: Uint8Array): { hash: string; deps: readonly string[] } | undefined {
  if (!withinLimits(change)) return undefined;
  try {
    const decoded = automerge().decodeChange(change);
    return { hash: decoded.hash, deps: decoded.deps };
  } catch {
    return undefined;
  }
}

/** The current text of a collaborative post. */
export function collabText(doc: CollabDoc): string {
  return doc.am.text;
}

/** The hashes of the changes no other applied change depends on, sorted: equal sets of changes give equal heads. */
export function collabHeads(doc: CollabDoc): string[] {
  return sortedHeads(doc.am);
}

// ---------- op shapes (from decodeChange; its Op type omits elemId and insert) ----------

type Fields = Readonly<Record<string, unknown>>;

const isFields = (op: unknown): op is Fields => typeof op === 'object' && op !== null;

function isMakeText(op: unknown): boolean {
  return (
    isFields(op) &&
    op['action'] === 'makeText' &&
    op['obj'] === '_root' &&
    op['key'] === 'text' &&
    Array.isArray(op['pred']) &&
    op['pred'].length === 0
  );
}

const isDelete = (op: unknown): boolean => isFields(op) && op['action'] === 'del';

/**
 * An insertion of characters into, or a deletion of one character from, the text object `textObj`,
 * as Automerge's own splices make them. Anything else (other objects, overwrites, marks, blocks,
 * non-string values) could reshape the document, so it is refused.
 */
function isTextEdit(op: unknown, textObj: string): boolean {
  if (!isFields(op) || op['obj'] !== textObj || typeof op['elemId'] !== 'string') return false;
  const pred = op['pred'];
  if (!Array.isArray(pred)) return false;
  if (op['action'] === 'set') {
    const datatype = op['datatype'];
    return (
      op['insert'] === true &&
      typeof op['value'] === 'string' &&
      op['value'].length > 0 &&
      (datatype === undefined || datatype === 'str') &&
      pred.length === 0
    );
  }
  // A deletion names the character's own insertion as its one predecessor (characters are
  // never overwritten, since overwrites are refused above).
  return op['action'] === 'del' && op['insert'] !== true && pred.length === 1 && pred[0] === op['elemId'];
}

// ---------- bounding a change chunk before Automerge decodes it ----------

const MAGIC = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE = 1;
/** Column specs (id << 4 | type) in a change's ops: the action column (integer) and the pred group. */
const ACTION_COLUMN = (4 << 4) | 2;
const PRED_GROUP_COLUMN = (7 << 4) | 0;
const DEFLATE_BIT = 0b1000;

/**
 * Whether `bytes` is one uncompressed change chunk, at most `MAX_COLLAB_CHANGE_BYTES` long,
 * declaring at most `MAX_COLLAB_CHANGE_OPS` ops and as many predecessor references. Reads only
 * the header and two run-length columns, in time linear in the byte length.
 */
function withinLimits(bytes: Uint8Array): boolean {
  if (bytes.length > MAX_COLLAB_CHANGE_BYTES) return false;
  const r = new Reader(bytes);
  if (!MAGIC.every((m) => r.byte() === m)) return false;
  r.advance(4); // checksum; Automerge verifies it
  if (r.byte() !== CHUNK_CHANGE) return false;
  const length = r.uint();
  if (length === undefined || r.pos + length !== bytes.length) return false;
  r.advance(r.count(32)); // dependencies
  r.advance(r.uint()); // actor
  r.uint(); // seq
  r.uint(); // start op
  r.int(); // time
  r.advance(r.uint()); // message
  const others = r.uint() ?? Infinity;
  for (let i = 0; i < others && r.ok(); i++) r.advance(r.uint());
  const columns = r.uint() ?? Infinity;
  const layout: { spec: number; start: number; end: number }[] = [];
  let offset = 0;
  for (let i = 0; i < columns && r.ok(); i++) {
    const spec = r.uint();
    const len = r.uint();
    if (spec === undefined || len === undefined) return false;
    layout.push({ spec, start: offset, end: offset + len });
    offset += len;
  }
  if (!r.ok() || r.pos + offset > bytes.length) return false;
  // Automerge refuses compressed columns in a change; refuse them before it inflates anything.
  if (layout.some((c) => (c.spec & DEFLATE_BIT) !== 0)) return false;
  const column = (spec: number) => {
    const c = layout.find((x) => x.spec === spec);
    return c === undefined ? new Uint8Array(0) : bytes.subarray(r.pos + c.start, r.pos + c.end);
  };
  const ops = runLengthTotal(column(ACTION_COLUMN), false);
  const preds = runLengthTotal(column(PRED_GROUP_COLUMN), true);
  return (
    ops !== undefined && preds !== undefined && ops <= MAX_COLLAB_CHANGE_OPS && preds <= MAX_COLLAB_CHANGE_OPS
  );
}

/**
 * Walks an RLE column of unsigned integers (runs: `n > 0` then one value repeated n times,
 * `-n` then n literal values, `0` then a count of nulls). Returns the number of items, or with
 * `sum` the sum of the values; undefined when malformed or past the limit.
 */
function runLengthTotal(col: Uint8Array, sum: boolean): number | undefined {
  const r = new Reader(col);
  let total = 0;
  while (r.ok() && r.pos < col.length && total <= MAX_COLLAB_CHANGE_OPS) {
    const run = r.int();
    if (run === undefined) return undefined;
    if (run > 0) {
      const v = r.uint();
      if (v === undefined) return undefined;
      total += sum ? run * v : run;
    } else if (run < 0) {
      for (let i = 0; i < -run && r.ok() && total <= MAX_COLLAB_CHANGE_OPS; i++) {
        const v = r.uint();
        total += sum ? (v ?? 0) : 1;
      }
    } else {
      const nulls = r.uint();
      if (nulls === undefined) return undefined;
      total += sum ? 0 : nulls;
    }
  }
  return r.ok() ? total : undefined;
}

/** LEB128 reading with a sticky failure flag; numbers above 2^53 count as failures. */
class Reader {
  pos = 0;
  private failed = false;
  constructor(private readonly b: Uint8Array) {}

  /** A method, not a field: TypeScript would keep a checked field narrowed across reads. */
  ok(): boolean {
    return !this.failed;
  }

  byte(): number | undefined {
    const v = this.b[this.pos];
    if (v === undefined) this.failed = true;
    else this.pos++;
    return v;
  }

  advance(n: number | undefined): void {
    if (n === undefined || this.pos + n > this.b.length) this.failed = true;
    else this.pos += n;
  }

  /** `n` items of `size` bytes each, behind an unsigned count. */
  count(size: number): number | undefined {
    const n = this.uint();
    return n === undefined ? undefined : n * size;
  }

  uint(): number | undefined {
    let v = 0;
    for (let shift = 0; !this.failed; shift += 7) {
      const x = this.byte();
      if (x === undefined || shift > 49) break;
      v += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) return v;
    }
    this.failed = true;
    return undefined;
  }

  int(): number | undefined {
    let v = 0;
    for (let shift = 0; !this.failed; shift += 7) {
      const x = this.byte();
      if (x === undefined || shift > 49) break;
      v += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) return (x & 0x40) !== 0 ? v - 2 ** (shift + 7) : v;
    }
    this.failed = true;
    return undefined;
  }
}
