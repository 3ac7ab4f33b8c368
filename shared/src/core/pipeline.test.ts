/**
 * The acceptance pipeline at its boundary (ARCHITECTURE.md section 4): every kind of bad input
 * gets its typed outcome, never a throw, and leaves the state, the heads and the store exactly
 * as they were; buffered ops are released when what they wait for arrives; the holdback queue
 * is bounded. Then persistence: a replica reopened on its IndexedDB store rebuilds the same
 * state, and a failing store changes nothing.
 */
import 'fake-indexeddb/auto';
import { createCipheriv } from 'node:crypto';
import { IDBFactory } from 'fake-indexeddb';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256, topicId } from '../crypto/sha256.js';
import { webRng } from '../ports/env.js';
import { idbStorage } from '../ports/storage.idb.js';
import { memoryStorage } from '../ports/storage.memory.js';
import { type Storage, type StoredOp, StorageError } from '../ports/storage.js';
import type { SigningKey } from '../ports/crypto.js';
import { type DeviceIdentity, certifyDevice } from '../protocol/identity.js';
import {
  type CborValue,
  type ChannelId,
  type DeviceId,
  type Hlc,
  type InviteId,
  type OpId,
  type PostId,
  type SignedOp,
  type UnsignedOp,
  MAX_ARRAY_LENGTH,
  MAX_DEPS,
  MAX_DEPTH,
  MAX_POST_TEXT_BYTES,
  NONCE_BYTES,
  OP_SIG_CONTEXT,
  OP_VERSION,
  canonicalDeps,
  concatBytes,
  decode,
  decodeOp,
  decodeSealed,
  encode,
  encodeOp,
  encodeSealed,
  encodeUnsigned,
  type Contents,
  type EpochRef,
  contentAd,
  encodeContent,
  importEpochKey,
  open,
  seal,
  toHex,
} from '../protocol/index.js';
import type { AcceptOutcome, AcceptedEvent, ReplicaOptions, SpaceReplica } from './replica.js';
import { World, type Written, newId, postBody } from './scenario.js';
import {
  TestGroup,
  seededRng,
  testContentKey,
  testEd25519,
  testEpoch,
  testReplica,
  testSpaceId,
} from './testkit.js';

// ---------------------------------------------------------------- fixture

interface Fixture {
  readonly w: World;
  /** The replica under test; every op below is offered to it. */
  readonly r: SpaceReplica;
  readonly store: Storage;
  readonly chat: ChannelId;
  /** What `r` accepted while being set up, in order. */
  readonly history: readonly Written[];
  /** Calls of the replica's callbacks since the set-up. */
  readonly fetched: OpId[][];
  readonly accepted: AcceptedEvent[];
  readonly dropped: OpId[];
}

/**
 * Alice, Bob and Carol in a set-up Space (genesis and two channels) with one post each; the
 * replica under test has accepted all of it, so its state is not empty and has Bob's
 * certificate verified.
 */
async function fixture(extra: Partial<ReplicaOptions> = {}): Promise<Fixture> {
  const w = await World.create(['alice', 'bob', 'carol']);
  const { chat, ops } = await w.setUp();
  const posts = [
    await w.post('alice', chat, 'hello'),
    await w.post('bob', chat, 'hi alice'),
    await w.post('carol', chat, 'hey both'),
  ];
  // Everyone sees every post, so the three are concurrent and every replica ends up equal.
  for (const p of posts) {
    for (const n of w.replicas.keys()) if (!w.replica(n).has(p.opId)) await w.deliver(n, p);
  }
  const store = extra.storage ?? memoryStorage();
  const fetched: OpId[][] = [];
  const accepted: AcceptedEvent[] = [];
  const dropped: OpId[] = [];
  const r = await testReplica(w.space, w.group, {
    clock: w.clock,
    storage: store,
    fetchMissing: (ids) => fetched.push([...ids]),
    onAccepted: (ev) => accepted.push(ev),
    onDropped: (id) => dropped.push(id),
    ...extra,
  });
  const history = [...ops, ...posts];
  for (const op of history) expect(label(await r.accept(op.sealed))).toBe('accepted');
  expect(r.state.size).toBe(6);
  fetched.length = 0;
  accepted.length = 0;
  return { w, r, store, chat, history, fetched, accepted, dropped };
}

/** Everything a refused op must leave as it was. */
interface Snapshot {
  readonly state: string;
  readonly heads: string[];
  readonly size: number;
  readonly stored: number;
  readonly storedHeads: string[];
}

async function snapshot(fx: Pick<Fixture, 'w' | 'r' | 'store'>): Promise<Snapshot> {
  return {
    state: toHex(fx.r.state.canonicalState()),
    heads: fx.r.currentHeads().map(toHex),
    size: fx.r.state.size,
    stored: await fx.store.countOps(fx.w.space),
    storedHeads: (await fx.store.getHeads(fx.w.space)).map(toHex),
  };
}

function label(o: AcceptOutcome): string {
  switch (o.kind) {
    case 'rejected':
      return `rejected:${o.reason}`;
    case 'buffered':
      return `buffered:${o.why}`;
    default:
      return o.kind;
  }
}

/** `accept`, failing the test if it throws (bad input must never throw). */
async function offer(r: SpaceReplica, sealed: Uint8Array): Promise<AcceptOutcome> {
  try {
    return await r.accept(sealed);
  } catch (e) {
    return expect.unreachable(`accept threw: ${String(e)}`);
  }
}

/**
 * Offers `sealed`, expects the outcome `expected` (a `label`) for the op id SHA-256(sealed),
 * with a detail matching `detail` when given, and nothing changed.
 */
async function expectRefused(
  fx: Fixture,
  sealed: Uint8Array,
  expected: string,
  detail?: RegExp,
  what = expected,
): Promise<AcceptOutcome> {
  const before = await snapshot(fx);
  const accepted = fx.accepted.length;
  const o = await offer(fx.r, sealed);
  expect(label(o), what).toBe(expected);
  expect(toHex(o.opId), what).toBe(toHex(sha256(sealed)));
  if (detail !== undefined && o.kind === 'rejected') expect(o.detail, what).toMatch(detail);
  expect(await snapshot(fx), what).toEqual(before);
  expect(fx.accepted.length, what).toBe(accepted);
  return o;
}

// ---------------------------------------------------------------- crafting ops by hand

async function epochKey(w: World, n: number): Promise<CryptoKey> {
  const raw = await w.group.epochKey(w.space, w.epoch(n));
  if (raw === undefined) throw new Error(`no key for epoch ${n}`);
  return importEpochKey(raw);
}

