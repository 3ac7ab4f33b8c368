import fc from 'fast-check';
import { expectCodecError, thrown } from './codec.testing.js';
import { describe, expect, it } from 'vitest';
import { type CborValue, decode, encode } from './cbor.js';
import { CodecError } from './errors.js';
import {
  type DeviceId,
  type OpId,
  type PostId,
  type SpaceId,
  type ThreadId,
  HASH_BYTES,
  ID16_BYTES,
  KEY_BYTES,
  SIG_BYTES,
  concatBytes,
  toHex,
} from './ids.js';
import {
  MAX_ATTACHMENTS,
  MAX_COLLAB_CHANGE_BYTES,
  MAX_DEPS,
  MAX_DESCRIPTION_BYTES,
  MAX_KEY_HISTORY_BYTES,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  MAX_OP_BYTES,
  MAX_POST_TEXT_BYTES,
} from './limits.js';
import {
  type BlobRef,
  type Contents,
  type OpKind,
  type OpOf,
  type SignedOp,
  BODY_CODECS,
  CONTENT_NONCE_BYTES,
  CONTENT_TAG_BYTES,
  KIND_CODES,
  OP_KINDS,
  OP_SIG_CONTEXT,
  OP_VERSION,
  CONTENT_SEAL_CONTEXT,
  canonicalDeps,
  contentAd,
  decodeContent,
  decodeOp,
  encodeContent,
  encodeOp,
  encodeUnsigned,
  epochBytes,
} from './op.js';
import { arbBytes, arbContent, arbOpOf, arbSignedOp } from './op.arbitraries.js';

// ---------- helpers ----------

/** The op's wire array, freshly decoded so each caller may mutate its own copy. */
function wireOf(op: SignedOp): CborValue[] {
  return decode(encodeOp(op)) as CborValue[];
}

function setAt(wire: CborValue[], path: readonly number[], value: CborValue): void {
  let node = wire;
  for (const i of path.slice(0, -1)) node = node[i] as CborValue[];
  const last = path[path.length - 1];
  if (last === undefined || !Array.isArray(node)) throw new Error(`bad path ${path.join('.')}`);
  node[last] = value;
}

function getAt(wire: CborValue, path: readonly number[]): CborValue {
  let node = wire;
  for (const i of path) node = (node as CborValue[])[i] as CborValue;
  return node;
}

/** Re-encodes the op's wire array after `edit`: how a peer would craft a malformed op. */
function edited(op: SignedOp, edit: (w: CborValue[]) => void): Uint8Array {
  const w = wireOf(op);
  edit(w);
  return encode(w);
}

/** The op's bytes with the value at `path` of its wire array replaced. */
function withField(op: SignedOp, path: readonly number[], value: CborValue): Uint8Array {
  const w = wireOf(op);
  setAt(w, path, value);
  return encode(w);
}

const bytesOf = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill);
const dep = (first: number): OpId => {
  const d = bytesOf(HASH_BYTES, 7);
  d[0] = first;
  return d as OpId;
};

/** A deterministic valid op of `kind` with two deps. */
function baseOp<K extends OpKind>(kind: K): OpOf<K> {
  const [op] = fc.sample(arbOpOf(kind), { numRuns: 1, seed: 20251125 });
  if (op === undefined) throw new Error('fc.sample returned nothing');
  return { ...op, deps: [dep(1), dep(2)] };
}

const blob = (fill: number): BlobRef => ({
  hash: bytesOf(HASH_BYTES, fill),
  key: bytesOf(KEY_BYTES, fill),
  size: 12345,
  mime: 'image/png',
  name: 'cat.png',
});

/** A CreatePost with every optional part present. */
function fullPost(): OpOf<'CreatePost'> {
  const op = baseOp('CreatePost');
  return {
    ...op,
    body: {
      ...op.body,
      thread: bytesOf(ID16_BYTES, 3) as ThreadId,
      parent: bytesOf(ID16_BYTES, 4) as PostId,
    },
  };
}

/** A post's content with every optional part present, so blob fields have a path on the wire. */
function fullContent(): Contents['CreatePost'] {
  return { text: 'hello', body: blob(4), attachments: [blob(5)], collab: bytesOf(10) };
}

