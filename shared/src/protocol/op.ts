/**
 * The operation (ARCHITECTURE.md section 3): every change to a Space. Encoded as canonical
 * CBOR arrays with fixed positions (no maps, so canonical bytes come for free), signed by the
 * device key over the encoding of every field but `sig`.
 *
 * Wire form of a signed op: [v, space, kind, body, deps, epoch, hlc, author, cert, sig]
 *   epoch = [number, commitHash], hlc = [wallMs, counter], cert = [user, createdMs, userSig]
 *   body  = an array whose positions each kind defines below.
 */
import { type CborValue, encode, decode } from './cbor.js';
import { CodecError } from './errors.js';
import {
  type ChannelId,
  type DeviceId,
  type EpochRef,
  type InviteId,
  type OpId,
  type PostId,
  type SpaceId,
  type ThreadId,
  type UserId,
  HASH_BYTES,
  ID16_BYTES,
  KEY_BYTES,
  SIG_BYTES,
  compareBytes,
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

/** 2: the readable part of posts, threads and edits is sealed separately (section 6.2). */
export const OP_VERSION = 2;

/** Hybrid logical clock stamp: wall milliseconds and a counter for ties. */
export interface Hlc {
  readonly wallMs: number;
  readonly counter: number;
}

/** The user key's signature over (device key, creation time): the device speaks for the user. */
export interface DeviceCert {
  readonly user: UserId;
  readonly createdMs: number;
  readonly sig: Uint8Array;
}

/** An encrypted blob (section 7): the manifest's hash and the key that opens its chunks. */
export interface BlobRef {
  readonly hash: Uint8Array;
  readonly key: Uint8Array;
  readonly size: number;
  readonly mime: string;
  readonly name: string;
}

export type ChannelType = 'chat' | 'forum';
/** Roles a user can be assigned; every member is implicitly a `member`. */
export type Role = 'moderator' | 'admin';
export type InviteRole = 'member' | 'moderator';
export type HistoryVisibility = 'all' | 'sinceJoin';

export interface Bodies {
  CreateSpace: { name: string; description: string };
  CreateChannel: { channel: ChannelId; name: string; type: ChannelType; topic: string };
  EditChannel: { channel: ChannelId; name: string | null; topic: string | null; archived: boolean | null };
  /** `content`: the sealed {@link Contents} of the kind (see {@link sealContent}). */
  CreateThread: { thread: ThreadId; channel: ChannelId; root: PostId | null; content: Uint8Array };
  CreatePost: {
    post: PostId;
    channel: ChannelId;
    thread: ThreadId | null;
    parent: PostId | null;
    /** Whether the post is edited collaboratively (its content then holds an Automerge document). */
    collab: boolean;
    content: Uint8Array;
  };
  /** `collab`: whether the edit carries an Automerge change (else a replacement text). */
  EditPost: { post: PostId; collab: boolean; content: Uint8Array };
  DeletePost: { post: PostId; reason: string };
  AssignRole: { user: UserId; role: Role };
  RevokeRole: { user: UserId; role: Role };
  CreateInvite: {
    invite: InviteId;
    /**
     * The invite secret, 32 bytes, as in the link. Ops are sealed, so members see it (any admin
     * or moderator can admit with it); relays see only the mailbox SHA-256("conclave/invite" ‖
     * secret) where join requests go (section 9).
     */
    secret: Uint8Array;
    expiresAtMs: number;
    /** 0 means unlimited. */
    maxUses: number;
    role: InviteRole;
  };
  RevokeInvite: { invite: InviteId };
  /**
   * `user` joined through `invite`: written by the admin or moderator (or the inviter) who
   * admitted them. Counts the invite's uses and grants its role.
   */
  Admit: { invite: InviteId; user: UserId };
  /** `atEpoch`: the first epoch the user is no longer a member of (the Remove commit's epoch). */
  RemoveMember: { user: UserId; atEpoch: number; reason: string };
  Ban: { user: UserId; atEpoch: number; reason: string };
  Unban: { user: UserId };
  /** `untilMs` null: until unmuted. */
  Mute: { user: UserId; untilMs: number | null; reason: string };
  Unmute: { user: UserId };
  Timeout: { user: UserId; untilMs: number; reason: string };
  SetSpaceSettings: {
    name: string | null;
    description: string | null;
    historyVisibility: HistoryVisibility | null;
  };
  /** Past epoch keys for one new member, encrypted by MLS to the new epoch (section 6.2). */
  KeyHistory: { recipient: UserId; payload: Uint8Array };
  /** The author's display name in this Space (the latest in the total order wins). */
  SetProfile: { name: string };
}

export type OpKind = keyof Bodies;

/**
 * The readable part of a post, a thread or an edit (section 6.2). It travels sealed inside the
 * op under the epoch's content key, while the rest of the op is sealed under the epoch's control
 * key. Every member gets every control key, so every member can place, check and order every
 * op; the content keys of epochs before a member joined are given only when the Space shows its
 * history to new members (`historyVisibility: all`).
 */
export interface Contents {
  CreateThread: { title: string };
  CreatePost: {
    text: string;
    /** Content longer than the inline limit, as a blob. */
    body: BlobRef | null;
    attachments: readonly BlobRef[];
    /** For a collaboratively edited post: the saved initial Automerge document. */
    collab: Uint8Array | null;
  };
  /** A plain edit replaces `text`; a collaborative edit carries an Automerge change instead. */
  EditPost: { text: string | null; change: Uint8Array | null };
}

export type ContentKind = keyof Contents;
export type AnyContent = Contents[ContentKind];

export function isContentKind(kind: OpKind): kind is ContentKind {
  return kind === 'CreatePost' || kind === 'EditPost' || kind === 'CreateThread';
}

/**
 * What a writer supplies for an op: for content kinds, the placing fields and the readable
 * content together (the writer's replica seals the content); for other kinds, the body.
 */
export type Drafts = {
  [K in OpKind]: K extends ContentKind ? Omit<Bodies[K], 'content' | 'collab'> & Contents[K] : Bodies[K];
};

/** Wire numbers of the kinds. Never reuse a number. */
export const KIND_CODES: { readonly [K in OpKind]: number } = {
  CreateSpace: 1,
  CreateChannel: 2,
  EditChannel: 3,
  CreateThread: 4,
  CreatePost: 5,
  EditPost: 6,
  DeletePost: 7,
  AssignRole: 8,
  RevokeRole: 9,
  CreateInvite: 10,
  RevokeInvite: 11,
  RemoveMember: 12,
  Ban: 13,
  Unban: 14,
  Mute: 15,
  Unmute: 16,
  Timeout: 17,
  SetSpaceSettings: 18,
  KeyHistory: 19,
  Admit: 20,
  SetProfile: 21,
};

export const OP_KINDS = Object.keys(KIND_CODES) as OpKind[];
const KIND_BY_CODE = new Map<number, OpKind>(OP_KINDS.map((k) => [KIND_CODES[k], k]));

interface OpHeader {
  readonly v: typeof OP_VERSION;
  readonly space: SpaceId;
  /** Causal predecessors: the author's heads when writing. Sorted, unique. */
  readonly deps: readonly OpId[];
  readonly epoch: EpochRef;
  readonly hlc: Hlc;
  readonly author: DeviceId;
  readonly cert: DeviceCert;
}

export type UnsignedOp = { [K in OpKind]: OpHeader & { readonly kind: K; readonly body: Bodies[K] } }[OpKind];
export type SignedOp = UnsignedOp & { readonly sig: Uint8Array };
export type OpOf<K extends OpKind> = Extract<SignedOp, { kind: K }>;
/** A post, thread or edit: an op with sealed content. */
export type ContentOp = OpOf<ContentKind>;

export function isContentOp(op: SignedOp): op is ContentOp {
  return isContentKind(op.kind);
}

/** Whether a content op's content is (or edits) a collaborative Automerge document. */
export function collabFlag(op: ContentOp): boolean {
  return op.kind === 'CreateThread' ? false : op.body.collab;
}

// ---------- field readers: every wrong shape is a CodecError('wrong-type') ----------

function wrong(what: string): never {
  throw new CodecError('wrong-type', what);
}

function arr(v: CborValue | undefined, n: number, what: string): readonly CborValue[] {
  if (!Array.isArray(v) || v.length !== n) wrong(`${what}: expected an array of ${n}`);
  return v as readonly CborValue[];
}

function bytes(v: CborValue | undefined, len: number, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length !== len) wrong(`${what}: expected ${len} bytes`);
  return v;
}