/** Seals op bytes as their author would: under epoch `n`'s key, for the replica's topic. */
async function sealAt(
  fx: Fixture,
  plain: Uint8Array,
  n = 1,
  topic = fx.r.topic,
  nonce = webRng.randomBytes(NONCE_BYTES),
): Promise<Uint8Array> {
  return seal(plain, topic, fx.w.epoch(n), await epochKey(fx.w, n), nonce);
}

/** The signed op bytes inside a sealed op of epoch `n`. */
async function plainOf(fx: Fixture, sealed: Uint8Array, n = 1): Promise<Uint8Array> {
  return open(decodeSealed(sealed), await epochKey(fx.w, n));
}

async function opOf(fx: Fixture, sealed: Uint8Array, n = 1): Promise<SignedOp> {
  return decodeOp(await plainOf(fx, sealed, n));
}

/**
 * A post's content sealed as its author's replica would, under the content key the test group
 * gives epoch `n` (synchronous AES-GCM from Node, so drafts can be built inline).
 */
function sealedPostContent(
  fx: Fixture,
  who: DeviceIdentity,
  c: Contents['CreatePost'],
  epoch: EpochRef,
): Uint8Array {
  const key = testContentKey(epoch);
  const nonce = webRng.randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(contentAd(fx.w.space, epoch, 'CreatePost', who.device));
  const ct = concatBytes(cipher.update(encodeContent('CreatePost', c)), cipher.final());
  return concatBytes(nonce, ct, cipher.getAuthTag());
}

/** A valid CreatePost by `who` on the replica's heads, stamped after them. */
function draft(
  fx: Fixture,
  who: DeviceIdentity,
  text = 'crafted by hand',
  epoch: EpochRef = fx.w.epoch(1),
): UnsignedOp {
  fx.w.clock.advance(10);
  const d = postBody(fx.chat, text);
  return {
    v: OP_VERSION,
    space: fx.w.space,
    kind: 'CreatePost',
    body: {
      post: d.post,
      channel: d.channel,
      thread: null,
      parent: null,
      collab: false,
      content: sealedPostContent(fx, who, { text, body: null, attachments: [], collab: null }, epoch),
    },
    deps: canonicalDeps(fx.r.currentHeads()),
    epoch,
    hlc: { wallMs: fx.w.clock.now(), counter: 0 },
    author: who.device,
    cert: who.cert,
  };
}

async function signOp(who: DeviceIdentity, op: UnsignedOp): Promise<SignedOp> {
  return { ...op, sig: await who.deviceKey.sign(encodeUnsigned(op)) };
}

/** The nine signed fields of an op as CBOR values, to tamper with before re-encoding. */
function wireOf(op: UnsignedOp): CborValue[] {
  return [...(decode(encodeUnsigned(op).subarray(OP_SIG_CONTEXT.length)) as readonly CborValue[])];
}

/** Signs tampered fields the way an author signs (over their encoding) and appends the signature. */
async function signWire(who: DeviceIdentity, fields: readonly CborValue[]): Promise<Uint8Array> {
  const sig = await who.deviceKey.sign(concatBytes(OP_SIG_CONTEXT, encode(fields)));
  return encode([...fields, sig]);
}

/**
 * Signs hand-encoded fields (which `encode` would never produce): the signed bytes are exactly
 * these items behind a 9-array head, so the op would pass a lenient decoder and `unsignedBytes`.
 */
async function signRaw(who: DeviceIdentity, items: readonly Uint8Array[]): Promise<Uint8Array> {
  const sig = await who.deviceKey.sign(concatBytes(OP_SIG_CONTEXT, Uint8Array.of(0x89), ...items));
  return concatBytes(Uint8Array.of(0x8a), ...items, encode(sig));
}

const BODY = 3;
const CONTENT = 5;

function bodyOf(fields: readonly CborValue[]): CborValue[] {
  return [...(fields[BODY] as readonly CborValue[])];
}

/** Bytes filled from a seed: large random inputs cost one generated integer. */
function filled(n: number, seed: number): Uint8Array {
  return seededRng(seed).randomBytes(n);
}

/** The order of the Ed25519 base point (RFC 8032's L). */
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;

function fromLE(b: Uint8Array): bigint {
  let x = 0n;
  for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i] as number);
  return x;
}

function toLE32(x: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}

/**
 * A user whose device signs with a fixed nonce: valid RFC 8032 signatures, but every one has
 * the same R (as a broken or malicious client would make).
 */
async function fixedNonceIdentity(): Promise<DeviceIdentity> {
  const { scalar, pointBytes } = await ed.utils.getExtendedPublicKeyAsync(webRng.randomBytes(32));
  const r = fromLE(webRng.randomBytes(32)) % ED25519_L;
  const R = ed.Point.BASE.multiply(r).toBytes();
  const deviceKey: SigningKey = {
    publicKey: pointBytes,
    sign: (msg) => {
      const k = fromLE(sha512(concatBytes(R, pointBytes, msg))) % ED25519_L;
      return Promise.resolve(concatBytes(R, toLE32((r + k * scalar) % ED25519_L)));
    },
  };
  const userKey = await testEd25519().generate();
  const cert = await certifyDevice(userKey, pointBytes as DeviceId, 1_700_000_000_000);
  return { user: cert.user, device: pointBytes as DeviceId, cert, deviceKey };
}

// ---------------------------------------------------------------- 1. bad input

