/**
 * Convergence (ARCHITECTURE.md section 5): 2–5 authors write random ops of every kind on their
 * own replicas while exchanging them through lossy, partitioned, reordering links; then fresh
 * replicas receive everything in random orders with duplicates, drops-then-retries and
 * partitions. Replicas that accepted the same set of ops must hold byte-identical state; so
 * must replicas opened from a state checkpoint and the ops stored after it, and from the log.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DeviceIdentity } from '../protocol/identity.js';
import {
  type Drafts,
  type ChannelId,
  type InviteId,
  type OpKind,
  type PostId,
  type SpaceId,
  type ThreadId,
  OP_KINDS,
  bytesKey,
  toHex,
} from '../protocol/index.js';
import { createCollab, editCollab, loadAutomerge } from './collab.js';
import { describeAuth } from './control.js';
import { memoryStorage } from '../ports/storage.memory.js';
import type { Storage, StoredOp } from '../ports/storage.js';
import { type SpaceReplica, checkpointKey } from './replica.js';
import { ManualClock, TestGroup, makeIdentities, seededRng, testReplica, testSpaceId } from './testkit.js';

// Automerge loads on first need (collab.ts); these tests call it directly.
await loadAutomerge();

const NUM_RUNS = Number(process.env.CONVERGENCE_RUNS ?? 200);
/** Kinds written across all runs, with how many were accepted by their author's replica. */
const tally = new Map<OpKind, { written: number; accepted: number }>();
const ACTIONS = 23;

interface Step {
  readonly t: 'write' | 'sync' | 'tick';
  readonly who: number;
  readonly other: number;
  readonly action: number;
  readonly a: number;
  readonly b: number;
  readonly keep: number;
  readonly text: string;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  t: fc.constantFrom<'write' | 'sync' | 'tick'>('write', 'write', 'write', 'sync', 'tick'),
  who: fc.nat(4),
  other: fc.nat(4),
  action: fc.nat(ACTIONS - 1),
  a: fc.nat(1000),
  b: fc.nat(1000),
  keep: fc.integer({ min: 30, max: 100 }),
  text: fc.string({ maxLength: 40 }),
});

const scenarioArb = fc.record({
  authors: fc.integer({ min: 2, max: 5 }),
  steps: fc.array(stepArb, { minLength: 20, maxLength: 45 }),
  seed: fc.integer({ min: 1, max: 0x7fffffff }),
  orders: fc.array(fc.integer({ min: 1, max: 0x7fffffff }), { minLength: 3, maxLength: 3 }),
});

/** A deterministic shuffle with duplicates and drops, driven by a seed. */
function schedule<T>(items: readonly T[], seed: number): { first: T[]; retry: T[] } {
  const rng = seededRng(seed);
  const r = () => (rng.randomBytes(1)[0] as number) / 256;
  const shuffled = [...items];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j] as T, shuffled[i] as T];
  }
  const first: T[] = [];
  const retry: T[] = [];
  for (const x of shuffled) {
    const p = r();
    if (p < 0.2)
      retry.push(x); // dropped, retried later
    else first.push(x);
    if (p > 0.85) first.push(x); // duplicated
  }
  return { first, retry };
}

class Author {
  readonly log: Uint8Array[] = [];
  readonly seen = new Set<string>();
  constructor(
    readonly id: DeviceIdentity,
    readonly replica: SpaceReplica,
    readonly clock: ManualClock,
  ) {}

  remember(sealed: Uint8Array): void {
    const k = bytesKey(sealed);
    if (this.seen.has(k)) return;
    this.seen.add(k);
    this.log.push(sealed);
  }
}

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