// ---------- round trip ----------

describe('op round trip', () => {
  it('decodeOp(encodeOp(op)) equals op and re-encodes identically, for every kind', () => {
    const seen = new Set<OpKind>();
    fc.assert(
      fc.property(arbSignedOp(), (op) => {
        seen.add(op.kind);
        const b = encodeOp(op);
        expect(b.length).toBeLessThanOrEqual(MAX_OP_BYTES);
        const back = decodeOp(b);
        expect(back).toStrictEqual(op);
        expect(toHex(encodeOp(back))).toBe(toHex(b));
      }),
      { numRuns: 400 },
    );
    expect([...seen].sort()).toStrictEqual([...OP_KINDS].sort());
  });

  it('signs every field but sig, behind the context string', () => {
    fc.assert(
      fc.property(arbSignedOp(), arbBytes(SIG_BYTES), (op, otherSig) => {
        const unsigned = encodeUnsigned(op);
        const resigned: SignedOp = { ...op, sig: otherSig };
        expect(toHex(encodeUnsigned(resigned))).toBe(toHex(unsigned));
        const headerWire = wireOf(op).slice(0, 9);
        expect(toHex(unsigned)).toBe(toHex(concatBytes(OP_SIG_CONTEXT, encode(headerWire))));
      }),
      { numRuns: 200 },
    );
  });

  it('has a wire code for every kind, each used once, and a codec for each', () => {
    const codes = OP_KINDS.map((k) => KIND_CODES[k]);
    expect(new Set(codes).size).toBe(codes.length);
    expect(Object.keys(BODY_CODECS).sort()).toStrictEqual([...OP_KINDS].sort());
  });

  it('the largest legal ops fit in MAX_OP_BYTES', () => {
    const big = (fill: number): BlobRef => ({
      ...blob(fill),
      size: Number.MAX_SAFE_INTEGER,
      mime: 'm'.repeat(MAX_MIME_BYTES),
      name: 'n'.repeat(MAX_NAME_BYTES),
    });
    const header = {
      deps: canonicalDeps(Array.from({ length: MAX_DEPS }, (_, i) => dep(i))),
      epoch: { epoch: Number.MAX_SAFE_INTEGER, commitHash: bytesOf(HASH_BYTES) },
      hlc: { wallMs: Number.MAX_SAFE_INTEGER, counter: Number.MAX_SAFE_INTEGER },
    };
    const post = baseOp('CreatePost');
    const maxContent = encodeContent('CreatePost', {
      text: '😀'.repeat(MAX_POST_TEXT_BYTES / 4),
      body: big(1),
      attachments: Array.from({ length: MAX_ATTACHMENTS }, (_, i) => big(i)),
      collab: bytesOf(MAX_COLLAB_CHANGE_BYTES),
    });
    const maxPost: OpOf<'CreatePost'> = {
      ...post,
      ...header,
      body: {
        ...fullPost().body,
        collab: true,
        content: bytesOf(CONTENT_NONCE_BYTES + maxContent.length + CONTENT_TAG_BYTES),
      },
    };
    const keys = baseOp('KeyHistory');
    const maxKeys: OpOf<'KeyHistory'> = {
      ...keys,
      ...header,
      body: { ...keys.body, payload: bytesOf(MAX_KEY_HISTORY_BYTES) },
    };
    for (const op of [maxPost, maxKeys]) {
      const b = encodeOp(op);
      expect(b.length).toBeLessThanOrEqual(MAX_OP_BYTES);
      expect(decodeOp(b)).toStrictEqual(op);
    }
  });
});

// ---------- wrong types ----------

type FieldType = 'id16' | 'key' | 'hash' | 'sig' | 'text' | 'uint' | 'enum' | 'bool' | 'bytes' | 'array';
type Field = FieldType | `${FieldType}?`;