function varBytes(v: CborValue | undefined, max: number, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length > max) wrong(`${what}: expected at most ${max} bytes`);
  return v;
}

const utf8 = new TextEncoder();

function text(v: CborValue | undefined, maxBytes: number, what: string): string {
  if (typeof v !== 'string') wrong(`${what}: expected text`);
  // A JS string's UTF-8 length is at most 3 bytes per UTF-16 unit; skip the encode when safe.
  if (v.length * 3 > maxBytes && utf8.encode(v).length > maxBytes)
    wrong(`${what}: longer than ${maxBytes} bytes`);
  return v;
}

function uint(v: CborValue | undefined, what: string): number {
  if (typeof v !== 'number' || v < 0) wrong(`${what}: expected an unsigned integer`);
  return v;
}

function bool(v: CborValue | undefined, what: string): boolean {
  if (typeof v !== 'boolean') wrong(`${what}: expected a boolean`);
  return v;
}

function opt<T>(v: CborValue | undefined, read: (x: CborValue) => T): T | null {
  return v === null ? null : read(v as CborValue);
}

function oneOf<T extends string>(v: CborValue | undefined, names: readonly T[], what: string): T {
  const i = uint(v, what);
  const name = names[i];
  if (name === undefined) wrong(`${what}: unknown value ${i}`);
  return name;
}

