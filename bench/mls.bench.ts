/**
 * bench:mls — what an MLS group of a Space costs its members as it grows: for 10, 100, 1,000
 * and 5,000 members, the time an existing member takes to process a commit adding one member,
 * removing one, and updating the committer's own path (each the median of five runs from the
 * same state); the time a new member takes to join
 * from the Welcome; and the sizes of that Welcome, of a commit with an update path and of a
 * member's saved state. Each on the tree as one batch add leaves it (no parent has a key:
 * "fresh") and after removes and self-updates by two members ("populated": root and parents
 * have keys, as in any live Space; the measured add then leaves one unmerged leaf).
 *
 * Members carry real Conclave credentials (a user key certifying the device key), checked by
 * the real authentication service.
 *
 * Run: npm run bench:mls
 *   BENCH_MLS_SIZES=10,100      sizes to run (default 10,100,1000,5000)
 *   BENCH_MLS_IMPL=stock        run the untouched ts-mls 1.6.4 (package alias ts-mls-stock)
 *                               instead of the patched one the app uses
 *   BENCH_MLS_FORCE=1           also run steps known to take many minutes on stock
 *   BENCH_MLS_PROFILE=dir       write a CPU profile of each measured step at the largest size
 * Last line: {"results": [{members, populated, processAddMs, processRemoveMs, processUpdateMs,
 *   joinMs, welcomeBytes, commitBytes, stateBytes[, error]}]}; a step that failed or was
 *   skipped is null and `error` says why.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import inspector from 'node:inspector';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ClientState } from 'ts-mls';
import {
  type Kit,
  type Member,
  addOf,
  batchGroup,
  commit,
  epochSecrets,
  join,
  kit,
  leafOf,
  loadMls,
  member,
  members,
  processCommit,
  removeOf,
} from '../shared/src/mls/scale.testkit.js';
import type { PageInput, PageResult } from './mls.page.js';
import { CHROMIUM, launchChromium } from '../scripts/chromium.js';

const impl = process.env.BENCH_MLS_IMPL === 'stock' ? 'stock' : 'patched';
const sizes = (process.env.BENCH_MLS_SIZES ?? '10,100,1000,5000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n >= 4);
const force = process.env.BENCH_MLS_FORCE === '1';
const CHUNK = 500;
const profileDir = process.env.BENCH_MLS_PROFILE;
const gc = (globalThis as { gc?: () => void }).gc;

interface Row {
  members: number;
  populated: boolean;
  processAddMs: number | null;
  processRemoveMs: number | null;
  processUpdateMs: number | null;
  joinMs: number | null;
  welcomeBytes: number | null;
  commitBytes: number | null;
  stateBytes: number | null;
  error?: string;
}

const session = profileDir === undefined ? undefined : new inspector.Session();
function post(method: string, params?: object): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (session === undefined) {
      resolve(undefined);
      return;
    }
    session.post(method, params, (err, res) => {
      if (err !== null) reject(err);
      else resolve(res);
    });
  });
}

async function timed<T>(label: string, profileAs: string | undefined, f: () => Promise<T>) {
  gc?.();
  if (profileAs !== undefined) await post('Profiler.start');
  const t0 = performance.now();
  const value = await f();
  const ms = performance.now() - t0;
  if (profileAs !== undefined && profileDir !== undefined) {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    writeFileSync(`${profileDir}/${profileAs}.cpuprofile`, JSON.stringify(profile));
  }
  console.log(`  ${label}: ${ms.toFixed(1)} ms`);
  return { value, ms };
}

/** Runs of each commit's processing; the figure is their median (one run is noise-prone). */
const COMMIT_RUNS = 5;

/**
 * Processes the same commit from the same base state {@link COMMIT_RUNS} times (states are
 * values) and reports the median, with the fastest and slowest run in the log.
 */