/** Each kind's body positions, as the op format defines them (cross-checked against BODY_CODECS). */
const BODY_FIELDS: { readonly [K in OpKind]: readonly Field[] } = {
  CreateSpace: ['text', 'text'],
  CreateChannel: ['id16', 'text', 'enum', 'text'],
  EditChannel: ['id16', 'text?', 'text?', 'bool?'],
  CreateThread: ['id16', 'id16', 'id16?', 'bytes'],
  CreatePost: ['id16', 'id16', 'id16?', 'id16?', 'bool', 'bytes'],
  EditPost: ['id16', 'bool', 'bytes'],
  DeletePost: ['id16', 'text'],
  AssignRole: ['key', 'enum'],
  RevokeRole: ['key', 'enum'],
  CreateInvite: ['id16', 'key', 'uint', 'uint', 'enum'],
  RevokeInvite: ['id16'],
  Admit: ['id16', 'key'],
  RemoveMember: ['key', 'uint', 'text'],
  Ban: ['key', 'uint', 'text'],
  Unban: ['key'],
  Mute: ['key', 'uint?', 'text'],
  Unmute: ['key'],
  Timeout: ['key', 'uint', 'text'],
  SetSpaceSettings: ['text?', 'text?', 'enum?'],
  KeyHistory: ['key', 'bytes'],
  SetProfile: ['text'],
};

const HEADER_FIELDS: readonly (readonly [string, readonly number[], Field])[] = [
  ['space', [1], 'id16'],
  ['kind', [2], 'uint'],
  ['body', [3], 'array'],
  ['deps', [4], 'array'],
  ['deps[0]', [4, 0], 'hash'],
  ['epoch', [5], 'array'],
  ['epoch.number', [5, 0], 'uint'],
  ['epoch.commitHash', [5, 1], 'hash'],
  ['hlc', [6], 'array'],
  ['hlc.wallMs', [6, 0], 'uint'],
  ['hlc.counter', [6, 1], 'uint'],
  ['author', [7], 'key'],
  ['cert', [8], 'array'],
  ['cert.user', [8, 0], 'key'],
  ['cert.createdMs', [8, 1], 'uint'],
  ['cert.sig', [8, 2], 'sig'],
  ['sig', [9], 'sig'],
];

const BLOB_FIELDS: readonly Field[] = ['hash', 'key', 'uint', 'text', 'text'];

type Category = 'uint' | 'nint' | 'text' | 'bytes' | 'bool' | 'null' | 'array' | 'map';

const OF_EACH_TYPE: readonly (readonly [Category, CborValue])[] = [
  ['uint', 5],
  ['nint', -1],
  ['text', 'x'],
  ['bytes', bytesOf(16)],
  ['bool', true],
  ['null', null],
  ['array', []],
  ['map', new Map([[1, 1]])],
];

const ACCEPTS: { readonly [T in FieldType]: Category } = {
  id16: 'bytes',
  key: 'bytes',
  hash: 'bytes',
  sig: 'bytes',
  bytes: 'bytes',
  text: 'text',
  uint: 'uint',
  enum: 'uint',
  bool: 'bool',
  array: 'array',
};

const FIXED_LENGTH: Partial<Record<FieldType, number>> = {
  id16: ID16_BYTES,
  key: KEY_BYTES,
  hash: HASH_BYTES,
  sig: SIG_BYTES,
};

/** Values a field of type `field` must refuse: every other CBOR type, wrong lengths, unknown enum values. */
function badValues(field: Field): [string, CborValue][] {
  const nullable = field.endsWith('?');
  const type = field.replace('?', '') as FieldType;
  const out: [string, CborValue][] = OF_EACH_TYPE.filter(
    ([cat]) => cat !== ACCEPTS[type] && !(nullable && cat === 'null'),
  ).map(([cat, v]) => [cat, v]);
  const len = FIXED_LENGTH[type];
  if (len !== undefined)
    out.push([`${len - 1} bytes`, bytesOf(len - 1)], [`${len + 1} bytes`, bytesOf(len + 1)]);
  if (type === 'enum') out.push(['unknown enum value', 99]);
  return out;
}

