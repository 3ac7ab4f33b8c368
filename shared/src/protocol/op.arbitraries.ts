/**
 * fast-check arbitraries for ops, for tests only. Every generated op is one `decodeOp` accepts:
 * ids have their exact lengths, texts and byte strings stay within their limits (measured in
 * UTF-8 bytes, with values at the limits generated on purpose), deps are sorted and unique.
 * Signatures are random bytes; nothing here signs.
 */
import fc from 'fast-check';
import { HEAD_BOUNDARIES } from './codec.testing.js';
import {
  type ChannelId,
  type DeviceId,
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
  concatBytes,
} from './ids.js';
import {
  MAX_ATTACHMENTS,
  MAX_COLLAB_CHANGE_BYTES,
  MAX_DEPS,
  MAX_DESCRIPTION_BYTES,
  MAX_KEY_HISTORY_BYTES,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  MAX_POST_TEXT_BYTES,
} from './limits.js';
import {
  type BlobRef,
  type Bodies,
  type ContentKind,
  type Contents,
  type OpKind,
  type OpOf,
  type SignedOp,
  CONTENT_NONCE_BYTES,
  CONTENT_TAG_BYTES,
  OP_KINDS,
  OP_VERSION,
  canonicalDeps,
} from './op.js';

/** Exactly `n` random bytes. */
export const arbBytes = (n: number): fc.Arbitrary<Uint8Array> =>
  fc.uint8Array({ minLength: n, maxLength: n });

const arbId16 = <T extends Uint8Array>(): fc.Arbitrary<T> => arbBytes(ID16_BYTES).map((b) => b as T);
const arbUser = (): fc.Arbitrary<UserId> => arbBytes(KEY_BYTES).map((b) => b as UserId);
/** `fc.record` with Object.prototype always: decoded ops have it, and `toStrictEqual` compares it. */
const record = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
  fc.record(model, { noNullPrototype: true });
const nullable = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(a, { nil: null });

/** Unsigned safe integers, biased to the CBOR head boundaries and to millisecond timestamps. */
export const arbUint = (): fc.Arbitrary<number> =>
  fc.oneof(
    fc.nat(),
    fc.maxSafeNat(),
    fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }),
    fc.constantFrom(...HEAD_BOUNDARIES),
  );

function utf8Length(cp: number): number {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/** The longest prefix of `s` (whole code points) that fits in `maxBytes` of UTF-8. */
function truncateUtf8(s: string, maxBytes: number): string {
  let bytes = 0;
  let units = 0;
  for (const ch of s) {
    bytes += utf8Length(ch.codePointAt(0) ?? 0);
    if (bytes > maxBytes) break;
    units += ch.length;
  }
  return s.slice(0, units);
}

/** Characters of each UTF-8 length, and ones that codecs get wrong (BOM, U+FFFD, NUL). */
const EDGE_CHARS = ['a', '\u0000', 'é', '€', '\uFEFF', '\uFFFD', '😀', '\u{10FFFF}'] as const;

/** Well-formed text of at most `maxBytes` UTF-8 bytes, from the whole of Unicode, and strings filled to the limit. */
export const arbText = (maxBytes: number): fc.Arbitrary<string> =>
  fc
    .oneof(
      fc.string({ unit: 'grapheme-ascii' }),
      fc.string({ unit: 'binary' }),
      fc.string({ unit: 'grapheme' }),
      fc.string({ unit: fc.constantFrom(...EDGE_CHARS) }),
      fc.constantFrom(...EDGE_CHARS).map((c) => c.repeat(maxBytes)),
    )
    .map((s) => truncateUtf8(s, maxBytes));

/**
 * Byte strings of at most `max` bytes: mostly short, sometimes of any length up to `max`
 * (filled from a seed, so a 48 KiB string costs one generated integer, not 48 Ki of them).
 */
export const arbVarBytes = (max: number): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: Math.min(max, 64) }), weight: 4 },
    {
      arbitrary: fc
        .tuple(fc.oneof(fc.integer({ min: 0, max }), fc.constant(max)), fc.integer())
        .map(([n, seed]) => {
          const out = new Uint8Array(n);
          let x = seed | 1;
          for (let i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            out[i] = x & 0xff;
          }
          return out;
        }),
      weight: 1,
    },
  );