describe('bad input at the pipeline boundary', () => {
  it('random bytes of any length up to 70 KB are rejected, never accepted or thrown on', async () => {
    const fx = await fixture();
    const before = await snapshot(fx);
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 600 }),
      fc.tuple(fc.integer({ min: 0, max: 70 * 1024 }), fc.integer()).map(([n, s]) => filled(n, s)),
    );
    await fc.assert(
      fc.asyncProperty(input, async (bytes) => {
        const o = await offer(fx.r, bytes);
        expect(o.kind).toBe('rejected');
        if (o.kind === 'rejected') expect(o.reason).toBe('malformed');
      }),
      { numRuns: 200 },
    );
    expect(await snapshot(fx)).toEqual(before);
    expect(fx.r.holdback().size).toBe(0);
  });

  it('random bytes of exactly a padding-bucket length are rejected', async () => {
    const fx = await fixture();
    const before = await snapshot(fx);
    const input = fc.oneof(
      fc.constantFrom(256, 1024, 4096).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
      fc.tuple(fc.constantFrom(16 * 1024, 64 * 1024), fc.integer()).map(([n, s]) => filled(n, s)),
    );
    await fc.assert(
      fc.asyncProperty(input, async (bytes) => {
        const o = await offer(fx.r, bytes);
        expect(o.kind).toBe('rejected');
        expect(await snapshot(fx)).toEqual(before);
      }),
      { numRuns: 200 },
    );
    expect(fx.r.holdback().size).toBe(0);
  });

  it('a well-formed envelope around random ciphertext is rejected (bad-seal for our topic and epoch)', async () => {
    const fx = await fixture();
    const before = await snapshot(fx);
    const real = decodeSealed((fx.history[3] as Written).sealed);
    const input = fc.record({
      ours: fc.boolean(),
      epoch: fc.constantFrom(0, 1),
      nonce: fc.uint8Array({ minLength: NONCE_BYTES, maxLength: NONCE_BYTES }),
      seed: fc.integer(),
    });
    await fc.assert(
      fc.asyncProperty(input, async ({ ours, epoch, nonce, seed }) => {
        const sealed = encodeSealed({
          topic: ours ? fx.r.topic : topicId(testSpaceId(99)),
          epoch: fx.w.epoch(epoch),
          nonce,
          ciphertext: filled(real.ciphertext.length, seed),
        });
        expect(label(await offer(fx.r, sealed))).toBe(ours ? 'rejected:bad-seal' : 'rejected:wrong-space');
      }),
      { numRuns: 200 },
    );
    expect(await snapshot(fx)).toEqual(before);
  });

  it('no single-byte change of a valid sealed op is accepted', async () => {
    const fx = await fixture();
    const valid = await sealAt(
      fx,
      encodeOp(await signOp(fx.w.person('carol'), draft(fx, fx.w.person('carol')))),
    );
    const before = await snapshot(fx);
    await fc.assert(
      fc.asyncProperty(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 }), async (at, delta) => {
        const bytes = valid.slice();
        bytes[at] = ((bytes[at] as number) + delta) & 0xff;
        const o = await offer(fx.r, bytes);
        expect(['rejected', 'buffered']).toContain(o.kind);
        // Only a changed epoch can make it wait: for a key this replica does not have.
        if (o.kind === 'buffered') expect(o.why).toBe('awaiting-epoch');
        expect(await snapshot(fx)).toEqual(before);
      }),
      { numRuns: 200 },
    );
    // The unchanged op itself is fine.
    expect(label(await offer(fx.r, valid))).toBe('accepted');
  });

  it('every truncation of a valid sealed op is malformed', async () => {
    const fx = await fixture();
    const small = (fx.history[4] as Written).sealed;
    const large = await sealAt(
      fx,
      encodeOp(await signOp(fx.w.person('alice'), draft(fx, fx.w.person('alice'), 'x'.repeat(1500)))),
    );
    expect([small.length, large.length]).toEqual([1024, 4096]);
    const before = await snapshot(fx);
    for (const sealed of [small, large]) {
      for (let n = 0; n < sealed.length; n++) {
        const o = await offer(fx.r, sealed.subarray(0, n));
        expect(label(o), `truncated to ${n} of ${sealed.length}`).toBe('rejected:malformed');
      }
    }
    expect(await snapshot(fx)).toEqual(before);
  });

  it('a flipped ciphertext byte, the wrong epoch key, or another Space’s topic', async () => {
    const fx = await fixture();
    const alice = fx.w.person('alice');
    const plain = encodeOp(await signOp(alice, draft(fx, alice)));
    const good = await sealAt(fx, plain);
    const env = decodeSealed(good);

    for (const at of [0, env.ciphertext.length >> 1, env.ciphertext.length - 1]) {
      const ct = env.ciphertext.slice();
      ct[at] = (ct[at] as number) ^ 0x01;
      await expectRefused(fx, encodeSealed({ ...env, ciphertext: ct }), 'rejected:bad-seal');
    }
    const nonce = env.nonce.slice();
    nonce[0] = (nonce[0] as number) ^ 0x80;
    await expectRefused(fx, encodeSealed({ ...env, nonce }), 'rejected:bad-seal');

    const randomKey = await importEpochKey(webRng.randomBytes(32));
    const nonce2 = webRng.randomBytes(NONCE_BYTES);
    await expectRefused(
      fx,
      await seal(plain, fx.r.topic, fx.w.epoch(1), randomKey, nonce2),
      'rejected:bad-seal',
    );
    // Epoch 0's real key, in an envelope that says epoch 1.
    await expectRefused(
      fx,
      await seal(plain, fx.r.topic, fx.w.epoch(1), await epochKey(fx.w, 0), nonce2),
      'rejected:bad-seal',
    );

    const otherTopic = topicId(testSpaceId(8));
    await expectRefused(fx, await sealAt(fx, plain, 1, otherTopic), 'rejected:wrong-space');
    // Our topic, but an op of another Space inside.
    const foreign = await signOp(alice, { ...draft(fx, alice), space: testSpaceId(8) });
    await expectRefused(fx, await sealAt(fx, encodeOp(foreign)), 'rejected:wrong-space');

    // The untouched op is accepted after all that.
    expect(label(await offer(fx.r, good))).toBe('accepted');
  });

  it('bad op bytes under the right epoch key are malformed', async () => {
    const fx = await fixture();
    const alice = fx.w.person('alice');
    const op = draft(fx, alice);
    const fields = wireOf(op);
    const items = fields.map((f) => encode(f));
    const withBody = (body: readonly CborValue[]): CborValue[] =>
      fields.map((f, i) => (i === BODY ? body : f));
    const withItem = (i: number, item: Uint8Array): Uint8Array[] => items.map((x, j) => (j === i ? item : x));
    const body = bodyOf(fields);
    const bodyItems = body.map((f) => encode(f));
    const content = op.kind === 'CreatePost' ? op.body.content : new Uint8Array(0);
    const nested = concatBytes(new Uint8Array(MAX_DEPTH - 1).fill(0x81), Uint8Array.of(0x00));
    const deps = op.deps;

    const cases: readonly { readonly what: string; readonly plain: Uint8Array; readonly detail: RegExp }[] = [
      // Non-canonical CBOR of an otherwise valid, validly signed op.
      {
        what: 'version 2 as a two-byte integer',
        plain: await signRaw(alice, withItem(0, Uint8Array.of(0x18, 0x02))),
        detail: /shortest form/,
      },
      {
        what: 'deps array head in a longer form',
        plain: await signRaw(
          alice,
          withItem(4, concatBytes(Uint8Array.of(0x98, deps.length), ...deps.map((d) => encode(d)))),
        ),
        detail: /shortest form/,
      },
      {
        what: 'sealed content length in a longer form',
        plain: await signRaw(
          alice,
          withItem(
            BODY,
            concatBytes(
              Uint8Array.of(0x86),
              ...bodyItems.map((x, i) =>
                i === CONTENT ? concatBytes(Uint8Array.of(0x59, 0, content.length), content) : x,
              ),
            ),
          ),
        ),
        detail: /shortest form/,
      },
      {
        what: 'an indefinite-length body',
        plain: await signRaw(
          alice,
          withItem(BODY, concatBytes(Uint8Array.of(0x9f), ...bodyItems, Uint8Array.of(0xff))),
        ),
        detail: /indefinite/,
      },
      // Wrong field types.
      {
        what: 'sealed content as an integer',
        plain: await signWire(alice, withBody(body.map((f, i) => (i === CONTENT ? 42 : f)))),
        detail: /content: expected at most/,
      },
      {
        what: 'post id as text',
        plain: await signWire(alice, withBody(body.map((f, i) => (i === 0 ? 'not an id' : f)))),
        detail: /post: expected 16 bytes/,
      },
      {
        what: 'a body of the wrong arity',
        plain: await signWire(alice, withBody(body.slice(0, 5))),
        detail: /CreatePost body/,
      },
      {
        what: 'deps as a map',
        plain: await signWire(
          alice,
          fields.map((f, i) => (i === 4 ? new Map([[1, 2]]) : f)),
        ),
        detail: /deps/,
      },
      {
        what: 'a negative clock counter',
        plain: await signWire(
          alice,
          fields.map((f, i) => (i === 6 ? [op.hlc.wallMs, -1] : f)),
        ),
        detail: /hlc.counter/,
      },
      // Over the limits.
      {
        what: 'the collab flag as an integer',
        plain: await signWire(alice, withBody(body.map((f, i) => (i === 4 ? 1 : f)))),
        detail: /collab: expected a boolean/,
      },
      {
        what: 'sealed content shorter than a nonce and a tag',
        plain: await signWire(alice, withBody(body.map((f, i) => (i === CONTENT ? new Uint8Array(27) : f)))),
        detail: /too short to be sealed/,
      },
      {
        what: 'MAX_DEPS + 1 deps',
        plain: encodeOp(
          await signOp(alice, {
            ...op,
            deps: canonicalDeps(Array.from({ length: MAX_DEPS + 1 }, () => webRng.randomBytes(32) as OpId)),
          }),
        ),
        detail: /deps/,
      },
      {
        what: 'an array of MAX_ARRAY_LENGTH + 1 items',
        plain: await signWire(
          alice,
          withBody(
            body.map((f, i) => (i === CONTENT ? new Array<CborValue>(MAX_ARRAY_LENGTH + 1).fill(null) : f)),
          ),
        ),
        detail: /array of 1025 items/,
      },
      {
        what: 'nesting one level deeper than MAX_DEPTH',
        plain: await signRaw(
          alice,
          withItem(BODY, concatBytes(Uint8Array.of(0x86), ...bodyItems.slice(0, 5), nested)),
        ),
        detail: /nesting/,
      },
      // Unknown kinds and versions.
      {
        what: 'kind 99',
        plain: await signWire(
          alice,
          fields.map((f, i) => (i === 2 ? 99 : f)),
        ),
        detail: /unknown kind 99/,
      },
      {
        what: 'kind 0',
        plain: await signWire(
          alice,
          fields.map((f, i) => (i === 2 ? 0 : f)),
        ),
        detail: /unknown kind 0/,
      },
      {
        what: 'version 1 (the format before content was sealed apart)',
        plain: await signWire(
          alice,
          fields.map((f, i) => (i === 0 ? 1 : f)),
        ),
        detail: /unknown version/,
      },
      // The op names another epoch than its envelope.
      {
        what: 'an op of epoch 0 in an envelope of epoch 1',
        plain: encodeOp(await signOp(alice, { ...op, epoch: fx.w.epoch(0) })),
        detail: /different epochs/,
      },
      // Not CBOR at all, and trailing bytes after a valid op.
      { what: 'no bytes', plain: new Uint8Array(0), detail: /ends early/ },
      {
        what: 'a valid op with a trailing byte',
        plain: concatBytes(encodeOp(await signOp(alice, op)), Uint8Array.of(0x00)),
        detail: /item ends at byte/,
      },
    ];
    for (const c of cases) {
      await expectRefused(fx, await sealAt(fx, c.plain), 'rejected:malformed', c.detail, c.what);
    }
    // The untampered op goes through.
    expect(label(await offer(fx.r, await sealAt(fx, encodeOp(await signOp(alice, op)))))).toBe('accepted');
  });

  it('the limits are inclusive: text of exactly MAX_POST_TEXT_BYTES is accepted, MAX_DEPS deps are not malformed', async () => {
    const fx = await fixture();
    const alice = fx.w.person('alice');
    const full = await sealAt(
      fx,
      encodeOp(await signOp(alice, draft(fx, alice, 'é'.repeat(MAX_POST_TEXT_BYTES / 2)))),
    );
    expect(label(await offer(fx.r, full))).toBe('accepted');
    const many = canonicalDeps([
      ...fx.r.currentHeads(),
      ...Array.from({ length: MAX_DEPS - 1 }, () => webRng.randomBytes(32) as OpId),
    ]);
    const o = await expectRefused(
      fx,
      await sealAt(fx, encodeOp(await signOp(alice, { ...draft(fx, alice), deps: many }))),
      'buffered:missing-deps',
    );
    expect(o.kind === 'buffered' ? o.missing.length : 0).toBe(MAX_DEPS - 1);
  });

  it('a forged signature is bad-signature', async () => {
    const fx = await fixture();
    const bob = fx.w.person('bob');
    const signed = await signOp(bob, draft(fx, bob));
    for (const bit of [0, 7, 8 * 63 + 7]) {
      const sig = signed.sig.slice();
      sig[bit >> 3] = (sig[bit >> 3] as number) ^ (1 << (bit & 7));
      await expectRefused(
        fx,
        await sealAt(fx, encodeOp({ ...signed, sig })),
        'rejected:bad-signature',
        /op signature/,
      );
    }
    // Signed by Carol's device while claiming Bob's.
    const carolSig = await fx.w.person('carol').deviceKey.sign(encodeUnsigned(signed));
    await expectRefused(
      fx,
      await sealAt(fx, encodeOp({ ...signed, sig: carolSig })),
      'rejected:bad-signature',
      /op signature/,
    );
    expect(label(await offer(fx.r, await sealAt(fx, encodeOp(signed))))).toBe('accepted');
  });

  describe('a device certificate of another user', () => {
    it("Carol's certificate on Bob's device, the op signed by Bob's device", async () => {
      const fx = await fixture();
      const bob = fx.w.person('bob');
      const forged = await signOp(bob, { ...draft(fx, bob), cert: fx.w.person('carol').cert });
      await expectRefused(fx, await sealAt(fx, encodeOp(forged)), 'rejected:bad-signature', /certificate/);
    });

    /** Bob's certificate with its user changed to Carol's (Bob's user signature kept), op signed by Bob. */
    async function claimCarol(fx: Fixture): Promise<Uint8Array> {
      const bob = fx.w.person('bob');
      const cert = { ...bob.cert, user: fx.w.person('carol').user };
      return sealAt(fx, encodeOp(await signOp(bob, { ...draft(fx, bob), cert })));
    }

    it("Bob's certificate relabelled as Carol's, on a replica that never saw Bob's device", async () => {
      const fx = await fixture();
      // The same history without Bob's post: this replica has never verified Bob's certificate.
      const fresh = await testReplica(fx.w.space, fx.w.group, { clock: fx.w.clock });
      for (const op of fx.history.filter((_, i) => i !== 4)) await fresh.accept(op.sealed);
      const sealed = await claimCarol(fx);
      const before = fresh.state.canonicalState();
      expect(label(await offer(fresh, sealed))).toBe('rejected:bad-signature');
      expect(fresh.state.canonicalState()).toEqual(before);
    });

    it('a device whose key begins like a known device key cannot borrow that device certificate', async () => {
      // The replica finds an op's device among those whose certificate verified by the first
      // bytes of its key, then the whole key. Two devices whose keys share those bytes: the
      // second presents the first one's certificate (so claims the first one's user).
      const fx = await fixture();
      const ed25519 = testEd25519();
      const byPrefix = new Map<number, SigningKey>();
      let pair: [SigningKey, SigningKey] | undefined;
      for (let i = 0; i < 5_000 && pair === undefined; i++) {
        const key = await ed25519.fromSeed(webRng.randomBytes(32));
        const prefix = (key.publicKey[0] as number) | ((key.publicKey[1] as number) << 8);
        const seen = byPrefix.get(prefix);
        if (seen === undefined) byPrefix.set(prefix, key);
        else pair = [seen, key];
      }
      if (pair === undefined) return expect.unreachable('no two keys with the same first bytes');
      const [victimKey, intruderKey] = pair;
      const device = async (key: SigningKey): Promise<DeviceIdentity> => {
        const cert = await certifyDevice(
          await ed25519.generate(),
          key.publicKey as DeviceId,
          1_700_000_000_000,
        );
        return { user: cert.user, device: key.publicKey as DeviceId, cert, deviceKey: key };
      };
      const victim = await device(victimKey);
      const intruder = await device(intruderKey);
      fx.w.group.setEpoch(1, [...[...fx.w.people.values()].map((p) => p.user), victim.user, intruder.user]);
      expect(
        label(await offer(fx.r, await sealAt(fx, encodeOp(await signOp(victim, draft(fx, victim)))))),
      ).toBe('accepted');
      const borrowed = await signOp(intruder, { ...draft(fx, intruder), cert: victim.cert });
      await expectRefused(fx, await sealAt(fx, encodeOp(borrowed)), 'rejected:bad-signature', /certificate/);
      // With its own certificate the intruder's device posts as its own user.
      const own = await sealAt(fx, encodeOp(await signOp(intruder, draft(fx, intruder, 'mine'))));
      expect(label(await offer(fx.r, own))).toBe('accepted');
      const last = fx.accepted.at(-1);
      expect(last === undefined ? '' : toHex(last.op.cert.user)).toBe(toHex(intruder.user));
    });

    it("Bob's certificate relabelled as Carol's, on a replica that already verified Bob's certificate", async () => {
      // A verified certificate is remembered whole: a cert with Bob's device and signature but
      // another user (or time) is verified again, and fails, rather than passing on the cache.
      const fx = await fixture();
      await expectRefused(fx, await claimCarol(fx), 'rejected:bad-signature', /certificate/);
    });
  });

  it('a replay, and the same signed op sealed again, are duplicates', async () => {
    const fx = await fixture();
    const post = fx.history[5] as Written;
    const o = await expectRefused(fx, post.sealed, 'duplicate');
    expect(toHex(o.opId)).toBe(toHex(post.opId));

    const resealed = await sealAt(fx, await plainOf(fx, post.sealed));
    expect(toHex(sha256(resealed))).not.toBe(toHex(post.opId));
    const again = await expectRefused(fx, resealed, 'duplicate');
    expect(toHex(again.opId)).toBe(toHex(sha256(resealed)));
    expect(fx.r.has(again.opId)).toBe(false);

    // The genesis too, replayed and resealed.
    const genesis = fx.history[0] as Written;
    await expectRefused(fx, genesis.sealed, 'duplicate');
    await expectRefused(fx, await sealAt(fx, await plainOf(fx, genesis.sealed, 0), 0), 'duplicate');
  });

  it('two different ops are never duplicates, even when their signatures share R', async () => {
    // A duplicate is the same signed op (ARCHITECTURE.md section 2: recognised by its hash).
    // A client whose signer reuses its nonce makes different ops whose signatures share R;
    // were they taken for one op, replicas would keep whichever arrived first and diverge.
    const fx = await fixture();
    const mallory = await fixedNonceIdentity();
    fx.w.group.setEpoch(1, [...[...fx.w.people.values()].map((p) => p.user), mallory.user]);
    const one = await signOp(mallory, draft(fx, mallory, 'one'));
    const two = await signOp(mallory, draft(fx, mallory, 'two'));
    expect(toHex(one.sig.subarray(0, 32))).toBe(toHex(two.sig.subarray(0, 32)));
    const sealed = [await sealAt(fx, encodeOp(one)), await sealAt(fx, encodeOp(two))] as const;
    expect([label(await offer(fx.r, sealed[0])), label(await offer(fx.r, sealed[1]))]).toEqual([
      'accepted',
      'accepted',
    ]);
    const other = await testReplica(fx.w.space, fx.w.group, { clock: fx.w.clock });
    for (const op of fx.history) await other.accept(op.sealed);
    expect([label(await offer(other, sealed[1])), label(await offer(other, sealed[0]))]).toEqual([
      'accepted',
      'accepted',
    ]);
    expect(other.state.canonicalState()).toEqual(fx.r.state.canonicalState());
  });

  it('an op of an unknown epoch waits for its key, then is accepted by retryHeld', async () => {
    const fx = await fixture();
    const alice = fx.w.person('alice');
    const everyone = ['alice', 'bob', 'carol'].map((n) => fx.w.person(n).user);
    // The author's side of the MLS layer already has epoch 5; the replica's does not.
    const authorSide = new TestGroup();
    authorSide.setEpoch(5, everyone);
    const raw = await authorSide.epochKey(fx.w.space, testEpoch(5));
    if (raw === undefined) throw new Error('no key');
    const op = await signOp(alice, draft(fx, alice, 'from epoch 5', testEpoch(5)));
    const sealed = await seal(
      encodeOp(op),
      fx.r.topic,
      testEpoch(5),
      await importEpochKey(raw),
      webRng.randomBytes(NONCE_BYTES),
    );

    const o = await expectRefused(fx, sealed, 'buffered:awaiting-epoch');
    expect(o.kind === 'buffered' ? o.missing : undefined).toEqual([]);
    expect(fx.r.holdback()).toEqual({
      size: 1,
      byReason: { 'awaiting-epoch': 1, 'missing-deps': 0, 'clock-ahead': 0, 'store-failed': 0 },
    });
    // Offered again while waiting: still buffered, still unchanged.
    await expectRefused(fx, sealed, 'buffered:awaiting-epoch');
    expect(fx.r.holdback().size).toBe(1);
    // Retrying before the key exists changes nothing.
    expect((await fx.r.retryHeld()).map(label)).toEqual(['buffered:awaiting-epoch']);

    fx.w.group.setEpoch(5, everyone);
    const retried = await fx.r.retryHeld();
    expect(retried.map(label)).toEqual(['accepted']);
    expect(toHex((retried[0] as AcceptOutcome).opId)).toBe(toHex(sha256(sealed)));
    expect(fx.r.holdback().size).toBe(0);
    expect(fx.accepted.map((e) => toHex(e.opId))).toEqual([toHex(sha256(sealed))]);
    expect(fx.r.state.size).toBe(7);
    expect(fx.r.state.post(op.kind === 'CreatePost' ? op.body.post : new Uint8Array(16))?.text).toBe(
      'from epoch 5',
    );
  });

  it('an op with missing deps waits, its deps are fetched, and it is released when they arrive', async () => {
    const fx = await fixture();
    const a = await fx.w.post('alice', fx.chat, 'first, delivered late');
    const b = await fx.w.post('alice', fx.chat, 'second, depends on the first');
    expect((await opOf(fx, b.sealed)).deps.map(toHex)).toContain(toHex(a.opId));

    const o = await expectRefused(fx, b.sealed, 'buffered:missing-deps');
    expect(o.kind === 'buffered' ? o.missing.map(toHex) : []).toEqual([toHex(a.opId)]);
    expect(fx.fetched.map((ids) => ids.map(toHex))).toEqual([[toHex(a.opId)]]);
    expect(fx.r.holdback().byReason['missing-deps']).toBe(1);
    // Offered again: still waiting, and the dep is not asked for twice.
    await expectRefused(fx, b.sealed, 'buffered:missing-deps');
    expect(fx.fetched).toHaveLength(1);

    expect(label(await offer(fx.r, a.sealed))).toBe('accepted');
    expect(fx.accepted.map((e) => toHex(e.opId))).toEqual([toHex(a.opId), toHex(b.opId)]);
    expect(fx.r.has(b.opId)).toBe(true);
    expect(fx.r.holdback().size).toBe(0);
    expect(fx.r.currentHeads().map(toHex)).toEqual([toHex(b.opId)]);
    expect(await fx.store.countOps(fx.w.space)).toBe(8);
    expect(fx.r.state.canonicalState()).toEqual(fx.w.replica('alice').state.canonicalState());
    expect(label(await offer(fx.r, b.sealed))).toBe('duplicate');
  });

  it('the holdback queue is bounded: overflow drops the oldest buffered ops, reported by onDropped', async () => {
    const fx = await fixture({ maxHoldback: 5 });
    const root = await fx.w.post('alice', fx.chat, 'the missing root');
    const chain: Written[] = [];
    for (let i = 0; i < 8; i++) chain.push(await fx.w.post('alice', fx.chat, `reply ${i}`));

    for (const op of chain) await expectRefused(fx, op.sealed, 'buffered:missing-deps');
    expect(fx.r.holdback()).toEqual({
      size: 5,
      byReason: { 'awaiting-epoch': 0, 'missing-deps': 5, 'clock-ahead': 0, 'store-failed': 0 },
    });
    expect(fx.dropped.map(toHex)).toEqual(chain.slice(0, 3).map((x) => toHex(x.opId)));
    expect(fx.fetched.flat().map(toHex)).toEqual([root, ...chain.slice(0, 7)].map((x) => toHex(x.opId)));

    // The root arrives: what it would release was dropped, so the five stay held.
    expect(label(await offer(fx.r, root.sealed))).toBe('accepted');
    expect(fx.r.holdback().size).toBe(5);
    // Sync delivers the dropped ones again; the rest of the chain follows.
    for (const op of chain.slice(0, 3)) expect(label(await offer(fx.r, op.sealed))).toBe('accepted');
    expect(fx.r.holdback().size).toBe(0);
    expect(fx.accepted.map((e) => toHex(e.opId))).toEqual([root, ...chain].map((x) => toHex(x.opId)));
    expect(fx.r.state.canonicalState()).toEqual(fx.w.replica('alice').state.canonicalState());
  });

  it("an op whose clock is not after its deps' is bad-clock", async () => {
    const fx = await fixture();
    const carol = fx.w.person('carol');
    const heads = fx.r.currentHeads().map(toHex);
    const depOps = await Promise.all(
      fx.history.filter((x) => heads.includes(toHex(x.opId))).map((x) => opOf(fx, x.sealed)),
    );
    const latest = depOps.map((op) => op.hlc).reduce((a, b) => (a.wallMs > b.wallMs ? a : b));
    const stamps: Hlc[] = [
      { wallMs: latest.wallMs - 1, counter: 0 },
      { wallMs: latest.wallMs - 1, counter: 1000 },
      latest,
      { wallMs: 0, counter: 0 },
    ];
    for (const hlc of stamps) {
      const op = await signOp(carol, { ...draft(fx, carol), hlc });
      await expectRefused(fx, await sealAt(fx, encodeOp(op)), 'rejected:bad-clock');
    }
    // Just after the latest dep is fine.
    const ok = await signOp(carol, { ...draft(fx, carol), hlc: { ...latest, counter: latest.counter + 1 } });
    expect(label(await offer(fx.r, await sealAt(fx, encodeOp(ok))))).toBe('accepted');
  });
});