function expectEveryBadValueRejected(op: SignedOp, path: readonly number[], field: Field): number {
  let checked = 0;
  for (const [what, bad] of badValues(field)) {
    const b = withField(op, path, bad);
    const e = thrown(() => decodeOp(b));
    expect(e, `${op.kind} at ${path.join('.')} (${field}) := ${what}`).toBeInstanceOf(CodecError);
    if (e instanceof CodecError)
      expect(e.code, `${op.kind} at ${path.join('.')} := ${what}`).toBe('wrong-type');
    checked++;
  }
  return checked;
}

describe('decodeOp rejects a field of the wrong type', () => {
  it('the field table matches the codecs', () => {
    for (const k of OP_KINDS) expect(BODY_FIELDS[k].length, k).toBe(BODY_CODECS[k].fields);
  });

  it.each(OP_KINDS)('%s: every body field', (kind) => {
    const op = kind === 'CreatePost' ? fullPost() : baseOp(kind);
    // The base op itself is valid, so each rejection is the edit's doing.
    expect(decodeOp(encodeOp(op))).toStrictEqual(op);
    let checked = 0;
    BODY_FIELDS[kind].forEach((field, i) => {
      checked += expectEveryBadValueRejected(op, [3, i], field);
    });
    expect(checked).toBeGreaterThan(0);
  });

  it('every field of a blob reference in a post content (body and attachments)', () => {
    for (const at of [[1], [2, 0]]) {
      BLOB_FIELDS.forEach((field, i) => {
        for (const [what, bad] of badValues(field)) {
          const e = thrown(() =>
            decodeContent('CreatePost', contentWith(fullContent(), [...at, i], bad), true),
          );
          expect(e, `content at ${[...at, i].join('.')} := ${what}`).toBeInstanceOf(CodecError);
        }
      });
    }
  });

  it('every header field', () => {
    for (const kind of ['CreatePost', 'Ban', 'KeyHistory'] as const) {
      const op = baseOp(kind);
      expect(decodeOp(encodeOp(op))).toStrictEqual(op);
      for (const [, path, field] of HEADER_FIELDS) expectEveryBadValueRejected(op, path, field);
    }
  });

  it('an op that is not an array', () => {
    for (const v of [5, 'op', bytesOf(10), null, new Map([[0, 1]])]) {
      expectCodecError(() => decodeOp(encode(v)), 'wrong-type');
    }
  });
});

describe('decodeOp rejects wrong arity', () => {
  const op = fullPost();

  it('of the op array', () => {
    expectCodecError(() => decodeOp(edited(op, (w) => w.pop())), 'wrong-type');
    expectCodecError(() => decodeOp(edited(op, (w) => w.push(null))), 'wrong-type');
    expectCodecError(() => decodeOp(encode([])), 'wrong-type');
  });

  it.each(OP_KINDS)('of the %s body', (kind) => {
    const o = baseOp(kind);
    expectCodecError(() => decodeOp(edited(o, (w) => (w[3] as CborValue[]).pop())), 'wrong-type');
    expectCodecError(() => decodeOp(edited(o, (w) => (w[3] as CborValue[]).push(null))), 'wrong-type');
  });

  it('of a content and its blob references', () => {
    for (const path of [[], [1], [2, 0]]) {
      const shorter = contentWith(fullContent(), path, (w) => (w as CborValue[]).pop());
      const longer = contentWith(fullContent(), path, (w) => (w as CborValue[]).push(0));
      expectCodecError(() => decodeContent('CreatePost', shorter, true), 'wrong-type');
      expectCodecError(() => decodeContent('CreatePost', longer, true), 'wrong-type');
    }
  });

  it('of epoch, hlc and cert', () => {
    for (const path of [[5], [6], [8]]) {
      const shorter = edited(op, (w) => (getAt(w, path) as CborValue[]).pop());
      const longer = edited(op, (w) => (getAt(w, path) as CborValue[]).push(0));
      expectCodecError(() => decodeOp(shorter), 'wrong-type');
      expectCodecError(() => decodeOp(longer), 'wrong-type');
    }
  });
});

