/**
 * bench:core — the whole acceptance pipeline (open + verify + accept + reduce + persist to the
 * in-memory store) for 10,000 and 100,000 ops from 50 authors, against the raw rate of the
 * signature verification it uses, measured in the same run.
 *
 * Run: npm run bench:core   (node --expose-gc, so heap figures are after a full collection, and
 * the V8 flags the `conclave` command runs the pipeline with: scripts/node-host-flags.mjs)
 * Finding where the time goes: BENCH_CORE_SMALL=1 (10k only), BENCH_CORE_SKIP_WEB=1 (no
 * browser-crypto run), BENCH_CORE_PROFILE=<file> (CPU profile of the pipeline),
 * BENCH_CORE_HEAPPROF=<file> (sampled allocations, Node host run), BENCH_CORE_THREADS=1 (CPU µs
 * per op of each thread, Linux), BENCH_CORE_RAW_CPU=1 (CPU µs per signature of the raw
 * verification), BENCH_CORE_IN_FLIGHT=<n> (ops and signatures in flight; by default the peer's
 * ACCEPT_WINDOW, 256, as many as a Space's sync keeps in its pipeline).
 * The Node host's runs follow a warm-up of BENCH_CORE_WARM_UP_BURSTS (4) bursts of
 * BENCH_CORE_WARM_UP ops (5,000), each in a Space of its own.
 * Last line: {"opsPerSec10k","opsPerSec100k","rawVerifyPerSec","heapBytesPerOp",…}
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { webCryptoEd25519 } from '../shared/src/crypto/ed25519-webcrypto.js';
import { nodeEd25519 } from '../shared/src/crypto/ed25519.node.js';
import { memoryStorage } from '../shared/src/ports/storage.memory.js';
import { webCryptoAead } from '../shared/src/ports/aead.js';
import { nodeAead } from '../shared/src/crypto/aead.node.js';
import { nodeSha256 } from '../shared/src/crypto/sha256.node.js';
import { webRng } from '../shared/src/ports/env.js';
import { type DeviceIdentity, createIdentity } from '../shared/src/protocol/identity.js';
import { type AcceptOutcome, SpaceReplica } from '../shared/src/core/replica.js';
import { ManualClock, TestGroup } from '../shared/src/core/testkit.js';
import { ACCEPT_WINDOW } from '../shared/src/net/space-sync.js';
import { AUTHORS, type Generated, generate } from './oplog.js';
/**
 * Ops in the pipeline at once, and signatures in the raw measurement: as many as a peer's
 * `SpaceSync` keeps in flight. With 100, the ops verified ahead of one still in a verifier
 * thread's batch can fill the window while they wait for their turn in steps 4–7 (which take
 * ops in call order), leaving a thread without work; the machine had more idle CPU: 41–59 of
 * ~360 CPU ticks idle per 10k run against 16–24 with 256 (four alternated pairs, `/proc/stat`).
 */
const IN_FLIGHT = Number(process.env.BENCH_CORE_IN_FLIGHT ?? ACCEPT_WINDOW);
/** Ops run through the Node host's pipeline before the measured runs (see main). */
const WARM_UP_OPS = Number(process.env.BENCH_CORE_WARM_UP ?? 5_000);
/** How many such bursts, each into a Space of its own (see main). */
const WARM_UP_BURSTS = Number(process.env.BENCH_CORE_WARM_UP_BURSTS ?? 4);
/** Identities are made with WebCrypto (as in a browser); each host verifies with its own. */
const ed = webCryptoEd25519();
/**
 * The Node host's verifier, as the CLI has it (cli/src/home.ts): Node's `crypto.verify` in
 * batches on verifier threads (shared/src/crypto/ed25519.node.ts); WebCrypto with
 * BENCH_CORE_ED=webcrypto. The raw rate is measured with the same
 * one, as many in flight. The browser worker's pipeline (WebCrypto throughout) is measured too,
 * against WebCrypto's own raw rate.
 */
const nodeEd = process.env.BENCH_CORE_ED === 'webcrypto' ? ed : nodeEd25519();
const gc = (globalThis as { gc?: () => void }).gc;

function collect(): void {
  if (gc === undefined) throw new Error('run with node --expose-gc');
  gc();
  gc();
}

