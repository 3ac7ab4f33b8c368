/**
 * A realistic op log for benchmarks: 50 authors chatting, posting in a forum, editing,
 * deleting, a moderator muting now and then; every op signed and sealed as a peer would.
 */
import { sha256, topicId } from '../shared/src/crypto/sha256.js';
import { webCryptoEd25519 } from '../shared/src/crypto/ed25519-webcrypto.js';
import { webRng } from '../shared/src/ports/env.js';
import { type DeviceIdentity, createIdentity } from '../shared/src/protocol/identity.js';
import {
  type ChannelId,
  type ContentKind,
  type Drafts,
  type OpId,
  type OpKind,
  type PostId,
  type ThreadId,
  type UnsignedOp,
  OP_VERSION,
  canonicalDeps,
  contentAd,
  encodeContent,
  encodeOp,
  encodeUnsigned,
  importEpochKey,
  isContentKind,
  seal,
  sealContent,
  splitDraft,
} from '../shared/src/protocol/index.js';
import { webCryptoAead } from '../shared/src/ports/aead.js';

const aead = webCryptoAead();
import { type TestGroup, testSpaceId } from '../shared/src/core/testkit.js';

export const AUTHORS = 50;

/** The authors of a generated log (identities made with WebCrypto, as in a browser). */
export async function makeAuthors(n = AUTHORS): Promise<DeviceIdentity[]> {
  const ed = webCryptoEd25519();
  const people: DeviceIdentity[] = [];
  for (let i = 0; i < n; i++) people.push((await createIdentity(ed, 1_700_000_000_000)).identity);
  return people;
}

export interface Generated {
  readonly sealed: Uint8Array[];
  readonly signed: { author: Uint8Array; msg: Uint8Array; sig: Uint8Array }[];
  sealedBytes: number;
}

/**
 * A realistic log: mostly chat posts (a third of them replies to recent posts), forum threads
 * and posts, edits and deletes of one's own recent posts, and now and then a moderator's mute
 * and unmute. Each op depends on the latest op its author has seen, sometimes on two
 * (concurrent branches merging), like a live Space.
 */