describe('decodeOp rejects unknown kinds and versions', () => {
  const op = baseOp('CreatePost');

  it.each([0, 20, 255, 256, 2 ** 32, -1, -20])('kind code %s', (code) => {
    expectCodecError(() => decodeOp(edited(op, (w) => (w[2] = code))), 'wrong-type');
  });

  it.each([0, 1, 3, 255, -1])('version %s', (v) => {
    expectCodecError(() => decodeOp(edited(op, (w) => (w[0] = v))), 'wrong-type');
  });

  it('a kind code with another kind’s body', () => {
    const bytes = edited(op, (w) => (w[2] = KIND_CODES.DeletePost));
    expectCodecError(() => decodeOp(bytes), 'wrong-type');
  });
});

describe('decodeOp checks deps', () => {
  const op = baseOp('CreatePost');
  const withDeps = (deps: readonly OpId[]): Uint8Array => edited(op, (w) => (w[4] = [...deps]));

  it('accepts sorted, unique deps up to MAX_DEPS', () => {
    const max = Array.from({ length: MAX_DEPS }, (_, i) => dep(i));
    expect(decodeOp(withDeps(max)).deps).toStrictEqual(max);
    expect(decodeOp(withDeps([])).deps).toStrictEqual([]);
  });

  it('rejects unsorted deps', () => {
    expectCodecError(() => decodeOp(withDeps([dep(2), dep(1)])), 'wrong-type');
    expectCodecError(() => decodeOp(withDeps([dep(1), dep(3), dep(2)])), 'wrong-type');
  });

  it('rejects duplicated deps', () => {
    expectCodecError(() => decodeOp(withDeps([dep(1), dep(1)])), 'wrong-type');
    expectCodecError(() => decodeOp(withDeps([dep(1), dep(2), dep(2)])), 'wrong-type');
  });

  it('rejects more than MAX_DEPS deps', () => {
    const tooMany = Array.from({ length: MAX_DEPS + 1 }, (_, i) => dep(i));
    expectCodecError(() => decodeOp(withDeps(tooMany)), 'wrong-type');
  });

  it('canonicalDeps produces what decodeOp accepts', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(dep(1), dep(2), dep(3), dep(200)), { maxLength: 10 }), (ds) => {
        const canon = canonicalDeps(ds);
        expect(decodeOp(withDeps(canon)).deps).toStrictEqual(canon);
        expect(new Set(canon.map(toHex)).size).toBe(new Set(ds.map(toHex)).size);
      }),
      { numRuns: 200 },
    );
  });
});

// ---------- limits ----------

/** [what, kind, body position, limit in UTF-8 bytes] for every text field. */
const TEXT_LIMITS: readonly (readonly [string, OpKind, readonly number[], number])[] = [
  ['CreateSpace.name', 'CreateSpace', [3, 0], MAX_NAME_BYTES],
  ['CreateSpace.description', 'CreateSpace', [3, 1], MAX_DESCRIPTION_BYTES],
  ['CreateChannel.name', 'CreateChannel', [3, 1], MAX_NAME_BYTES],
  ['CreateChannel.topic', 'CreateChannel', [3, 3], MAX_DESCRIPTION_BYTES],
  ['EditChannel.name', 'EditChannel', [3, 1], MAX_NAME_BYTES],
  ['EditChannel.topic', 'EditChannel', [3, 2], MAX_DESCRIPTION_BYTES],
  ['DeletePost.reason', 'DeletePost', [3, 1], MAX_DESCRIPTION_BYTES],
  ['RemoveMember.reason', 'RemoveMember', [3, 2], MAX_DESCRIPTION_BYTES],
  ['Ban.reason', 'Ban', [3, 2], MAX_DESCRIPTION_BYTES],
  ['Mute.reason', 'Mute', [3, 2], MAX_DESCRIPTION_BYTES],
  ['Timeout.reason', 'Timeout', [3, 2], MAX_DESCRIPTION_BYTES],
  ['SetSpaceSettings.name', 'SetSpaceSettings', [3, 0], MAX_NAME_BYTES],
  ['SetSpaceSettings.description', 'SetSpaceSettings', [3, 1], MAX_DESCRIPTION_BYTES],
];