const CHANNEL_TYPES = ['chat', 'forum'] as const;
const ROLES = ['moderator', 'admin'] as const;
const INVITE_ROLES = ['member', 'moderator'] as const;
const VISIBILITIES = ['all', 'sinceJoin'] as const;

const id16 = <T extends Uint8Array>(v: CborValue | undefined, what: string) =>
  bytes(v, ID16_BYTES, what) as T;
const user = (v: CborValue | undefined) => bytes(v, KEY_BYTES, 'user') as UserId;
const name = (v: CborValue | undefined) => text(v, MAX_NAME_BYTES, 'name');
const desc = (v: CborValue | undefined, what = 'reason') => text(v, MAX_DESCRIPTION_BYTES, what);

function blobRef(v: CborValue | undefined): BlobRef {
  const f = arr(v, 5, 'blob');
  return {
    hash: bytes(f[0], HASH_BYTES, 'blob.hash'),
    key: bytes(f[1], KEY_BYTES, 'blob.key'),
    size: uint(f[2], 'blob.size'),
    mime: text(f[3], MAX_MIME_BYTES, 'blob.mime'),
    name: text(f[4], MAX_NAME_BYTES, 'blob.name'),
  };
}
/** A blob reference in its wire form. */
export const blobWire = (b: BlobRef): CborValue => [b.hash, b.key, b.size, b.mime, b.name];

interface BodyCodec<K extends OpKind> {
  readonly fields: number;
  encode(b: Bodies[K]): CborValue[];
  decode(f: readonly CborValue[]): Bodies[K];
}

type BodyCodecs = { readonly [K in OpKind]: BodyCodec<K> };