export const arbBlobRef = (): fc.Arbitrary<BlobRef> =>
  record({
    hash: arbBytes(HASH_BYTES),
    key: arbBytes(KEY_BYTES),
    size: arbUint(),
    mime: arbText(MAX_MIME_BYTES),
    name: arbText(MAX_NAME_BYTES),
  });

const ROLES = ['moderator', 'admin'] as const;

const BODY_ARBS: { readonly [K in OpKind]: () => fc.Arbitrary<Bodies[K]> } = {
  CreateSpace: () => record({ name: arbText(MAX_NAME_BYTES), description: arbText(MAX_DESCRIPTION_BYTES) }),
  CreateChannel: () =>
    record({
      channel: arbId16<ChannelId>(),
      name: arbText(MAX_NAME_BYTES),
      type: fc.constantFrom('chat', 'forum'),
      topic: arbText(MAX_DESCRIPTION_BYTES),
    }),
  EditChannel: () =>
    record({
      channel: arbId16<ChannelId>(),
      name: nullable(arbText(MAX_NAME_BYTES)),
      topic: nullable(arbText(MAX_DESCRIPTION_BYTES)),
      archived: nullable(fc.boolean()),
    }),
  CreateThread: () =>
    record({
      thread: arbId16<ThreadId>(),
      channel: arbId16<ChannelId>(),
      root: nullable(arbId16<PostId>()),
      content: arbSealedContent(),
    }),
  CreatePost: () =>
    record({
      post: arbId16<PostId>(),
      channel: arbId16<ChannelId>(),
      thread: nullable(arbId16<ThreadId>()),
      parent: nullable(arbId16<PostId>()),
      collab: fc.boolean(),
      content: arbSealedContent(),
    }),
  EditPost: () => record({ post: arbId16<PostId>(), collab: fc.boolean(), content: arbSealedContent() }),
  DeletePost: () => record({ post: arbId16<PostId>(), reason: arbText(MAX_DESCRIPTION_BYTES) }),
  AssignRole: () => record({ user: arbUser(), role: fc.constantFrom(...ROLES) }),
  RevokeRole: () => record({ user: arbUser(), role: fc.constantFrom(...ROLES) }),
  CreateInvite: () =>
    record({
      invite: arbId16<InviteId>(),
      secret: arbBytes(KEY_BYTES),
      expiresAtMs: arbUint(),
      maxUses: arbUint(),
      role: fc.constantFrom('member', 'moderator'),
    }),
  RevokeInvite: () => record({ invite: arbId16<InviteId>() }),
  Admit: () => record({ invite: arbId16<InviteId>(), user: arbUser() }),
  RemoveMember: () => record({ user: arbUser(), atEpoch: arbUint(), reason: arbText(MAX_DESCRIPTION_BYTES) }),
  Ban: () => record({ user: arbUser(), atEpoch: arbUint(), reason: arbText(MAX_DESCRIPTION_BYTES) }),
  Unban: () => record({ user: arbUser() }),
  Mute: () =>
    record({ user: arbUser(), untilMs: nullable(arbUint()), reason: arbText(MAX_DESCRIPTION_BYTES) }),
  Unmute: () => record({ user: arbUser() }),
  Timeout: () => record({ user: arbUser(), untilMs: arbUint(), reason: arbText(MAX_DESCRIPTION_BYTES) }),
  SetSpaceSettings: () =>
    record({
      name: nullable(arbText(MAX_NAME_BYTES)),
      description: nullable(arbText(MAX_DESCRIPTION_BYTES)),
      historyVisibility: nullable(fc.constantFrom('all', 'sinceJoin')),
    }),
  KeyHistory: () => record({ recipient: arbUser(), payload: arbVarBytes(MAX_KEY_HISTORY_BYTES) }),
  SetProfile: () => record({ name: arbText(MAX_NAME_BYTES) }),
};