describe('decodeOp limits text by UTF-8 bytes', () => {
  it.each(TEXT_LIMITS)('%s: at most %s bytes', (_what, kind, path, limit) => {
    const op = baseOp(kind);
    const withText = (t: string): Uint8Array => withField(op, path, t);
    // 1-, 3- and 4-byte characters, exactly at the limit and one character over it.
    for (const [ch, size] of [
      ['a', 1],
      ['€', 3],
      ['😀', 4],
    ] as const) {
      const fits = ch.repeat(Math.floor(limit / size));
      expect(getAt(wireOf(decodeOp(withText(fits))), path)).toBe(fits);
      expectCodecError(() => decodeOp(withText(fits + ch)), 'wrong-type');
    }
  });

  it('byte strings', () => {
    const keys = baseOp('KeyHistory');
    expect(decodeOp(withField(keys, [3, 1], bytesOf(MAX_KEY_HISTORY_BYTES)))).toBeDefined();
    expectCodecError(
      () => decodeOp(withField(keys, [3, 1], bytesOf(MAX_KEY_HISTORY_BYTES + 1))),
      'wrong-type',
    );
    // Sealed content is at least a nonce and a tag.
    const post = fullPost();
    expect(decodeOp(withField(post, [3, 5], bytesOf(CONTENT_NONCE_BYTES + CONTENT_TAG_BYTES))).kind).toBe(
      'CreatePost',
    );
    expectCodecError(
      () => decodeOp(withField(post, [3, 5], bytesOf(CONTENT_NONCE_BYTES + CONTENT_TAG_BYTES - 1))),
      'wrong-type',
    );
  });

  it('an op larger than MAX_OP_BYTES is too-large, before anything else is looked at', () => {
    const huge = withField(fullPost(), [3, 5], bytesOf(MAX_OP_BYTES));
    expect(huge.length).toBeGreaterThan(MAX_OP_BYTES);
    expectCodecError(() => decodeOp(huge), 'too-large');
    expectCodecError(() => decodeOp(new Uint8Array(MAX_OP_BYTES + 1)), 'too-large');
    // At exactly MAX_OP_BYTES the size passes and the content is what fails.
    expectCodecError(() => decodeOp(new Uint8Array(MAX_OP_BYTES)), 'trailing-bytes');
  });
});

// ---------- content (the readable part of posts, threads and edits) ----------

/** A content's encoding with the value at `path` of its wire array replaced (or edited in place). */
function contentWith(
  c: Contents['CreatePost'],
  path: readonly number[],
  value: CborValue | ((node: CborValue) => void),
): Uint8Array {
  const w = decode(encodeContent('CreatePost', c)) as CborValue[];
  if (typeof value === 'function') value(getAt(w, path));
  else setAt(w, path, value);
  return encode(w);
}

/** [what, kind, content position, limit in UTF-8 bytes] for every text field of a content. */
const CONTENT_TEXT_LIMITS: readonly (readonly [
  string,
  'CreateThread' | 'CreatePost' | 'EditPost',
  readonly number[],
  number,
])[] = [
  ['CreateThread.title', 'CreateThread', [0], MAX_NAME_BYTES * 2],
  ['CreatePost.text', 'CreatePost', [0], MAX_POST_TEXT_BYTES],
  ['CreatePost.body.mime', 'CreatePost', [1, 3], MAX_MIME_BYTES],
  ['CreatePost.body.name', 'CreatePost', [1, 4], MAX_NAME_BYTES],
  ['CreatePost.attachments[0].mime', 'CreatePost', [2, 0, 3], MAX_MIME_BYTES],
  ['EditPost.text', 'EditPost', [0], MAX_POST_TEXT_BYTES],
];

const SAMPLE_CONTENT = {
  CreateThread: { title: 'A thread' },
  CreatePost: fullContent(),
  EditPost: { text: 'edited', change: null },
} as const;
/** The collab flag each sample content agrees with. */
const SAMPLE_COLLAB = { CreateThread: false, CreatePost: true, EditPost: false } as const;