/** The positions of each kind's body. Append new fields only with a new op version. */
export const BODY_CODECS: BodyCodecs = {
  CreateSpace: {
    fields: 2,
    encode: (b) => [b.name, b.description],
    decode: (f) => ({ name: name(f[0]), description: desc(f[1], 'description') }),
  },
  CreateChannel: {
    fields: 4,
    encode: (b) => [b.channel, b.name, CHANNEL_TYPES.indexOf(b.type), b.topic],
    decode: (f) => ({
      channel: id16<ChannelId>(f[0], 'channel'),
      name: name(f[1]),
      type: oneOf(f[2], CHANNEL_TYPES, 'type'),
      topic: desc(f[3], 'topic'),
    }),
  },
  EditChannel: {
    fields: 4,
    encode: (b) => [b.channel, b.name, b.topic, b.archived],
    decode: (f) => ({
      channel: id16<ChannelId>(f[0], 'channel'),
      name: opt(f[1], name),
      topic: opt(f[2], (x) => desc(x, 'topic')),
      archived: opt(f[3], (x) => bool(x, 'archived')),
    }),
  },
  CreateThread: {
    fields: 4,
    encode: (b) => [b.thread, b.channel, b.root, b.content],
    decode: (f) => ({
      thread: id16<ThreadId>(f[0], 'thread'),
      channel: id16<ChannelId>(f[1], 'channel'),
      root: opt(f[2], (x) => id16<PostId>(x, 'root')),
      content: sealedContent(f[3]),
    }),
  },
  CreatePost: {
    fields: 6,
    encode: (b) => [b.post, b.channel, b.thread, b.parent, b.collab, b.content],
    decode: (f) => ({
      post: id16<PostId>(f[0], 'post'),
      channel: id16<ChannelId>(f[1], 'channel'),
      thread: opt(f[2], (x) => id16<ThreadId>(x, 'thread')),
      parent: opt(f[3], (x) => id16<PostId>(x, 'parent')),
      collab: bool(f[4], 'collab'),
      content: sealedContent(f[5]),
    }),
  },
  EditPost: {
    fields: 3,
    encode: (b) => [b.post, b.collab, b.content],
    decode: (f) => ({
      post: id16<PostId>(f[0], 'post'),
      collab: bool(f[1], 'collab'),
      content: sealedContent(f[2]),
    }),
  },
  DeletePost: {
    fields: 2,
    encode: (b) => [b.post, b.reason],
    decode: (f) => ({ post: id16<PostId>(f[0], 'post'), reason: desc(f[1]) }),
  },
  AssignRole: {
    fields: 2,
    encode: (b) => [b.user, ROLES.indexOf(b.role)],
    decode: (f) => ({ user: user(f[0]), role: oneOf(f[1], ROLES, 'role') }),
  },
  RevokeRole: {
    fields: 2,
    encode: (b) => [b.user, ROLES.indexOf(b.role)],
    decode: (f) => ({ user: user(f[0]), role: oneOf(f[1], ROLES, 'role') }),
  },
  CreateInvite: {
    fields: 5,
    encode: (b) => [b.invite, b.secret, b.expiresAtMs, b.maxUses, INVITE_ROLES.indexOf(b.role)],
    decode: (f) => ({
      invite: id16<InviteId>(f[0], 'invite'),
      secret: bytes(f[1], KEY_BYTES, 'secret'),
      expiresAtMs: uint(f[2], 'expiresAtMs'),
      maxUses: uint(f[3], 'maxUses'),
      role: oneOf(f[4], INVITE_ROLES, 'role'),
    }),
  },
  RevokeInvite: {
    fields: 1,
    encode: (b) => [b.invite],
    decode: (f) => ({ invite: id16<InviteId>(f[0], 'invite') }),
  },
  RemoveMember: {
    fields: 3,
    encode: (b) => [b.user, b.atEpoch, b.reason],
    decode: (f) => ({ user: user(f[0]), atEpoch: uint(f[1], 'atEpoch'), reason: desc(f[2]) }),
  },
  Ban: {
    fields: 3,
    encode: (b) => [b.user, b.atEpoch, b.reason],
    decode: (f) => ({ user: user(f[0]), atEpoch: uint(f[1], 'atEpoch'), reason: desc(f[2]) }),
  },
  Unban: { fields: 1, encode: (b) => [b.user], decode: (f) => ({ user: user(f[0]) }) },
  Mute: {
    fields: 3,
    encode: (b) => [b.user, b.untilMs, b.reason],
    decode: (f) => ({
      user: user(f[0]),
      untilMs: opt(f[1], (x) => uint(x, 'untilMs')),
      reason: desc(f[2]),
    }),
  },
  Unmute: { fields: 1, encode: (b) => [b.user], decode: (f) => ({ user: user(f[0]) }) },
  Timeout: {
    fields: 3,
    encode: (b) => [b.user, b.untilMs, b.reason],
    decode: (f) => ({ user: user(f[0]), untilMs: uint(f[1], 'untilMs'), reason: desc(f[2]) }),
  },
  SetSpaceSettings: {
    fields: 3,
    encode: (b) => [
      b.name,
      b.description,
      b.historyVisibility === null ? null : VISIBILITIES.indexOf(b.historyVisibility),
    ],
    decode: (f) => ({
      name: opt(f[0], name),
      description: opt(f[1], (x) => desc(x, 'description')),
      historyVisibility: opt(f[2], (x) => oneOf(x, VISIBILITIES, 'historyVisibility')),
    }),
  },
  Admit: {
    fields: 2,
    encode: (b) => [b.invite, b.user],
    decode: (f) => ({ invite: id16<InviteId>(f[0], 'invite'), user: user(f[1]) }),
  },
  KeyHistory: {
    fields: 2,
    encode: (b) => [b.recipient, b.payload],
    decode: (f) => ({ recipient: user(f[0]), payload: varBytes(f[1], MAX_KEY_HISTORY_BYTES, 'payload') }),
  },
  SetProfile: { fields: 1, encode: (b) => [b.name], decode: (f) => ({ name: name(f[0]) }) },
};