/** Sealed content as the op codec sees it: opaque bytes, a nonce and a tag at least. */
export function arbSealedContent(): fc.Arbitrary<Uint8Array> {
  return fc
    .oneof(
      fc.uint8Array({ minLength: 0, maxLength: 64 }),
      fc.uint8Array({ minLength: 4000, maxLength: 4100 }),
    )
    .map((b) => concatBytes(new Uint8Array(CONTENT_NONCE_BYTES + CONTENT_TAG_BYTES).fill(7), b));
}

type ContentArbs = { readonly [K in ContentKind]: () => fc.Arbitrary<Contents[K]> };

const CONTENT_ARBS: ContentArbs = {
  CreateThread: () => record({ title: arbText(MAX_NAME_BYTES * 2) }),
  CreatePost: () =>
    record({
      text: arbText(MAX_POST_TEXT_BYTES),
      body: nullable(arbBlobRef()),
      attachments: fc.oneof(
        fc.array(arbBlobRef(), { maxLength: 3 }),
        fc.array(arbBlobRef(), { minLength: MAX_ATTACHMENTS, maxLength: MAX_ATTACHMENTS }),
      ),
      collab: nullable(arbVarBytes(MAX_COLLAB_CHANGE_BYTES)),
    }),
  EditPost: () =>
    fc.oneof(
      record({ text: arbText(MAX_POST_TEXT_BYTES), change: fc.constant(null) }),
      record({ text: fc.constant(null), change: arbVarBytes(MAX_COLLAB_CHANGE_BYTES) }),
    ),
};

/** A valid content of `kind`. */
export function arbContent<K extends ContentKind>(kind: K): fc.Arbitrary<Contents[K]> {
  return CONTENT_ARBS[kind]();
}

/** A valid body of `kind`. */
export function arbBody<K extends OpKind>(kind: K): fc.Arbitrary<Bodies[K]> {
  return BODY_ARBS[kind]();
}

/** Deps as `decodeOp` wants them: sorted, unique, at most MAX_DEPS, sometimes exactly MAX_DEPS. */
export const arbDeps = (): fc.Arbitrary<OpId[]> =>
  fc
    .oneof(
      fc.array(arbBytes(HASH_BYTES), { maxLength: 4 }),
      fc.array(arbBytes(HASH_BYTES), { minLength: MAX_DEPS, maxLength: MAX_DEPS }),
    )
    .map((ds) => canonicalDeps(ds as OpId[]));

/** A signed op of `kind` with random header fields and a random (unchecked) signature. */
export function arbOpOf<K extends OpKind>(kind: K): fc.Arbitrary<OpOf<K>> {
  return (
    fc
      .record({
        space: arbId16<SpaceId>(),
        body: arbBody(kind),
        deps: arbDeps(),
        epoch: record({ epoch: arbUint(), commitHash: arbBytes(HASH_BYTES) }),
        hlc: record({ wallMs: arbUint(), counter: arbUint() }),
        author: arbBytes(KEY_BYTES).map((b) => b as DeviceId),
        cert: record({ user: arbUser(), createdMs: arbUint(), sig: arbBytes(SIG_BYTES) }),
        sig: arbBytes(SIG_BYTES),
      })
      // TypeScript cannot correlate a generic `kind` with `Bodies[K]` inside the union `SignedOp`.
      .map((f) => ({ v: OP_VERSION, kind, ...f }) as unknown as OpOf<K>)
  );
}

/** A signed op of any of `kinds` (default: every kind), each kind equally likely. */
export function arbSignedOp(kinds: readonly OpKind[] = OP_KINDS): fc.Arbitrary<SignedOp> {
  return fc.oneof(...kinds.map((k): fc.Arbitrary<SignedOp> => arbOpOf(k)));
}