describe('associated data', () => {
  it('epochBytes is the epoch as 8 big-endian bytes, then the commit hash', () => {
    const commitHash = Uint8Array.from({ length: 32 }, (_, i) => i + 100);
    for (const [epoch, head] of [
      [0, '0000000000000000'],
      [1, '0000000000000001'],
      [0x0102030405, '0000000102030405'],
      [Number.MAX_SAFE_INTEGER, '001fffffffffffff'],
    ] as const) {
      expect(toHex(epochBytes({ epoch, commitHash }))).toBe(head + toHex(commitHash));
    }
  });

  it('contentAd is context, space, epoch, kind code and author, in that order', () => {
    const space = Uint8Array.from({ length: 16 }, (_, i) => i) as SpaceId;
    const commitHash = new Uint8Array(32).fill(0xee);
    const author = new Uint8Array(32).fill(0x77) as DeviceId;
    const ad = contentAd(space, { epoch: 258, commitHash }, 'EditPost', author);
    expect(toHex(ad)).toBe(
      toHex(CONTENT_SEAL_CONTEXT) +
        toHex(space) +
        '0000000000000102' +
        toHex(commitHash) +
        KIND_CODES.EditPost.toString(16).padStart(2, '0') +
        toHex(author),
    );
  });
});

describe('content codec', () => {
  it('decodeContent(encodeContent(c)) equals c for every content kind, with canonical bytes', () => {
    for (const kind of ['CreateThread', 'CreatePost', 'EditPost'] as const) {
      fc.assert(
        fc.property(arbContent(kind), (c) => {
          const collab =
            kind === 'CreatePost'
              ? (c as Contents['CreatePost']).collab !== null
              : kind === 'EditPost' && (c as Contents['EditPost']).change !== null;
          const b = encodeContent(kind, c);
          const back = decodeContent(kind, b, collab);
          expect(back).toStrictEqual(c);
          expect(toHex(encodeContent(kind, back))).toBe(toHex(b));
        }),
        { numRuns: 100 },
      );
    }
  });

  it.each(CONTENT_TEXT_LIMITS)('%s: at most %s bytes', (_what, kind, path, limit) => {
    const collab = SAMPLE_COLLAB[kind];
    const withText = (t: string): Uint8Array => {
      const w = decode(encodeContent(kind, SAMPLE_CONTENT[kind])) as CborValue[];
      setAt(w, path, t);
      return encode(w);
    };
    for (const [ch, size] of [
      ['a', 1],
      ['€', 3],
      ['😀', 4],
    ] as const) {
      const fits = ch.repeat(Math.floor(limit / size));
      const w = encodeContent(kind, decodeContent(kind, withText(fits), collab));
      expect(getAt(decode(w), path)).toBe(fits);
      expectCodecError(() => decodeContent(kind, withText(fits + ch), collab), 'wrong-type');
    }
  });

  it('a post text of 2000 three-byte characters: short in UTF-16 units, 6000 bytes', () => {
    const t = '€'.repeat(2000);
    expect(t.length).toBeLessThan(MAX_POST_TEXT_BYTES);
    expectCodecError(
      () => decodeContent('CreatePost', contentWith(fullContent(), [0], t), true),
      'wrong-type',
    );
  });

  it('byte strings and attachment counts', () => {
    const collabAt = (n: number) => contentWith(fullContent(), [3], bytesOf(n));
    expect(decodeContent('CreatePost', collabAt(MAX_COLLAB_CHANGE_BYTES), true)).toBeDefined();
    expectCodecError(
      () => decodeContent('CreatePost', collabAt(MAX_COLLAB_CHANGE_BYTES + 1), true),
      'wrong-type',
    );
    const change = (n: number) => encode([null, bytesOf(n)]);
    expect(decodeContent('EditPost', change(MAX_COLLAB_CHANGE_BYTES), true)).toBeDefined();
    expectCodecError(
      () => decodeContent('EditPost', change(MAX_COLLAB_CHANGE_BYTES + 1), true),
      'wrong-type',
    );
    const one = getAt(decode(encodeContent('CreatePost', fullContent())), [2, 0]);
    const attachments = (n: number): Uint8Array =>
      contentWith(
        fullContent(),
        [2],
        Array.from({ length: n }, () => one),
      );
    expect(decodeContent('CreatePost', attachments(MAX_ATTACHMENTS), true).attachments).toHaveLength(
      MAX_ATTACHMENTS,
    );
    expectCodecError(() => decodeContent('CreatePost', attachments(MAX_ATTACHMENTS + 1), true), 'wrong-type');
  });

  it('an edit carries exactly one of text and change, agreeing with the collab flag', () => {
    for (const [c, collab] of [
      [{ text: 'new text', change: null }, false],
      [{ text: '', change: null }, false],
      [{ text: null, change: bytesOf(5) }, true],
      [{ text: null, change: new Uint8Array(0) }, true],
    ] as const) {
      expect(decodeContent('EditPost', encodeContent('EditPost', c), collab)).toStrictEqual(c);
      expectCodecError(() => decodeContent('EditPost', encodeContent('EditPost', c), !collab), 'wrong-type');
    }
    for (const [text, change] of [
      ['new text', bytesOf(5)],
      [null, null],
    ] as const) {
      for (const collab of [true, false]) {
        expectCodecError(() => decodeContent('EditPost', encode([text, change]), collab), 'wrong-type');
      }
    }
  });

  it("a post's collaborative document is present exactly when the op says it is collaborative", () => {
    const plain = { ...fullContent(), collab: null };
    expect(decodeContent('CreatePost', encodeContent('CreatePost', plain), false).collab).toBeNull();
    expectCodecError(
      () => decodeContent('CreatePost', encodeContent('CreatePost', plain), true),
      'wrong-type',
    );
    expectCodecError(
      () => decodeContent('CreatePost', encodeContent('CreatePost', fullContent()), false),
      'wrong-type',
    );
  });

  it('arbitrary bytes decode or fail with a CodecError, for every content kind', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (b, collab) => {
        for (const kind of ['CreateThread', 'CreatePost', 'EditPost'] as const) {
          const e = thrown(() => decodeContent(kind, b, collab));
          if (e !== undefined) expect(e).toBeInstanceOf(CodecError);
        }
      }),
      { numRuns: 300 },
    );
  });
});