/** Sealed content: a nonce, then at least an AEAD tag. */
function sealedContent(v: CborValue | undefined): Uint8Array {
  const b = varBytes(v, MAX_OP_BYTES, 'content');
  if (b.length < CONTENT_NONCE_BYTES + CONTENT_TAG_BYTES) wrong('content: too short to be sealed');
  return b;
}

export const CONTENT_NONCE_BYTES = 12;
export const CONTENT_TAG_BYTES = 16;

interface ContentCodec<K extends ContentKind> {
  readonly fields: number;
  encode(c: Contents[K]): CborValue[];
  decode(f: readonly CborValue[]): Contents[K];
}

const CONTENT_CODECS: { readonly [K in ContentKind]: ContentCodec<K> } = {
  CreateThread: {
    fields: 1,
    encode: (c) => [c.title],
    decode: (f) => ({ title: text(f[0], MAX_NAME_BYTES * 2, 'title') }),
  },
  CreatePost: {
    fields: 4,
    encode: (c) => [c.text, c.body === null ? null : blobWire(c.body), c.attachments.map(blobWire), c.collab],
    decode: (f) => {
      const att = f[2];
      if (!Array.isArray(att) || att.length > MAX_ATTACHMENTS) wrong('attachments');
      return {
        text: text(f[0], MAX_POST_TEXT_BYTES, 'text'),
        body: opt(f[1], blobRef),
        attachments: (att as readonly CborValue[]).map(blobRef),
        collab: opt(f[3], (x) => varBytes(x, MAX_COLLAB_CHANGE_BYTES, 'collab')),
      };
    },
  },
  EditPost: {
    fields: 2,
    encode: (c) => [c.text, c.change],
    decode: (f) => {
      const c = {
        text: opt(f[0], (x) => text(x, MAX_POST_TEXT_BYTES, 'text')),
        change: opt(f[1], (x) => varBytes(x, MAX_COLLAB_CHANGE_BYTES, 'change')),
      };
      if ((c.text === null) === (c.change === null)) wrong('edit: exactly one of text and change');
      return c;
    },
  },
};

/** The canonical encoding of a content (what is sealed inside a content op). */
export function encodeContent<K extends ContentKind>(kind: K, c: Contents[K]): Uint8Array {
  const codec = CONTENT_CODECS[kind] as ContentCodec<ContentKind>;
  return encode(codec.encode(c));
}

/**
 * Decodes the content of an op of `kind` and checks it agrees with the op's `collab` flag.
 * Throws `CodecError` for anything malformed.
 */