async function run(s: Scenario): Promise<void> {
  const rng = seededRng(s.seed);
  const id = <T extends Uint8Array>() => rng.randomBytes(16) as T;
  const space = testSpaceId(3);
  const group = new TestGroup();
  const people = await makeIdentities(s.authors);
  group.setEpoch(0, [(people[0] as DeviceIdentity).user]);
  const e1 = group.setEpoch(
    1,
    people.map((p) => p.user),
  );
  const e0 = { epoch: 0, commitHash: new Uint8Array(32) };
  const base = 1_764_000_000_000;
  const authors: Author[] = [];
  for (let i = 0; i < s.authors; i++) {
    const clock = new ManualClock(base + i * 7);
    authors.push(
      new Author(people[i] as DeviceIdentity, await testReplica(space, group, { clock, rng }), clock),
    );
  }
  const universe: Uint8Array[] = [];
  const write = async <K extends OpKind>(au: Author, kind: K, body: Drafts[K], epoch = e1) => {
    au.clock.advance(1 + (universe.length % 3));
    const r = await au.replica.write(au.id, epoch, kind, body);
    if (r.kind !== 'written') throw new Error('no key');
    universe.push(r.sealed);
    au.remember(r.sealed);
    const t = tally.get(kind) ?? { written: 0, accepted: 0 };
    tally.set(kind, {
      written: t.written + 1,
      accepted: t.accepted + (r.outcome.kind === 'accepted' ? 1 : 0),
    });
  };

  const creator = authors[0] as Author;
  const chat = id<ChannelId>();
  const forum = id<ChannelId>();
  await write(creator, 'CreateSpace', { name: 'space', description: '' }, e0);
  await write(creator, 'CreateChannel', { channel: chat, name: 'chat', type: 'chat', topic: '' });
  await write(creator, 'CreateChannel', { channel: forum, name: 'forum', type: 'forum', topic: '' });
  await write(creator, 'AssignRole', { user: (authors[1] as Author).id.user, role: 'moderator' });
  for (const au of authors.slice(1)) {
    for (const x of creator.log) {
      await au.replica.accept(x);
      au.remember(x);
    }
  }

  for (const st of s.steps) {
    const au = authors[st.who % authors.length] as Author;
    if (st.t === 'tick') {
      for (const x of authors) x.clock.advance(st.a * 60);
      continue;
    }
    if (st.t === 'sync') {
      const to = authors[st.other % authors.length] as Author;
      if (to === au) continue;
      const { first } = schedule(au.log, st.a + 1);
      for (const x of first.slice(0, Math.ceil((first.length * st.keep) / 100))) {
        await to.replica.accept(x);
        to.remember(x);
      }
      continue;
    }
    // Moderation mostly by the admin or the moderator, so that much of it is allowed.
    const mod = st.action >= 4 && st.action <= 17 && st.b % 3 !== 0;
    const actor = mod ? (authors[st.b % 2] as Author) : au;
    await act(actor, st);
  }

  async function act(au: Author, st: Step): Promise<void> {
    const state = au.replica.state;
    const posts = state.allPosts();
    const channels = state.channels();
    const threads = state.threadsIn(forum);
    const pick = <T>(xs: readonly T[], n: number): T | undefined => xs[n % Math.max(1, xs.length)];
    const someone = (authors[st.b % authors.length] as Author).id.user;
    const post = pick(posts, st.a);
    const untilMs = au.clock.now() + (st.b % 3) * 60_000;
    switch (st.action) {
      case 0:
        await write(au, 'CreatePost', {
          post: id<PostId>(),
          channel: chat,
          thread: null,
          parent:
            st.b % 2 === 0 && post !== undefined && bytesKey(post.channel) === bytesKey(chat)
              ? (post.postId as PostId)
              : null,
          text: st.text,
          body: null,
          attachments: [],
          collab: null,
        });
        break;
      case 1: {
        const t = pick(threads, st.a);
        if (t === undefined) {
          await act(au, { ...st, action: 2 });
          break;
        }
        await write(au, 'CreatePost', {
          post: id<PostId>(),
          channel: forum,
          thread: t.threadId as ThreadId,
          parent: null,
          text: st.text,
          body: null,
          attachments: [],
          collab: null,
        });
        break;
      }
      case 2:
        await write(au, 'CreateThread', {
          thread: id<ThreadId>(),
          channel: forum,
          title: st.text || 'thread',
          root: null,
        });
        break;
      case 3: {
        // Mostly one's own post (allowed), sometimes anyone's (refused unless it is one's own).
        const mine = posts.filter((p) => !p.collab && bytesKey(p.author) === bytesKey(au.id.user));
        const target = st.b % 4 === 0 ? post : pick(mine, st.a);
        if (target !== undefined && !target.collab) {
          await write(au, 'EditPost', { post: target.postId as PostId, text: st.text, change: null });
        }
        break;
      }
      case 4:
        if (post !== undefined)
          await write(au, 'DeletePost', { post: post.postId as PostId, reason: st.text });
        else await act(au, { ...st, action: 0 });
        break;
      case 5:
        await write(au, 'AssignRole', { user: someone, role: st.a % 3 === 0 ? 'admin' : 'moderator' });
        break;
      case 6:
        await write(au, 'RevokeRole', { user: someone, role: st.a % 3 === 0 ? 'admin' : 'moderator' });
        break;
      case 7:
        await write(au, 'Mute', { user: someone, untilMs: st.a % 2 === 0 ? null : untilMs, reason: st.text });
        break;
      case 8:
        await write(au, 'Unmute', { user: someone });
        break;
      case 9:
        await write(au, 'Timeout', { user: someone, untilMs, reason: st.text });
        break;
      case 10:
        await write(au, 'Ban', { user: someone, atEpoch: 2, reason: st.text });
        break;
      case 11:
        await write(au, 'Unban', { user: someone });
        break;
      case 12:
        await write(au, 'RemoveMember', { user: someone, atEpoch: 2, reason: st.text });
        break;
      case 13:
        await write(au, 'CreateInvite', {
          invite: id<InviteId>(),
          secret: rng.randomBytes(32),
          expiresAtMs: au.clock.now() + 86_400_000,
          maxUses: st.b % 5,
          role: st.a % 4 === 0 ? 'moderator' : 'member',
        });
        break;
      case 14: {
        const inv = pick(state.invites(), st.a);
        if (inv !== undefined) await write(au, 'RevokeInvite', { invite: inv.invite });
        else await act(au, { ...st, action: 13 });
        break;
      }
      case 15:
        await write(au, 'CreateChannel', {
          channel: id<ChannelId>(),
          name: st.text,
          type: st.a % 2 === 0 ? 'chat' : 'forum',
          topic: '',
        });
        break;
      case 16: {
        const ch = pick(channels, st.a);
        if (ch !== undefined) {
          await write(au, 'EditChannel', {
            channel: ch.channelId as ChannelId,
            name: st.b % 2 === 0 ? st.text : null,
            topic: st.b % 3 === 0 ? st.text : null,
            archived: st.b % 7 === 0 && ch.channelId !== chat ? true : null,
          });
        }
        break;
      }
      case 17:
        await write(au, 'SetSpaceSettings', {
          name: st.b % 2 === 0 ? st.text : null,
          description: null,
          historyVisibility: st.a % 2 === 0 ? 'all' : 'sinceJoin',
        });
        break;
      case 18:
        await write(au, 'KeyHistory', { recipient: someone, payload: rng.randomBytes(st.a % 64) });
        break;
      case 19:
        await write(au, 'CreatePost', {
          post: id<PostId>(),
          channel: chat,
          thread: null,
          parent: null,
          text: '',
          body: null,
          attachments: [],
          collab: createCollab(`shared notes ${st.text}\nsecond line\n`, au.id.device),
        });
        break;
      case 20: {
        const target = posts.find((p) => p.collab);
        if (target === undefined) break;
        const full = state.post(target.postId);
        if (full === undefined) break;
        const doc = state.collabDoc(target.postId);
        if (doc === undefined) break;
        const words = full.text.split(' ');
        words.splice(st.a % (words.length + 1), 0, st.text.replace(/\s/g, '') || 'x');
        const edit = editCollab(doc, words.join(' '), au.id.device);
        if (edit.ok)
          await write(au, 'EditPost', { post: target.postId as PostId, text: null, change: edit.change });
        break;
      }
      case 21: {
        // Admissions race invite revocations, expiry and use limits across replicas.
        const inv = pick(state.invites(), st.a);
        if (inv !== undefined) await write(au, 'Admit', { invite: inv.invite, user: someone });
        else await act(au, { ...st, action: 13 });
        break;
      }
      case 22:
        // Concurrent renames: the latest in the total order is the name on every replica.
        await write(au, 'SetProfile', { name: st.text });
        break;
    }
  }

  // Fresh observers: every op, in random orders, with duplicates, drops-then-retries and a partition.
  const now = base + 10 * 86_400_000;
  const observers: SpaceReplica[] = [];
  const stores = [memoryStorage(), memoryStorage(), memoryStorage()];
  const observe = (storage: Storage) => testReplica(space, group, { clock: new ManualClock(now), storage });
  for (const store of stores) observers.push(await observe(store));
  const half = universe.filter((_, i) => i % 2 === 0);
  for (let i = 0; i < 3; i++) {
    const { first } = schedule(half, (s.orders[i] as number) + 17);
    for (const x of [...first, ...half]) await (observers[i] as SpaceReplica).accept(x);
  }
  // After the partition phase each observer saw the same half: same accepted set, same state.
  expectSameState(observers, now);

  // State checkpoints: observer 0 saves one; a replica opened from it and one replaying the
  // whole log (each on a copy of the store) hold the same state and take in the rest alike.
  await (observers[0] as SpaceReplica).checkpoint();
  const reopened = [
    await observe(await copyStore(stores[0] as Storage, space, true)),
    await observe(await copyStore(stores[0] as Storage, space, false)),
  ];
  if ((observers[0] as SpaceReplica).state.size > 0) expect(reopened[0]?.built.from).toBe('checkpoint');
  expect(reopened[1]?.built.from).toBe('log');
  expectSameState([observers[0] as SpaceReplica, ...reopened], now);

  for (let i = 0; i < 3; i++) {
    const { first, retry } = schedule(universe, s.orders[i] as number);
    for (const r of i === 0 ? [observers[0] as SpaceReplica, ...reopened] : [observers[i] as SpaceReplica]) {
      for (const x of first) await r.accept(x);
      for (const x of retry) await r.accept(x);
    }
  }
  // Authors catch up with everything too.
  for (const au of authors) for (const x of universe) await au.replica.accept(x);
  // And observer 0 opened again: from its checkpoint of the first half and the ops after it.
  const again = await observe(await copyStore(stores[0] as Storage, space, true));
  const all = [...observers, ...reopened, again, ...authors.map((a) => a.replica)];
  expectSameState(all, now);
  for (const r of all) expect(r.holdback().size).toBe(0);
}