// ---------------------------------------------------------------- 2. persistence

/** A Space with a few dozen ops of many kinds, everyone's replica caught up after each. */
async function busyWorld(): Promise<{ w: World; chat: ChannelId; ops: Written[] }> {
  const w = await World.create(['alice', 'bob', 'carol']);
  const { chat, forum, ops } = await w.setUp();
  const all = [...ops];
  const share = async (x: Written): Promise<Written> => {
    expect(label(x.outcome)).toBe('accepted');
    all.push(x);
    for (const n of w.replicas.keys()) if (!w.replica(n).has(x.opId)) await w.deliver(n, x);
    return x;
  };
  const bob = w.person('bob').user;
  const carol = w.person('carol').user;
  await share(await w.write('alice', 'AssignRole', { user: bob, role: 'moderator' }));
  await share(
    await w.write('alice', 'SetSpaceSettings', { name: 'Busy', description: 'd', historyVisibility: 'all' }),
  );
  await share(
    await w.write('alice', 'CreateInvite', {
      invite: newId<InviteId>(),
      secret: webRng.randomBytes(32),
      expiresAtMs: w.clock.now() + 86_400_000,
      maxUses: 3,
      role: 'member',
    }),
  );
  await share(
    await w.write('alice', 'EditChannel', { channel: chat, name: 'lobby', topic: 'hi', archived: null }),
  );
  const thread = await w.thread('carol', forum, 'A question');
  await share(thread);
  const posts: { post: PostId }[] = [];
  const names = ['alice', 'bob', 'carol'] as const;
  for (let i = 0; i < 12; i++) {
    const who = names[i % 3] as string;
    const p = await w.post(who, chat, `message ${i}`);
    await share(p);
    posts.push(p);
  }
  for (let i = 0; i < 4; i++) {
    await share(await w.post(names[i % 3] as string, forum, `answer ${i}`, { thread: thread.thread }));
  }
  const first = posts[2] as { post: PostId };
  await share(
    await w.write('carol', 'EditPost', { post: first.post, text: 'message 2, edited', change: null }),
  );
  await share(
    await w.write('carol', 'EditPost', { post: first.post, text: 'message 2, again', change: null }),
  );
  await share(
    await w.write('bob', 'DeletePost', { post: (posts[5] as { post: PostId }).post, reason: 'spam' }),
  );
  await share(
    await w.write('alice', 'DeletePost', { post: (posts[0] as { post: PostId }).post, reason: '' }),
  );
  await share(await w.write('bob', 'Mute', { user: carol, untilMs: null, reason: 'loud' }));
  await share(await w.write('alice', 'Unmute', { user: carol }));
  await share(await w.write('bob', 'Timeout', { user: carol, untilMs: w.clock.now() + 5, reason: 'brief' }));
  w.clock.advance(100);
  await share(await w.write('alice', 'KeyHistory', { recipient: carol, payload: webRng.randomBytes(40) }));
  await share(await w.post('carol', chat, 'back again'));
  await share(await w.write('alice', 'RevokeRole', { user: bob, role: 'moderator' }));
  return { w, chat, ops: all };
}