export function decodeContent<K extends ContentKind>(
  kind: K,
  bytes_: Uint8Array,
  collab: boolean,
  options: { readonly views?: boolean } = {},
): Contents[K] {
  const codec = CONTENT_CODECS[kind] as ContentCodec<ContentKind>;
  const c = codec.decode(arr(decode(bytes_, undefined, options), codec.fields, `${kind} content`));
  if (kind === 'CreatePost' && ((c as Contents['CreatePost']).collab !== null) !== collab) {
    wrong('post content: does not match the collab flag');
  }
  if (kind === 'EditPost' && ((c as Contents['EditPost']).change !== null) !== collab) {
    wrong('edit content: does not match the collab flag');
  }
  return c as Contents[K];
}

/**
 * Splits a writer's draft into the op body without its sealed content, and the content.
 * `content` in the returned body is empty until the caller seals it.
 */
export function splitDraft<K extends OpKind>(
  kind: K,
  draft: Drafts[K],
): { body: Bodies[K]; content: AnyContent | undefined } {
  switch (kind) {
    case 'CreateThread': {
      const d = draft as Drafts['CreateThread'];
      const body: Bodies['CreateThread'] = {
        thread: d.thread,
        channel: d.channel,
        root: d.root,
        content: EMPTY,
      };
      return { body: body as Bodies[K], content: { title: d.title } };
    }
    case 'CreatePost': {
      const d = draft as Drafts['CreatePost'];
      const body: Bodies['CreatePost'] = {
        post: d.post,
        channel: d.channel,
        thread: d.thread,
        parent: d.parent,
        collab: d.collab !== null,
        content: EMPTY,
      };
      const content: Contents['CreatePost'] = {
        text: d.text,
        body: d.body,
        attachments: d.attachments,
        collab: d.collab,
      };
      return { body: body as Bodies[K], content };
    }
    case 'EditPost': {
      const d = draft as Drafts['EditPost'];
      const body: Bodies['EditPost'] = { post: d.post, collab: d.change !== null, content: EMPTY };
      return { body: body as Bodies[K], content: { text: d.text, change: d.change } };
    }
    default:
      return { body: draft as Bodies[K], content: undefined };
  }
}

const EMPTY = new Uint8Array(0);

/** Domain separation for sealed content. */
export const CONTENT_SEAL_CONTEXT = new TextEncoder().encode('conclave/content/1');

/**
 * Associated data of an op's sealed content: the content belongs to this Space, epoch, kind
 * and author, so it cannot be lifted into another op.
 */
export function contentAd(space: SpaceId, epoch: EpochRef, kind: ContentKind, author: DeviceId): Uint8Array {
  const c = CONTENT_SEAL_CONTEXT.length;
  const out = new Uint8Array(c + space.length + 8 + epoch.commitHash.length + 1 + author.length);
  out.set(CONTENT_SEAL_CONTEXT);
  out.set(space, c);
  let at = writeEpoch(out, c + space.length, epoch);
  out[at++] = KIND_CODES[kind];
  out.set(author, at);
  return out;
}

function encodeBody(op: UnsignedOp): CborValue[] {
  // The union of codecs cannot be narrowed by `op.kind` through an index; the table is total.
  const codec = BODY_CODECS[op.kind] as BodyCodec<typeof op.kind>;
  return codec.encode(op.body);
}

function headerWire(op: UnsignedOp): CborValue[] {
  return [
    op.v,
    op.space,
    KIND_CODES[op.kind],
    encodeBody(op),
    op.deps,
    [op.epoch.epoch, op.epoch.commitHash],
    [op.hlc.wallMs, op.hlc.counter],
    op.author,
    [op.cert.user, op.cert.createdMs, op.cert.sig],
  ];
}

/** Domain separation for op signatures, so an op signature can never verify as anything else. */
export const OP_SIG_CONTEXT = new TextEncoder().encode('conclave/op/1');