/** A copy of a Space's ops and heads, and its checkpoint when `withCheckpoint`, in a new store. */
async function copyStore(from: Storage, space: SpaceId, withCheckpoint: boolean): Promise<Storage> {
  const to = memoryStorage();
  const ops: StoredOp[] = [];
  for await (const op of from.listOps(space)) ops.push(op);
  if (ops.length > 0) await to.putOps(space, ops, await from.getHeads(space));
  const ck = await from.getMeta(checkpointKey(space));
  if (withCheckpoint && ck !== undefined) await to.putMeta(checkpointKey(space), ck);
  return to;
}

function expectSameState(replicas: readonly SpaceReplica[], now: number): void {
  // The authority kept incrementally equals the one computed from scratch.
  for (const r of replicas)
    expect(describeAuth(r.state.current())).toBe(describeAuth(r.state.recomputedAuth()));
  const sets = replicas.map((r) => r.state.opIds().map(toHex).sort().join(','));
  const states = replicas.map((r) => toHex(r.state.canonicalState(now)));
  for (let i = 1; i < replicas.length; i++) {
    expect(sets[i]).toBe(sets[0]);
    expect(states[i]).toBe(states[0]);
  }
}

describe('convergence', () => {
  it(`replicas that accepted the same ops hold byte-identical state (${NUM_RUNS} runs)`, async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, run), { numRuns: NUM_RUNS });
    if (process.env.CONVERGENCE_TALLY === '1') console.log(JSON.stringify([...tally]));
    // The runs covered every kind, and (but for the genesis, written once per run) saw each accepted.
    for (const kind of OP_KINDS) {
      expect(tally.get(kind)?.accepted ?? 0, `${kind} accepted somewhere`).toBeGreaterThan(0);
    }
  });
});
