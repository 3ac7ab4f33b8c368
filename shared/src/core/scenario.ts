/**
 * A small world for tests: one Space, named users each with their own replica, and explicit
 * delivery of sealed ops between replicas, so a test decides who has seen what.
 */
import { webRng } from '../ports/env.js';
import type { DeviceIdentity } from '../protocol/identity.js';
import type {
  Drafts,
  ChannelId,
  EpochRef,
  OpId,
  OpKind,
  PostId,
  SpaceId,
  ThreadId,
} from '../protocol/index.js';
import type { AcceptOutcome, SpaceReplica } from './replica.js';
import { ManualClock, TestGroup, makeIdentities, testEpoch, testReplica, testSpaceId } from './testkit.js';

export interface Written {
  readonly sealed: Uint8Array;
  readonly opId: OpId;
  readonly outcome: AcceptOutcome;
}

export function newId<T extends Uint8Array>(): T {
  return webRng.randomBytes(16) as T;
}

/** A top-level chat post with a fresh id; `extra` overrides any field. */
export function postBody(
  channel: ChannelId,
  text: string,
  extra: Partial<Drafts['CreatePost']> = {},
): Drafts['CreatePost'] {
  return {
    post: newId<PostId>(),
    channel,
    thread: null,
    parent: null,
    text,
    body: null,
    attachments: [],
    collab: null,
    ...extra,
  };
}

export class World {
  readonly clock = new ManualClock();
  readonly group = new TestGroup();
  readonly replicas = new Map<string, SpaceReplica>();
  readonly people = new Map<string, DeviceIdentity>();

  private constructor(readonly space: SpaceId) {}

  /** Users by name; the first creates the Space at epoch 0, and epoch 1 holds everyone. */
  static async create(names: readonly string[]): Promise<World> {
    const w = new World(testSpaceId(7));
    const ids = await makeIdentities(names.length);
    names.forEach((n, i) => w.people.set(n, ids[i] as DeviceIdentity));
    w.group.setEpoch(0, [(ids[0] as DeviceIdentity).user]);
    w.group.setEpoch(
      1,
      ids.map((x) => x.user),
    );
    for (const n of names) w.replicas.set(n, await testReplica(w.space, w.group, { clock: w.clock }));
    return w;
  }

  person(name: string): DeviceIdentity {
    const p = this.people.get(name);
    if (p === undefined) throw new Error(`no person ${name}`);
    return p;
  }

  replica(name: string): SpaceReplica {
    const r = this.replicas.get(name);
    if (r === undefined) throw new Error(`no replica ${name}`);
    return r;
  }

  /** `name` writes an op on its own replica at `epoch` (default: 1). */
  async write<K extends OpKind>(
    name: string,
    kind: K,
    body: Drafts[K],
    epoch: EpochRef | number = 1,
  ): Promise<Written> {
    this.clock.advance(10);
    const e = typeof epoch === 'number' ? this.epoch(epoch) : epoch;
    const r = await this.replica(name).write(this.person(name), e, kind, body);
    if (r.kind !== 'written') throw new Error('no epoch key');
    return { sealed: r.sealed, opId: r.opId, outcome: r.outcome };
  }

  epoch(n: number): EpochRef {
    return testEpoch(n);
  }

  /** Delivers sealed ops to a replica, in the given order; returns the outcomes. */
  async deliver(to: string, ...ops: readonly Written[]): Promise<AcceptOutcome[]> {
    const out: AcceptOutcome[] = [];
    for (const op of ops) out.push(await this.replica(to).accept(op.sealed));
    return out;
  }

  /** The genesis, a chat and a forum channel, and everyone's replica caught up. */
  async setUp(): Promise<{ chat: ChannelId; forum: ChannelId; ops: Written[] }> {
    const [creator] = this.people.keys();
    if (creator === undefined) throw new Error('empty world');
    const chat = newId<ChannelId>();
    const forum = newId<ChannelId>();
    const ops = [
      await this.write(creator, 'CreateSpace', { name: 'Test Space', description: '' }, 0),
      await this.write(creator, 'CreateChannel', { channel: chat, name: 'general', type: 'chat', topic: '' }),
      await this.write(creator, 'CreateChannel', { channel: forum, name: 'ideas', type: 'forum', topic: '' }),
    ];
    for (const n of this.replicas.keys()) if (n !== creator) await this.deliver(n, ...ops);
    return { chat, forum, ops };
  }

  post(
    name: string,
    channel: ChannelId,
    text: string,
    extra: Partial<Drafts['CreatePost']> = {},
    epoch: EpochRef | number = 1,
  ) {
    const body = postBody(channel, text, extra);
    return this.write(name, 'CreatePost', body, epoch).then((w) => ({ ...w, post: body.post }));
  }

  thread(name: string, channel: ChannelId, title: string, epoch: EpochRef | number = 1) {
    const thread = newId<ThreadId>();
    return this.write(name, 'CreateThread', { thread, channel, title, root: null }, epoch).then((w) => ({
      ...w,
      thread,
    }));
  }
}