/** The bytes the author signs: every field but `sig`, canonical, behind the context string. */
export function encodeUnsigned(op: UnsignedOp): Uint8Array {
  const body = encode(headerWire(op));
  const out = new Uint8Array(OP_SIG_CONTEXT.length + body.length);
  out.set(OP_SIG_CONTEXT);
  out.set(body, OP_SIG_CONTEXT.length);
  return out;
}

/** The canonical bytes of a signed op (what is sealed). */
export function encodeOp(op: SignedOp): Uint8Array {
  return encode([...headerWire(op), op.sig]);
}

/** Sorts and de-duplicates deps into their canonical order. */
export function canonicalDeps(deps: readonly OpId[]): OpId[] {
  const sorted = [...deps].sort(compareBytes);
  return sorted.filter((d, i) => i === 0 || compareBytes(sorted[i - 1] as OpId, d) !== 0);
}

/**
 * Decodes a signed op from canonical bytes. Throws `CodecError` for malformed input: bad CBOR,
 * wrong shapes or types, unknown kinds, over-limit fields, deps not sorted and unique.
 * With `options.views`, byte fields are views into `bytes_` (see `decode`).
 */
export function decodeOp(bytes_: Uint8Array, options: { readonly views?: boolean } = {}): SignedOp {
  if (bytes_.length > MAX_OP_BYTES) throw new CodecError('too-large', `op of ${bytes_.length} bytes`);
  const f = arr(decode(bytes_, undefined, options), 10, 'op');
  if (f[0] !== OP_VERSION) wrong('op: unknown version');
  const space = bytes(f[1], ID16_BYTES, 'space') as SpaceId;
  const code = uint(f[2], 'kind');
  const kind = KIND_BY_CODE.get(code);
  if (kind === undefined) wrong(`op: unknown kind ${code}`);
  const codec = BODY_CODECS[kind] as BodyCodec<typeof kind>;
  const body = codec.decode(arr(f[3], codec.fields, `${kind} body`));
  const depsWire = f[4];
  if (!Array.isArray(depsWire) || depsWire.length > MAX_DEPS) wrong('deps');
  const deps = (depsWire as readonly CborValue[]).map((d) => bytes(d, HASH_BYTES, 'dep') as OpId);
  for (let i = 1; i < deps.length; i++) {
    if (compareBytes(deps[i - 1] as OpId, deps[i] as OpId) >= 0) wrong('deps: not sorted and unique');
  }
  const e = arr(f[5], 2, 'epoch');
  const h = arr(f[6], 2, 'hlc');
  const c = arr(f[8], 3, 'cert');
  return {
    v: OP_VERSION,
    space,
    kind,
    body,
    deps,
    epoch: { epoch: uint(e[0], 'epoch.number'), commitHash: bytes(e[1], HASH_BYTES, 'epoch.commitHash') },
    hlc: { wallMs: uint(h[0], 'hlc.wallMs'), counter: uint(h[1], 'hlc.counter') },
    author: bytes(f[7], KEY_BYTES, 'author') as DeviceId,
    cert: {
      user: bytes(c[0], KEY_BYTES, 'cert.user') as UserId,
      createdMs: uint(c[1], 'cert.createdMs'),
      sig: bytes(c[2], SIG_BYTES, 'cert.sig'),
    },
    sig: bytes(f[9], SIG_BYTES, 'sig'),
  } as SignedOp;
}

/** The encoding of an `EpochRef` used in associated data and keys: 8-byte big-endian number ‖ hash. */
export function epochBytes(e: EpochRef): Uint8Array {
  const out = new Uint8Array(8 + HASH_BYTES);
  writeEpoch(out, 0, e);
  return out;
}

/** Writes `epochBytes(e)` into `out` at `at`; returns where it ends. */
function writeEpoch(out: Uint8Array, at: number, e: EpochRef): number {
  let hi = Math.floor(e.epoch / 0x100000000);
  let lo = e.epoch >>> 0;
  for (let i = 3; i >= 0; i--) {
    out[at + i] = hi & 0xff;
    out[at + 4 + i] = lo & 0xff;
    hi >>>= 8;
    lo >>>= 8;
  }
  out.set(e.commitHash, at + 8);
  return at + 8 + e.commitHash.length;
}
