/**
 * bench:relay's fresh peer, run as its own process the way a Node host runs Conclave (one
 * esbuild bundle, like the CLI): it connects to one relay, follows a Space's mailbox from the
 * start and takes every op through its pipeline (open, verify, accept) into an empty store.
 * Started by `catchUpInChild` with its inputs as one JSON argument; prints one JSON line,
 * `{"sec","connectMs","firstMs","accepted"}`, timed from creating its libp2p node to the last op accepted.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { SpaceReplica } from '../shared/src/core/replica.js';
import { ManualClock, TestGroup } from '../shared/src/core/testkit.js';
import { nodeAead } from '../shared/src/crypto/aead.node.js';
import { nodeEd25519 } from '../shared/src/crypto/ed25519.node.js';
import { nodeSha256 } from '../shared/src/crypto/sha256.node.js';
import { topicId } from '../shared/src/crypto/sha256.js';
import { libp2pConnector } from '../shared/src/net/libp2p.js';
import { loadNodeNoiseCrypto } from '../shared/src/net/noise-crypto.node.js';
import { RelayPool } from '../shared/src/net/pool.js';
import { SpaceSync } from '../shared/src/net/space-sync.js';
import { webRng } from '../shared/src/ports/env.js';
import { memoryStorage } from '../shared/src/ports/storage.memory.js';
import type { SpaceId, UserId } from '../shared/src/protocol/ids.js';
import { fromHex, toHex } from '../shared/src/protocol/ids.js';
import { NODE_HOST_FLAGS } from '../scripts/node-host-flags.mjs';

/** What the fresh peer is told: the relay, the Space, its epochs' members, and how many ops. */
export interface CatchUpInput {
  readonly relay: string;
  readonly space: string;
  /** Members of each epoch, by epoch number (as `oplog.ts`'s `generate` set them). */
  readonly epochs: readonly { readonly epoch: number; readonly users: readonly string[] }[];
  readonly n: number;
}

export interface CatchUpResult {
  readonly sec: number;
  readonly connectMs: number;
  /** Milliseconds from the start to the first op accepted (connect, subscribe, first page). */
  readonly firstMs: number;
  readonly accepted: number;
}

const HERE = dirname(fileURLToPath(import.meta.url));

/** The input for a Space whose epochs `generate` made from `users` (epoch 0: the first only). */
export function catchUpInput(
  relay: string,
  space: SpaceId,
  users: readonly UserId[],
  n: number,
): CatchUpInput {
  const hex = users.map((u) => toHex(u));
  return {
    relay,
    space: toHex(space),
    epochs: [
      { epoch: 0, users: hex.slice(0, 1) },
      { epoch: 1, users: hex },
    ],
    n,
  };
}

/**
 * Bundles this file with esbuild (as the CLI is bundled) and runs it in a new Node process.
 * Resolves with the child's figures; rejects if it fails or prints none.
 */
export async function catchUpInChild(input: CatchUpInput): Promise<CatchUpResult> {
  const root = join(HERE, '..');
  const out = join(root, '.conclave', 'bench', 'catchup-peer.mjs');
  const { build } = await import('esbuild');
  await build({
    entryPoints: [join(HERE, 'catchup-peer.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['better-sqlite3', '@automerge/automerge', 'esbuild', 'sodium-native'],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    define: { 'process.env.CONCLAVE_CATCHUP_CHILD': '"1"' },
    logLevel: 'warning',
  });
  // BENCH_RELAY_CATCHUP_PROFILE=<dir>: a CPU profile of the fresh peer, for finding where its time goes.
  const profile = process.env.BENCH_RELAY_CATCHUP_PROFILE;
  const args = [
    ...NODE_HOST_FLAGS,
    ...(profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`]),
    '--experimental-websocket',
    '--import',
    join(root, 'scripts/node20.mjs'),
    out,
    JSON.stringify(input),
  ];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    stdout += d;
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const last = stdout.trim().split('\n').at(-1) ?? '';
  if (code !== 0) throw new Error(`the catch-up peer exited with ${String(code)}: ${stdout}`);
  return JSON.parse(last) as CatchUpResult;
}

async function run(input: CatchUpInput): Promise<CatchUpResult> {
  const space = fromHex(input.space) as SpaceId | undefined;
  if (space === undefined) throw new Error('bad space');
  const group = new TestGroup();
  for (const e of input.epochs)
    group.setEpoch(
      e.epoch,
      e.users.map((u) => fromHex(u) as UserId),
    );
  const started = performance.now();
  const connector = await libp2pConnector({ noiseCrypto: loadNodeNoiseCrypto });
  const storage = memoryStorage();
  const pool = new RelayPool({ connector, relays: [input.relay], storage, sha256: nodeSha256 });
  await pool.start();
  const connectMs = performance.now() - started;
  const sync = new SpaceSync({ pool, topic: topicId(space) });
  const replica = await SpaceReplica.open({
    space,
    storage,
    keys: group,
    membership: group,
    ed25519: nodeEd25519(),
    clock: new ManualClock(1_800_000_000_000),
    rng: webRng,
    aead: nodeAead(),
    sha256: nodeSha256,
    fetchMissing: sync.fetchMissing,
  });
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  let firstMs = Number.NaN;
  const poll = setInterval(() => {
    if (Number.isNaN(firstMs) && replica.state.size > 0) firstMs = performance.now() - started;
    if (replica.state.size >= input.n) done();
  }, 2);
  const limit = setTimeout(done, 120_000);
  sync.start(replica);
  await all;
  clearInterval(poll);
  clearTimeout(limit);
  await sync.idle();
  const sec = (performance.now() - started) / 1000;
  const accepted = replica.state.size;
  await sync.stop();
  await pool.close();
  await connector.stop();
  return { sec, connectMs, firstMs, accepted };
}

if (process.env.CONCLAVE_CATCHUP_CHILD === '1') {
  const input = JSON.parse(process.argv[2] ?? '{}') as CatchUpInput;
  const result = await run(input);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
