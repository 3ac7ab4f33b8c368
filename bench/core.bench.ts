/**
 * bench:core — the whole acceptance pipeline (open + verify + accept + reduce + persist to the
 * in-memory store) for 10,000 and 100,000 ops from 50 authors, against the raw rate of the
 * signature verification it uses, measured in the same run.
 *
 * Run: npm run bench:core   (node --expose-gc, so heap figures are after a full collection)
 * Last line: {"opsPerSec10k","opsPerSec100k","rawVerifyPerSec","heapBytesPerOp"}
 */
import { writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import os from 'node:os';
import { webCryptoEd25519 } from '../shared/src/crypto/ed25519-webcrypto.js';
import { nodeEd25519 } from '../shared/src/crypto/ed25519.node.js';
import { sha256, topicId } from '../shared/src/crypto/sha256.js';
import { memoryStorage } from '../shared/src/ports/storage.memory.js';
import { webCryptoAead } from '../shared/src/ports/aead.js';
import { nodeAead } from '../shared/src/crypto/aead.node.js';
import { nodeSha256 } from '../shared/src/crypto/sha256.node.js';
import { webRng } from '../shared/src/ports/env.js';
import { type DeviceIdentity, createIdentity } from '../shared/src/protocol/identity.js';
import {
  type Bodies,
  type ChannelId,
  type OpId,
  type OpKind,
  type PostId,
  type ThreadId,
  type UnsignedOp,
  OP_VERSION,
  canonicalDeps,
  encodeOp,
  encodeUnsigned,
  importEpochKey,
  seal,
} from '../shared/src/protocol/index.js';
import { SpaceReplica } from '../shared/src/core/replica.js';
import { ManualClock, TestGroup, testSpaceId } from '../shared/src/core/testkit.js';

const AUTHORS = 50;
const IN_FLIGHT = 100;
/** Identities are made with WebCrypto (as in a browser); each host verifies with its own. */
const ed = webCryptoEd25519();
/**
 * The Node host's verifier: WebCrypto (the implementation chosen by bench:ed25519), or Node's
 * `crypto.verify` on the thread pool with BENCH_CORE_ED=node. The raw rate is measured with the
 * same one, 100 in flight.
 */
const nodeEd = process.env.BENCH_CORE_ED === 'node' ? nodeEd25519() : ed;
const gc = (globalThis as { gc?: () => void }).gc;

function collect(): void {
  if (gc === undefined) throw new Error('run with node --expose-gc');
  gc();
  gc();
}

interface Generated {
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
async function generate(n: number, people: DeviceIdentity[], group: TestGroup, space = testSpaceId(9)) {
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

  const make = async <K extends OpKind>(who: number, kind: K, body: Bodies[K]) => {
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
    const unsigned = {
      v: OP_VERSION,
      space,
      kind,
      body,
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

async function pool<T>(items: readonly T[], width: number, f: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const x = items[next++] as T;
      await f(x);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
}

/** Profiles the pipeline alone when BENCH_CORE_PROFILE names a file (for finding hot spots). */
function post(session: inspector.Session, method: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    session.post(method, (err, res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}

async function rawVerify(gen: Generated, count: number): Promise<number> {
  const sample = gen.signed.slice(0, count);
  const t0 = performance.now();
  let ok = 0;
  await pool(sample, IN_FLIGHT, async (s) => {
    if (await nodeEd.verify(s.author, s.msg, s.sig)) ok++;
  });
  const ms = performance.now() - t0;
  if (ok !== sample.length) throw new Error('raw verify failed');
  return (sample.length / ms) * 1000;
}

/**
 * `web`: the crypto a browser worker has (WebCrypto AES-GCM, pure-JS SHA-256).
 * `node`: a Node host's (native AES-GCM and SHA-256; Node's own Ed25519 with BENCH_CORE_ED=node).
 */
async function runPipeline(n: number, people: DeviceIdentity[], host: 'web' | 'node') {
  const group = new TestGroup();
  const gen = await generate(n, people, group);
  collect();
  const before = process.memoryUsage();
  const counts = new Map<string, number>();
  const replica = await SpaceReplica.open({
    space: gen.space,
    storage: memoryStorage(),
    keys: group,
    membership: group,
    ed25519: host === 'node' ? nodeEd : ed,
    clock: new ManualClock(1_800_000_000_000),
    rng: webRng,
    ...(host === 'node' ? { aead: nodeAead(), sha256: nodeSha256 } : { aead: webCryptoAead() }),
    onAccepted: () => counts.set('accepted', (counts.get('accepted') ?? 0) + 1),
  });
  const profile = process.env.BENCH_CORE_PROFILE;
  const session = profile === undefined ? undefined : new inspector.Session();
  if (session !== undefined) {
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.start');
  }
  const t0 = performance.now();
  await pool(gen.sealed, IN_FLIGHT, async (s) => {
    const o = await replica.accept(s);
    if (o.kind !== 'accepted')
      counts.set(o.kind === 'rejected' ? `rejected:${o.reason}` : o.kind, (counts.get(o.kind) ?? 0) + 1);
  });
  const ms = performance.now() - t0;
  if (session !== undefined && profile !== undefined) {
    const { profile: p } = (await post(session, 'Profiler.stop')) as { profile: unknown };
    writeFileSync(profile, JSON.stringify(p));
    session.disconnect();
  }
  collect();
  const after = process.memoryUsage();
  const accepted = replica.state.size;
  if (accepted !== n) throw new Error(`only ${accepted} of ${n} accepted: ${JSON.stringify([...counts])}`);
  const heapPerOp = (after.heapUsed - before.heapUsed) / n;
  const bufPerOp = (after.arrayBuffers - before.arrayBuffers) / n;
  // Keep the replica alive until measured.
  if (replica.currentHeads().length === 0) throw new Error('no heads');
  return {
    gen,
    opsPerSec: (n / ms) * 1000,
    ms,
    heapPerOp,
    bufPerOp,
    sealedPerOp: gen.sealedBytes / n,
    outcomes: counts,
  };
}

async function main(): Promise<void> {
  console.log(
    `bench:core on ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, node ${process.version}; ` +
      `verifier ${process.env.BENCH_CORE_ED === 'node' ? 'Node crypto.verify' : 'WebCrypto'}, ${IN_FLIGHT} in flight`,
  );
  const people: DeviceIdentity[] = [];
  for (let i = 0; i < AUTHORS; i++) people.push((await createIdentity(ed, 1_700_000_000_000)).identity);

  const viaWebCrypto = await runPipeline(10_000, people, 'web');
  console.log(
    `10k ops with a browser worker's crypto (WebCrypto AES-GCM, JS SHA-256): ${viaWebCrypto.opsPerSec.toFixed(0)} ops/s`,
  );
  const small = await runPipeline(10_000, people, 'node');
  const raw10 = await rawVerify(small.gen, 10_000);
  console.log(
    `10k ops:  ${small.opsPerSec.toFixed(0)} ops/s (${small.ms.toFixed(0)} ms), heap ${small.heapPerOp.toFixed(0)} B/op, ` +
      `buffers ${small.bufPerOp.toFixed(0)} B/op, sealed ${small.sealedPerOp.toFixed(0)} B/op; raw verify ${raw10.toFixed(0)}/s`,
  );
  if (process.env.BENCH_CORE_SMALL === '1') return;
  const big = await runPipeline(100_000, people, 'node');
  const raw100 = await rawVerify(big.gen, 20_000);
  console.log(
    `100k ops: ${big.opsPerSec.toFixed(0)} ops/s (${big.ms.toFixed(0)} ms), heap ${big.heapPerOp.toFixed(0)} B/op, ` +
      `buffers ${big.bufPerOp.toFixed(0)} B/op, sealed ${big.sealedPerOp.toFixed(0)} B/op; raw verify ${raw100.toFixed(0)}/s`,
  );
  const rawVerifyPerSec = Math.max(raw10, raw100);
  console.log(
    `pipeline / raw verify: 10k ${((small.opsPerSec / rawVerifyPerSec) * 100).toFixed(0)}%, ` +
      `100k ${((big.opsPerSec / rawVerifyPerSec) * 100).toFixed(0)}% (target >= 60%); heap target <= 1024 B/op`,
  );
  console.log(
    JSON.stringify({
      opsPerSec10k: Math.round(small.opsPerSec),
      opsPerSec100k: Math.round(big.opsPerSec),
      rawVerifyPerSec: Math.round(rawVerifyPerSec),
      heapBytesPerOp: Math.round(big.heapPerOp),
      opsPerSec10kWebCryptoAead: Math.round(viaWebCrypto.opsPerSec),
    }),
  );
}

await main();