describe('persistence', () => {
  it('a replica reopened on its IndexedDB store rebuilds the same state, heads and duplicates', async () => {
    const { w, chat, ops } = await busyWorld();
    expect(ops.length).toBeGreaterThanOrEqual(30);
    const factory = new IDBFactory();
    const name = 'conclave-pipeline-test';
    const store = await idbStorage(name, factory);
    const disk = await testReplica(w.space, w.group, { clock: w.clock, storage: store });
    // Newest first: all but the genesis wait in the holdback queue, then are released in a chain.
    const outcomes: string[] = [];
    for (const op of [...ops].reverse()) outcomes.push(label(await offer(disk, op.sealed)));
    expect(outcomes.slice(0, -1).every((o) => o === 'buffered:missing-deps')).toBe(true);
    expect(outcomes.at(-1)).toBe('accepted');
    expect(disk.state.size).toBe(ops.length);
    expect(disk.state.canonicalState()).toEqual(w.replica('alice').state.canonicalState());

    const before = await snapshot({ w, r: disk, store });
    expect(before.stored).toBe(ops.length);
    expect(before.storedHeads).toEqual(before.heads);
    await store.close();

    const reopenedStore = await idbStorage(name, factory);
    const reopened = await testReplica(w.space, w.group, { clock: w.clock, storage: reopenedStore });
    const after = await snapshot({ w, r: reopened, store: reopenedStore });
    expect(after).toEqual(before);
    expect(reopened.state.canonicalState()).toEqual(disk.state.canonicalState());
    expect(reopened.state.opIds().map(toHex)).toEqual(disk.state.opIds().map(toHex));

    // Replays are duplicates, whether the same sealed bytes or the same op sealed anew.
    for (const op of [ops[0], ops[7], ops.at(-1)] as Written[]) {
      expect(label(await offer(reopened, op.sealed))).toBe('duplicate');
    }
    const last = ops.at(-1) as Written;
    const raw = await w.group.epochKey(w.space, w.epoch(1));
    if (raw === undefined) throw new Error('no key');
    const stored = await reopenedStore.getOp(w.space, last.opId);
    expect(stored).toBeDefined();
    const resealed = await seal(
      stored?.op ?? new Uint8Array(0),
      reopened.topic,
      w.epoch(1),
      await importEpochKey(raw),
      webRng.randomBytes(NONCE_BYTES),
    );
    expect(label(await offer(reopened, resealed))).toBe('duplicate');
    expect(await snapshot({ w, r: reopened, store: reopenedStore })).toEqual(before);

    // And it carries on: a new op is accepted on top of the rebuilt heads.
    const next = await w.post('bob', chat, 'after reopen');
    expect(label(await offer(reopened, next.sealed))).toBe('accepted');
    expect(reopened.currentHeads().map(toHex)).toEqual([toHex(next.opId)]);
    expect(await reopenedStore.countOps(w.space)).toBe(ops.length + 1);
    await reopenedStore.close();
  });

  /** A store whose `putOp` fails with `quota` for the ops `fails.when` picks, and `putOps` for a batch holding one. */
  function flaky(inner: Storage): { store: Storage; fails: { when: (op: StoredOp) => boolean } } {
    const fails = { when: (_op: StoredOp): boolean => false };
    const store: Storage = {
      ...inner,
      putOp: (space, op, heads) =>
        fails.when(op)
          ? Promise.reject(new StorageError('quota', 'the disk is full'))
          : inner.putOp(space, op, heads),
      putOps: (space, ops, heads) =>
        ops.some((op) => fails.when(op))
          ? Promise.reject(new StorageError('quota', 'the disk is full'))
          : inner.putOps(space, ops, heads),
    };
    return { store, fails };
  }

  it('when the store fails, accept returns failed and changes nothing; the op is accepted once it recovers', async () => {
    const { store, fails } = flaky(memoryStorage());
    const fx = await fixture({ storage: store });
    const post = await fx.w.post('bob', fx.chat, 'while the disk is full');
    const before = await snapshot(fx);

    fails.when = () => true;
    const o = await offer(fx.r, post.sealed);
    expect(o.kind).toBe('failed');
    if (o.kind === 'failed') {
      expect(o.error).toBeInstanceOf(StorageError);
      expect(o.error.code).toBe('quota');
      expect(toHex(o.opId)).toBe(toHex(post.opId));
    }
    expect(await snapshot(fx)).toEqual(before);
    expect(fx.r.has(post.opId)).toBe(false);
    expect(fx.r.holdback().size).toBe(0);
    expect(fx.accepted).toHaveLength(0);
    // Still failing: the same answer, still nothing changed.
    expect(label(await offer(fx.r, post.sealed))).toBe('failed');
    expect(await snapshot(fx)).toEqual(before);

    fails.when = () => false;
    expect(label(await offer(fx.r, post.sealed))).toBe('accepted');
    expect(fx.r.currentHeads().map(toHex)).toEqual([toHex(post.opId)]);
    expect(await fx.store.countOps(fx.w.space)).toBe(before.stored + 1);
    expect(fx.accepted.map((e) => toHex(e.opId))).toEqual([toHex(post.opId)]);
    expect(fx.r.state.canonicalState()).toEqual(fx.w.replica('bob').state.canonicalState());
  });

  it('an op released from the holdback whose store write fails is kept, and accepted once the store recovers', async () => {
    const { store, fails } = flaky(memoryStorage());
    const fx = await fixture({ storage: store });
    const a = await fx.w.post('alice', fx.chat, 'the dep');
    const b = await fx.w.post('alice', fx.chat, 'waits for the dep');
    expect(label(await offer(fx.r, b.sealed))).toBe('buffered:missing-deps');

    fails.when = (op) => toHex(op.opId) === toHex(b.opId);
    expect(label(await offer(fx.r, a.sealed))).toBe('accepted');
    expect(fx.r.has(a.opId)).toBe(true);
    expect(fx.r.has(b.opId)).toBe(false);
    expect(await fx.store.countOps(fx.w.space)).toBe(fx.history.length + 1);
    expect(fx.accepted.map((e) => toHex(e.opId))).toEqual([toHex(a.opId)]);

    expect(fx.r.holdback().byReason['store-failed']).toBe(1);
    expect(fx.dropped).toEqual([]);

    fails.when = () => false;
    expect((await fx.r.retryHeld()).map(label)).toEqual(['accepted']);
    expect(fx.r.has(b.opId)).toBe(true);
    expect(fx.r.holdback().size).toBe(0);
    expect(await fx.store.countOps(fx.w.space)).toBe(fx.history.length + 2);
  });
});