async function timedCommit(label: string, profileAs: string | undefined, f: () => Promise<unknown>) {
  const runs: number[] = [];
  for (let i = 0; i < COMMIT_RUNS; i++) {
    gc?.();
    if (i === 0 && profileAs !== undefined) await post('Profiler.start');
    const t0 = performance.now();
    await f();
    runs.push(performance.now() - t0);
    if (i === 0 && profileAs !== undefined && profileDir !== undefined) {
      const { profile } = (await post('Profiler.stop')) as { profile: unknown };
      writeFileSync(`${profileDir}/${profileAs}.cpuprofile`, JSON.stringify(profile));
    }
  }
  const sorted = [...runs].sort((a, b) => a - b);
  const ms = sorted[Math.floor(sorted.length / 2)] as number;
  console.log(
    `  ${label}: ${ms.toFixed(1)} ms median of ${COMMIT_RUNS} (${(sorted[0] as number).toFixed(1)}–${(sorted.at(-1) as number).toFixed(1)})`,
  );
  return { ms };
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** A row with no figures yet (each is filled in as its step succeeds). */
function emptyRow(n: number, populated: boolean): Row {
  return {
    members: n,
    populated,
    processAddMs: null,
    processRemoveMs: null,
    processUpdateMs: null,
    joinMs: null,
    welcomeBytes: null,
    commitBytes: null,
    stateBytes: null,
  };
}

/**
 * Everything measured from one pair of states at the same epoch: the committer's and an
 * existing member's. States are values, so each commit starts from the same base.
 */
async function measure(
  k: Kit,
  n: number,
  populated: boolean,
  committer: ClientState,
  receiver: ClientState,
  profileAs: string | undefined,
): Promise<Row> {
  const tag = populated ? 'populated' : 'fresh';
  const row = emptyRow(n, populated);
  const errors: string[] = [];
  const step = async (name: string, f: () => Promise<void>) => {
    try {
      await f();
    } catch (e) {
      errors.push(`${name}: ${describe(e)}`);
      console.log(`  ${name} FAILED: ${describe(e)}`);
    }
  };
  const p = (s: string) => (profileAs === undefined ? undefined : `${profileAs}-${tag}-${s}`);
  console.log(`${n} members, ${tag} tree (${impl} ts-mls)`);

  const newcomer = await member(k);
  const add = await commit(k, committer, [addOf(newcomer)]);
  await step('process add', async () => {
    row.processAddMs = (
      await timedCommit('process add-one commit', p('add'), () => processCommit(k, receiver, add.commit))
    ).ms;
  });
  const welcome = add.welcome;
  if (welcome !== undefined) {
    row.welcomeBytes = welcome.length;
    console.log(`  Welcome for one member: ${welcome.length} bytes; add commit ${add.commit.length} bytes`);
    if (impl === 'stock' && populated && n > 2000 && !force) {
      errors.push('join: skipped on stock past 2,000 members (O(N²) parent-hash check: ~55 min at 5,000)');
      console.log('  join: skipped on stock (set BENCH_MLS_FORCE=1 to wait for it)');
    } else {
      await step('join', async () => {
        row.joinMs = (await timed('join from the Welcome', p('join'), () => join(k, welcome, newcomer))).ms;
      });
    }
  }

  const removed =
    receiver.ratchetTree.findIndex(
      (node, i) => node?.nodeType === 'leaf' && i / 2 !== leafOf(receiver) && i / 2 !== leafOf(committer),
    ) / 2;
  const remove = await commit(k, committer, [removeOf(removed)]);
  await step('process remove', async () => {
    row.processRemoveMs = (
      await timedCommit('process remove commit', p('remove'), () => processCommit(k, receiver, remove.commit))
    ).ms;
  });

  const update = await commit(k, committer, []);
  row.commitBytes = update.commit.length;
  console.log(
    `  self-update commit: ${update.commit.length} bytes; remove commit ${remove.commit.length} bytes`,
  );
  await step('process update', async () => {
    row.processUpdateMs = (
      await timedCommit('process self-update commit', p('update'), () =>
        processCommit(k, receiver, update.commit),
      )
    ).ms;
  });

  await step('state encode', async () => {
    const { value: bytes } = await timed('encode state', undefined, () =>
      Promise.resolve(k.mls.encodeGroupState(receiver)),
    );
    row.stateBytes = bytes.length;
    console.log(`  saved state: ${bytes.length} bytes`);
    await timed('decode state', undefined, () => Promise.resolve(k.mls.decodeGroupState(bytes, 0)));
  });
  if (errors.length > 0) row.error = errors.join('; ');
  return row;
}

async function runSize(k: Kit, n: number, profileAs: string | undefined): Promise<Row[]> {
  const t0 = performance.now();
  const creatorM = await member(k);
  const others = await members(k, n - 1);
  console.log(`${n}: ${n} identities and key packages in ${(performance.now() - t0).toFixed(0)} ms`);
  const built = await timed(
    `${n}: creator adds ${n - 1} members in add-only commits of up to ${CHUNK}`,
    undefined,
    () => batchGroup(k, creatorM, others, CHUNK),
  );
  // The receiver is in the last chunk (the Welcome is for it), in the right half of the tree,
  // away from the committer's path.
  const receiverM = others[Math.max(0, others.length - Math.min(CHUNK, others.length) + 1)] as Member;
  const joined = await timed(`${n}: one member joins from the batch Welcome`, undefined, () =>
    join(k, built.value.welcome, receiverM),
  );
  let creator = built.value.creator;
  let receiver = joined.value;
  const rows = [await measure(k, n, false, creator, receiver, profileAs)];

  // Populate: the creator removes two members (its path gets keys), the receiver updates its
  // own path, and the creator updates again. The add measured next then leaves one unmerged
  // leaf. (With two adds at different places, stock ts-mls 1.6.4 refuses every join: its
  // unmerged-leaves check is wrong; our patch 004 fixes it. patches.test.ts shows both.)
  const t1 = performance.now();
  const r1 = await commit(k, creator, [removeOf(3), removeOf(n - 2)]);
  creator = r1.state;
  receiver = await processCommit(k, receiver, r1.commit);
  const r2 = await commit(k, receiver, []);
  receiver = r2.state;
  creator = await processCommit(k, creator, r2.commit);
  const r3 = await commit(k, creator, []);
  creator = r3.state;
  receiver = await processCommit(k, receiver, r3.commit);
  console.log(`${n}: populated the tree in ${(performance.now() - t1).toFixed(0)} ms`);
  rows.push(await measure(k, n, true, creator, receiver, profileAs));
  if (n === Math.max(...sizes)) await inChromium(k, creator);
  return rows;
}

/**
 * The join and one commit in a Chromium page (patched ts-mls bundled by esbuild, the page's
 * WebCrypto): a member is added to the populated group and joins there, then processes the
 * creator's self-update. Printed only (the JSON line keeps the Node figures).
 */
async function inChromium(k: Kit, committer: ClientState): Promise<void> {
  if (process.env.BENCH_MLS_BROWSER === '0' || impl === 'stock') return;
  if (!existsSync(CHROMIUM)) {
    console.log(`  Chromium: skipped (no ${CHROMIUM})`);
    return;
  }
  try {
    await chromiumJoin(k, committer);
  } catch (e) {
    console.log(`  Chromium FAILED: ${describe(e)}`);
  }
}

async function chromiumJoin(k: Kit, committer: ClientState): Promise<void> {
  const newcomer = await member(k);
  const add = await commit(k, committer, [addOf(newcomer)]);
  const update = await commit(k, add.state, []);
  if (add.welcome === undefined) throw new Error('no Welcome');
  const { build } = await import('esbuild');
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('./mls.page.ts', import.meta.url))],
    bundle: true,
    format: 'iife',
    globalName: 'mlsBench',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'error',
    // ts-mls's optional providers for other ciphersuites, never loaded for ours.
    external: [
      '@noble/curves/*',
      '@noble/post-quantum/*',
      '@hpke/chacha20poly1305',
      '@hpke/dhkem-x448',
      '@hpke/ml-kem',
      '@hpke/hybridkem-x-wing',
    ],
  });
  const js = bundle.outputFiles[0]?.text ?? '';
  const server = http.createServer((req, res) => {
    const isJs = req.url === '/bundle.js';
    res.setHeader('content-type', isJs ? 'text/javascript' : 'text/html');
    res.end(isJs ? js : '<!doctype html><title>bench:mls</title><script src="/bundle.js"></script>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64');
    const input: PageInput = {
      welcome: b64(add.welcome),
      keyPackage: b64(
        k.mls.encodeMlsMessage({
          keyPackage: newcomer.publicPackage,
          wireformat: 'mls_key_package',
          version: 'mls10',
        }),
      ),
      initPrivateKey: b64(newcomer.privatePackage.initPrivateKey),
      hpkePrivateKey: b64(newcomer.privatePackage.hpkePrivateKey),
      signaturePrivateKey: b64(newcomer.privatePackage.signaturePrivateKey),
      commit: b64(update.commit),
    };
    const r = await page.evaluate(
      (i: PageInput) =>
        (globalThis as unknown as { mlsBench: { run: (i: PageInput) => Promise<PageResult> } }).mlsBench.run(
          i,
        ),
      input,
    );
    const same = JSON.stringify(r.secrets) === JSON.stringify(epochSecrets(update.state));
    console.log(
      `  Chromium ${r.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? r.userAgent}: join ${r.joinMs.toFixed(0)} ms, ` +
        `process self-update ${r.processMs.toFixed(0)} ms, epoch secrets ${same ? 'match' : 'DIFFER'} the committer's`,
    );
  } finally {
    await browser.close();
    server.close();
  }
}