export async function generate(
  n: number,
  people: DeviceIdentity[],
  group: TestGroup,
  space = testSpaceId(9),
) {
  const topic = topicId(space);
  const e0 = group.setEpoch(0, [(people[0] as DeviceIdentity).user]);
  const e1 = group.setEpoch(
    1,
    people.map((p) => p.user),
  );
  const keys = new Map<number, CryptoKey>();
  for (const e of [e0, e1])
    keys.set(e.epoch, await importEpochKey((await group.epochKey(space, e)) as Uint8Array));
  let wall = 1_764_000_000_000;
  const out: Generated = { sealed: [], signed: [], sealedBytes: 0 };
  const ids: OpId[] = [];
  const id16 = <T extends Uint8Array>() => webRng.randomBytes(16) as T;
  const chat = id16<ChannelId>();
  const forum = id16<ChannelId>();
  const threads: ThreadId[] = [];
  const postsBy = new Map<number, PostId[]>();
  const recentPosts: PostId[] = [];
  let counter = 0;

  const make = async <K extends OpKind>(who: number, kind: K, body: Drafts[K]) => {
    const author = people[who] as DeviceIdentity;
    const epoch = kind === 'CreateSpace' ? e0 : e1;
    wall += 1 + (counter % 3 === 0 ? 1 : 0);
    const last = ids[ids.length - 1];
    const prev = ids[ids.length - 2];
    const deps =
      kind === 'CreateSpace' || last === undefined
        ? []
        : counter % 5 === 0 && prev !== undefined
          ? [last, prev]
          : [last];
    counter++;
    // The readable part of a post, thread or edit sealed under the epoch's content key.
    const split = splitDraft(kind, body);
    let wire = split.body;
    if (split.content !== undefined && isContentKind(kind)) {
      const sealedContent = await sealContent(
        aead,
        (await group.contentKey(space, epoch)) as Uint8Array,
        contentAd(space, epoch, kind, author.device),
        encodeContent<ContentKind>(kind, split.content),
        webRng.randomBytes(12),
      );
      wire = { ...wire, content: sealedContent };
    }
    const unsigned = {
      v: OP_VERSION,
      space,
      kind,
      body: wire,
      deps: canonicalDeps(deps),
      epoch,
      hlc: { wallMs: wall, counter: 0 },
      author: author.device,
      cert: author.cert,
    } as UnsignedOp;
    const msg = encodeUnsigned(unsigned);
    const sig = await author.deviceKey.sign(msg);
    const bytes = encodeOp({ ...unsigned, sig });
    const sealed = await seal(
      bytes,
      topic,
      epoch,
      keys.get(epoch.epoch) as CryptoKey,
      webRng.randomBytes(12),
    );
    ids.push(sha256(sealed) as OpId);
    out.sealed.push(sealed);
    out.signed.push({ author: author.device, msg, sig });
    out.sealedBytes += sealed.length;
  };

  await make(0, 'CreateSpace', { name: 'Bench Space', description: 'fifty people talking' });
  await make(0, 'CreateChannel', { channel: chat, name: 'general', type: 'chat', topic: '' });
  await make(0, 'CreateChannel', { channel: forum, name: 'ideas', type: 'forum', topic: '' });
  await make(0, 'AssignRole', { user: (people[1] as DeviceIdentity).user, role: 'moderator' });
  const texts = [
    'ok',
    'sounds good to me, see you there',
    'Has anyone tried the new build? The sync felt a lot faster on my phone this morning.',
    'I pushed the notes from yesterday to the wiki thread; please add what I missed about the relay setup and the invite flow.',
  ];
  let muted = -1;
  for (let i = 0; out.sealed.length < n; i++) {
    const who = 2 + ((i * 7919) % (AUTHORS - 2));
    const r = (i * 2654435761) % 1000;
    const own = postsBy.get(who) ?? [];
    if (muted >= 0 && r < 5) {
      await make(1, 'Unmute', { user: (people[muted] as DeviceIdentity).user });
      muted = -1;
    } else if (muted < 0 && r < 5) {
      muted = who;
      await make(1, 'Mute', { user: (people[who] as DeviceIdentity).user, untilMs: null, reason: 'bench' });
    } else if (who === muted) {
      continue;
    } else if (r < 20) {
      const t = id16<ThreadId>();
      threads.push(t);
      await make(who, 'CreateThread', { thread: t, channel: forum, title: `Topic ${i}`, root: null });
    } else if (r < 70 && own.length > 0) {
      await make(who, 'EditPost', {
        post: own[own.length - 1] as PostId,
        text: `${texts[i % 4]} (edited)`,
        change: null,
      });
    } else if (r < 85 && own.length > 0) {
      const p = own.pop() as PostId;
      await make(who, 'DeletePost', { post: p, reason: '' });
    } else {
      const inForum = r < 200 && threads.length > 0;
      const post = id16<PostId>();
      const reply =
        !inForum && r % 3 === 0
          ? recentPosts[recentPosts.length - 1 - (r % Math.min(20, recentPosts.length || 1))]
          : undefined;
      await make(who, 'CreatePost', {
        post,
        channel: inForum ? forum : chat,
        thread: inForum
          ? (threads[threads.length - 1 - (r % Math.min(5, threads.length))] as ThreadId)
          : null,
        parent: reply ?? null,
        text: texts[i % 4] as string,
        body: null,
        attachments: [],
        collab: null,
      });
      if (!inForum) recentPosts.push(post);
      if (recentPosts.length > 200) recentPosts.splice(0, 100);
      own.push(post);
      if (own.length > 5) own.shift();
      postsBy.set(who, own);
    }
  }
  return { ...out, space };
}