describe('group commit', () => {
  /** A memory store that counts its transactions and can fail the batches holding a chosen op. */
  function counting(inner: Storage) {
    const seen = { transactions: 0, failOn: undefined as string | undefined };
    const store: Storage = {
      ...inner,
      putOp: (space, op, heads) => {
        if (toHex(op.opId) === seen.failOn) return Promise.reject(new StorageError('quota', 'full'));
        seen.transactions++;
        return inner.putOp(space, op, heads);
      },
      putOps: (space, ops, heads) => {
        if (ops.some((op) => toHex(op.opId) === seen.failOn))
          return Promise.reject(new StorageError('quota', 'full'));
        seen.transactions++;
        return inner.putOps(space, ops, heads);
      },
    };
    return { store, seen };
  }

  it('ops offered together are written in a few transactions, each reported only once stored, in order', async () => {
    const inner = memoryStorage();
    const { store, seen } = counting(inner);
    const storedWhenReported: boolean[] = [];
    const reportedIds: string[] = [];
    const fx = await fixture({
      storage: store,
      onAccepted: (ev) => {
        // Asked at once: the op must already be in the store when it is reported.
        void inner.hasOp(ev.op.space, ev.opId).then((has) => storedWhenReported.push(has));
        reportedIds.push(toHex(ev.opId));
      },
    });
    const posts = [];
    for (let i = 0; i < 60; i++)
      posts.push(await fx.w.post(i % 2 === 0 ? 'alice' : 'bob', fx.chat, `burst ${i}`));
    const before = seen.transactions;
    const outcomes = await Promise.all(posts.map((p) => offer(fx.r, p.sealed)));
    expect(outcomes.map(label)).toEqual(posts.map(() => 'accepted'));
    expect(seen.transactions - before).toBeLessThanOrEqual(3);
    expect(reportedIds.slice(-60)).toEqual(posts.map((p) => toHex(p.opId)));
    await Promise.resolve();
    expect(storedWhenReported.slice(-60).every((x) => x)).toBe(true);
    expect(await fx.store.countOps(fx.w.space)).toBe(fx.history.length + 60);
    expect((await fx.store.getHeads(fx.w.space)).map(toHex)).toEqual(fx.r.currentHeads().map(toHex));
    // A reopened replica is the same.
    const again = await testReplica(fx.w.space, fx.w.group, { clock: fx.w.clock, storage: inner });
    expect(toHex(again.state.canonicalState())).toBe(toHex(fx.r.state.canonicalState()));
  });

  it('when a batch write fails, the ops before the failing one are kept and the rest fail, leaving state as stored', async () => {
    const inner = memoryStorage();
    const { store, seen } = counting(inner);
    const fx = await fixture({ storage: store });
    const posts = [];
    for (let i = 0; i < 8; i++) posts.push(await fx.w.post('carol', fx.chat, `batch ${i}`));
    seen.failOn = toHex((posts[5] as { opId: OpId }).opId);
    const outcomes = await Promise.all(posts.map((p) => offer(fx.r, p.sealed)));
    expect(outcomes.map(label)).toEqual([
      ...Array<string>(5).fill('accepted'),
      ...Array<string>(3).fill('failed'),
    ]);
    for (const [i, p] of posts.entries()) {
      expect(fx.r.has(p.opId)).toBe(i < 5);
      expect(await inner.hasOp(fx.w.space, p.opId)).toBe(i < 5);
    }
    expect(fx.accepted.slice(-5).map((e) => toHex(e.opId))).toEqual(
      posts.slice(0, 5).map((p) => toHex(p.opId)),
    );
    expect((await inner.getHeads(fx.w.space)).map(toHex)).toEqual(fx.r.currentHeads().map(toHex));
    const reopened = await testReplica(fx.w.space, fx.w.group, { clock: fx.w.clock, storage: inner });
    expect(toHex(reopened.state.canonicalState())).toBe(toHex(fx.r.state.canonicalState()));
    expect(fx.r.holdback().size).toBe(0);

    // Offered again once the store recovers, the rest is accepted.
    seen.failOn = undefined;
    const retried = await Promise.all(posts.slice(5).map((p) => offer(fx.r, p.sealed)));
    expect(retried.map(label)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(toHex(fx.r.state.canonicalState())).toBe(toHex(fx.w.replica('carol').state.canonicalState()));
  });
});