async function main(): Promise<void> {
  if (gc === undefined) throw new Error('run with node --expose-gc');
  console.log(
    `bench:mls — ts-mls ${impl}, ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, Node ${process.version}`,
  );
  // Patched runs use the ciphersuite Conclave runs (synchronous hashes); stock runs ts-mls's own.
  const k = await kit(await loadMls(impl), { syncHashes: impl === 'patched' });
  if (profileDir !== undefined) {
    mkdirSync(profileDir, { recursive: true });
    session?.connect();
    await post('Profiler.enable');
  }
  const largest = Math.max(...sizes);
  const results: Row[] = [];
  for (const n of sizes) {
    try {
      results.push(...(await runSize(k, n, profileDir !== undefined && n === largest ? `n${n}` : undefined)));
    } catch (e) {
      console.log(`${n}: FAILED ${describe(e)}`);
      for (const populated of [false, true]) {
        results.push({ ...emptyRow(n, populated), error: `building the group: ${describe(e)}` });
      }
    }
  }
  const round = (x: number | null) => (x === null ? null : Math.round(x * 10) / 10);
  const out = results.map((r) => ({
    ...r,
    processAddMs: round(r.processAddMs),
    processRemoveMs: round(r.processRemoveMs),
    processUpdateMs: round(r.processUpdateMs),
    joinMs: round(r.joinMs),
  }));
  console.log(JSON.stringify({ results: out }));
}

await main();