/**
 * Runs `f` over `items` with `width` calls in flight, as a network feed offers ops: each call
 * answered starts the next. Plain callbacks, so the harness adds little to what is measured.
 */
function pool<T>(items: readonly T[], width: number, f: (x: T) => Promise<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0;
    let running = 0;
    const launch = (): void => {
      while (running < width && next < items.length) {
        const x = items[next++] as T;
        running++;
        f(x).then(done, reject);
      }
      if (running === 0) resolve();
    };
    const done = (): void => {
      running--;
      launch();
    };
    launch();
  });
}

/** Profiles the pipeline alone when BENCH_CORE_PROFILE names a file (for finding hot spots). */
function post(session: inspector.Session, method: string, params?: object): Promise<unknown> {
  return new Promise((resolve, reject) => {
    session.post(method, params, (err, res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}

/**
 * CPU time of this process's main thread in µs, where Linux shows it (`/proc/thread-self`), else
 * undefined. Unlike the event loop's busy share it does not count time the thread waited for a
 * core, so it says what the pipeline's serial steps cost even on a loaded machine.
 */
function mainThreadCpuUs(): number | undefined {
  const ticks = threadTicks().get(String(process.pid));
  return ticks === undefined || !Number.isFinite(ticks) ? undefined : ticks * 10_000;
}

/** CPU ticks (10 ms) of each thread of this process, by thread id (Linux). */
function threadTicks(): Map<string, number> {
  const m = new Map<string, number>();
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return m; // no /proc (not Linux)
  }
  for (const t of tasks) {
    try {
      const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      m.set(t, Number(f[11]) + Number(f[12]));
    } catch {
      /* gone */
    }
  }
  return m;
}

/**
 * The machine's CPU ticks from `/proc/stat` (Linux): all of them, and those stolen by the
 * hypervisor (time this VM's cores wanted to run and another guest ran instead). Stolen time
 * slows every figure here, and not evenly: the raw rate and the pipeline's are measured seconds
 * apart, so each run prints the share stolen while it ran.
 */
function machineTicks(): { total: number; steal: number } | undefined {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/** The share of the machine's time stolen since `t0`, as a percentage (or `?`). */
function stolenSince(t0: { total: number; steal: number } | undefined): string {
  const t1 = machineTicks();
  if (t0 === undefined || t1 === undefined || t1.total === t0.total) return '?';
  return (((t1.steal - t0.steal) / (t1.total - t0.total)) * 100).toFixed(0);
}

/** The stolen share (see `machineTicks`) during the last raw measurement. */
let lastRawStolen = '?';

async function rawVerify(gen: Generated, count: number, verifier = nodeEd): Promise<number> {
  const sample = gen.signed.slice(0, count);
  const machine0 = machineTicks();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ok = 0;
  const tally = (valid: boolean): void => {
    if (valid) ok++;
  };
  await pool(sample, IN_FLIGHT, (s) => verifier.verify(s.author, s.msg, s.sig).then(tally));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (process.env.BENCH_CORE_RAW_CPU === '1') {
    console.log(`raw verify: CPU ${((cpu.user + cpu.system) / sample.length).toFixed(0)} µs per signature`);
  }
  if (ok !== sample.length) throw new Error('raw verify failed');
  lastRawStolen = stolenSince(machine0);
  return (sample.length / ms) * 1000;
}

/**
 * `web`: the crypto a browser worker has (WebCrypto AES-GCM, pure-JS SHA-256).
 * `node`: a Node host's (native AES-GCM and SHA-256; Node's own Ed25519 with BENCH_CORE_ED=node).
 * `rawBefore`: how many of the log's signatures to verify raw just before the run (0: none), so
 * the caller can bracket the run with a raw measurement before and one after it.
 */
async function runPipeline(n: number, people: DeviceIdentity[], host: 'web' | 'node', rawBefore = 0) {
  const group = new TestGroup();
  const gen = await generate(n, people, group);
  const rawBeforePerSec = rawBefore > 0 ? await rawVerify(gen, rawBefore) : 0;
  const rawBeforeStolen = lastRawStolen;
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
  const heapProfile = process.env.BENCH_CORE_HEAPPROF;
  const hs = heapProfile === undefined || host !== 'node' ? undefined : new inspector.Session();
  if (hs !== undefined) {
    hs.connect();
    await post(hs, 'HeapProfiler.startSampling', {
      samplingInterval: 2048,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuUs();
  const tt0 = threadTicks();
  const machine0 = machineTicks();
  const t0 = performance.now();
  const tally = (o: AcceptOutcome): void => {
    if (o.kind !== 'accepted')
      counts.set(o.kind === 'rejected' ? `rejected:${o.reason}` : o.kind, (counts.get(o.kind) ?? 0) + 1);
  };
  await pool(gen.sealed, IN_FLIGHT, (s) => replica.accept(s).then(tally));
  const ms = performance.now() - t0;
  const stolen = stolenSince(machine0);
  // How busy the pipeline's own thread was, and the process's CPU per op (all threads).
  const mainBusy = performance.eventLoopUtilization(elu0).utilization;
  const cpu = process.cpuUsage(cpu0);
  const cpuUsPerOp = (cpu.user + cpu.system) / n;
  const main1 = mainThreadCpuUs();
  if (process.env.BENCH_CORE_THREADS === '1') {
    const tt1 = threadTicks();
    console.log(
      [...tt1].map(([t, v]) => `${t}:${(((v - (tt0.get(t) ?? 0)) * 10_000) / n).toFixed(0)}`).join(' '),
    );
  }
  const mainCpuUsPerOp = main0 === undefined || main1 === undefined ? undefined : (main1 - main0) / n;
  if (hs !== undefined && heapProfile !== undefined) {
    const r = (await post(hs, 'HeapProfiler.stopSampling')) as { profile: unknown };
    writeFileSync(heapProfile, JSON.stringify(r.profile));
    hs.disconnect();
  }
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
    replica,
    opsPerSec: (n / ms) * 1000,
    ms,
    mainBusy,
    cpuUsPerOp,
    mainCpuUsPerOp,
    heapPerOp,
    bufPerOp,
    sealedPerOp: gen.sealedBytes / n,
    outcomes: counts,
    stolen,
    rawBeforePerSec,
    rawBeforeStolen,
  };
}

/** One measured run's line: the pipeline, the raw rates around it, and the stolen shares. */
function report(
  label: string,
  r: Awaited<ReturnType<typeof runPipeline>>,
  rawAfter: number,
  rawAfterStolen: string,
): void {
  console.log(
    `${label} ${r.opsPerSec.toFixed(0)} ops/s (${r.ms.toFixed(0)} ms), heap ${r.heapPerOp.toFixed(0)} B/op, ` +
      `buffers ${r.bufPerOp.toFixed(0)} B/op, sealed ${r.sealedPerOp.toFixed(0)} B/op; ` +
      `raw verify before ${r.rawBeforePerSec.toFixed(0)}/s, after ${rawAfter.toFixed(0)}/s; ` +
      `main thread busy ${(r.mainBusy * 100).toFixed(0)} %, CPU ${r.cpuUsPerOp.toFixed(0)} µs/op ` +
      `on ${((r.cpuUsPerOp * r.opsPerSec) / 1e6).toFixed(2)} cores ` +
      `(main thread ${r.mainCpuUsPerOp?.toFixed(0) ?? '?'}); ` +
      `stolen by the hypervisor: ${r.rawBeforeStolen} % / ${r.stolen} % / ${rawAfterStolen} % ` +
      `(raw before / run / raw after)`,
  );
}

async function main(): Promise<void> {
  console.log(
    `bench:core on ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, node ${process.version}; ` +
      `Node host's verifier ${process.env.BENCH_CORE_ED === 'webcrypto' ? 'WebCrypto' : 'verifier threads (Node crypto.verify, batched)'}, ${IN_FLIGHT} in flight; bundled by esbuild`,
  );
  const people: DeviceIdentity[] = [];
  for (let i = 0; i < AUTHORS; i++) people.push((await createIdentity(ed, 1_700_000_000_000)).identity);

  const viaWebCrypto =
    process.env.BENCH_CORE_SKIP_WEB === '1' ? undefined : await runPipeline(10_000, people, 'web');
  const rawWeb = viaWebCrypto === undefined ? 0 : await rawVerify(viaWebCrypto.gen, 10_000, ed);
  if (viaWebCrypto !== undefined)
    console.log(
      `10k ops with a browser worker's crypto (WebCrypto Ed25519 and AES-GCM, JS SHA-256): ` +
        `${viaWebCrypto.opsPerSec.toFixed(0)} ops/s; raw WebCrypto verify ${rawWeb.toFixed(0)}/s ` +
        `(${((viaWebCrypto.opsPerSec / rawWeb) * 100).toFixed(0)}%)`,
    );
  // Warm-up: a Node host that has run a while has its verifier threads started and the pipeline's
  // code compiled by the JIT. Without this the 10k figure would also time those one-off costs
  // (the threads' start and about 0.5 s of compiling on V8's background threads, sharing the 2
  // cores with the pipeline). The warm-up is WARM_UP_BURSTS bursts of WARM_UP_OPS ops, each into
  // a Space of its own with a full collection after it, as the measured runs have: V8 settles its
  // compiled code over several such bursts, not one (`--trace-opt`, background compile time per
  // burst: 643, 514, 228 and 66 ms, then 94 ms in the measured 10k run; with one burst before it,
  // the 10k run compiled for 450–550 ms). The first burst's rate (cold) is printed and kept in the
  // JSON line. The warm-up Spaces stay open until the end, as a host keeps each joined Space open.
  const warm: Awaited<ReturnType<typeof runPipeline>>[] = [];
  for (let i = 0; i < WARM_UP_BURSTS; i++) warm.push(await runPipeline(WARM_UP_OPS, people, 'node'));
  const cold = warm[0];
  console.log(
    `warm-up, ${WARM_UP_BURSTS} × ${WARM_UP_OPS} ops into Spaces of their own: ` +
      warm.map((w) => w.opsPerSec.toFixed(0)).join(', ') +
      ' ops/s',
  );
  // The raw rate is measured just before and just after each measured run, on the same
  // signatures, and the run is compared with the mean of the two: on this shared VM the
  // machine's speed drifts by 20 % and more within a minute (stolen time, see `machineTicks`),
  // and one raw measurement taken after the run alone could land in a faster or a slower moment
  // than the run itself.
  const small = await runPipeline(10_000, people, 'node', 10_000);
  const raw10After = await rawVerify(small.gen, 10_000);
  const raw10 = (small.rawBeforePerSec + raw10After) / 2;
  report('10k ops: ', small, raw10After, lastRawStolen);
  if (process.env.BENCH_CORE_SMALL === '1') return;
  const big = await runPipeline(100_000, people, 'node', 20_000);
  const raw100After = await rawVerify(big.gen, 20_000);
  const raw100 = (big.rawBeforePerSec + raw100After) / 2;
  report('100k ops:', big, raw100After, lastRawStolen);
  const rawVerifyPerSec = Math.max(raw10, raw100);
  if (warm.some((w) => w.replica.currentHeads().length === 0)) throw new Error('no heads');
  // One raw rate for both sizes: the higher of the two means.
  console.log(
    `raw verify (mean of before and after): 10k run ${raw10.toFixed(0)}/s, 100k run ${raw100.toFixed(0)}/s; ` +
      `the higher is the raw rate\n` +
      `pipeline / raw verify: 10k ${((small.opsPerSec / rawVerifyPerSec) * 100).toFixed(0)}%, ` +
      `100k ${((big.opsPerSec / rawVerifyPerSec) * 100).toFixed(0)}% (target >= 60%); heap target <= 1024 B/op`,
  );
  console.log(
    JSON.stringify({
      opsPerSec10k: Math.round(small.opsPerSec),
      opsPerSec100k: Math.round(big.opsPerSec),
      rawVerifyPerSec: Math.round(rawVerifyPerSec),
      heapBytesPerOp: Math.round(big.heapPerOp),
      opsPerSecWarmUpCold: Math.round(cold?.opsPerSec ?? 0),
      opsPerSec10kWebCrypto: Math.round(viaWebCrypto?.opsPerSec ?? 0),
      rawWebCryptoVerifyPerSec: Math.round(rawWeb),
      rawVerifyPerSecEach: [small.rawBeforePerSec, raw10After, big.rawBeforePerSec, raw100After].map(
        Math.round,
      ),
    }),
  );
}

await main();