// ---------- arbitrary input ----------

function decodesOrCodecError(b: Uint8Array): boolean {
  let op: SignedOp;
  try {
    op = decodeOp(b);
  } catch (e) {
    expect(e).toBeInstanceOf(CodecError);
    return false;
  }
  expect(toHex(encodeOp(op))).toBe(toHex(b));
  return true;
}

describe('decodeOp on arbitrary bytes', () => {
  it('random bytes: returns or throws CodecError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        decodesOrCodecError(b);
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated valid ops: returns (and re-encodes identically) or throws CodecError', () => {
    const arbMutated = fc
      .tuple(
        arbSignedOp().map(encodeOp),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 })), {
          minLength: 1,
          maxLength: 3,
        }),
      )
      .map(([b, edits]) => {
        const out = Array.from(b);
        for (const [at, byte, how] of edits) {
          const i = at % out.length;
          if (how === 0) out[i] = byte;
          else if (how === 1) out.splice(i, 0, byte);
          else out.splice(i, 1);
        }
        return new Uint8Array(out);
      });
    let decoded = 0;
    fc.assert(
      fc.property(arbMutated, (b) => {
        if (decodesOrCodecError(b)) decoded++;
      }),
      { numRuns: 1000 },
    );
    // Flipping a byte inside an id or a signature leaves a valid op: the property saw both outcomes.
    expect(decoded).toBeGreaterThan(0);
  });

  it('the decoded op is typed per its kind code', () => {
    const kinds = new Map(OP_KINDS.map((k) => [KIND_CODES[k], k]));
    fc.assert(
      fc.property(arbSignedOp(), (op) => {
        const w = wireOf(op);
        expect(w[0]).toBe(OP_VERSION);
        expect(kinds.get(w[2] as number)).toBe(op.kind);
        expect(w).toHaveLength(10);
        expect(w[3]).toHaveLength(BODY_CODECS[op.kind].fields);
      }),
      { numRuns: 200 },
    );
  });
});
