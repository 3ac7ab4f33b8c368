/**
 * Relay load driver (Node): a swarm of simulated peers, all on 127.0.0.1, subscribed to a few
 * topics, publishing 1 KiB messages at a paced rate through a server that runs in a SEPARATE
 * child process (its own event loop; its RSS and CPU read from /proc/<pid>). The driver process
 * holds every client connection, publishes and receives, and measures publish→deliver latency.
 *
 * A server plugs in through `LoadTarget` / `LoadPeer` (see ws-floor.ts and gossipsub-floor.ts).
 *
 * Measurement rules (the same for every target):
 * - Peer i subscribes topic i mod T, so with 200 peers and 10 topics each topic has 20 subscribers.
 * - Message k of a step is published by peer k mod N (round robin: every peer publishes, topics
 *   interleave) on that peer's own topic. The publisher is EXCLUDED: a message is expected at the
 *   other subscribers of its topic (19 with the default load). A copy a target hands back to its
 *   publisher is ignored (counted in `selfDeliveries`), never as a delivery.
 * - Each payload is PAYLOAD_BYTES (1 KiB) and carries a header: step id, message sequence,
 *   publisher index, and the send time (`performance.now()` taken just before `publish` is
 *   called). Publisher and subscribers live in this one process, so there is no clock skew.
 *   Latency = receive time − send time, measured at each receiving subscriber.
 * - Pacing: a 10 ms tick publishes every message due since the step started (catch-up if a tick
 *   is late), so the offered rate is exact over the step; `achievedRate` reports what was really
 *   offered in the measured window and `maxTickLagMs` how late the pacer ran.
 * - The first `warmupMs` of a step are published but not measured. After the last publish the
 *   driver waits up to `drainMs` for outstanding deliveries; anything later counts as lost.
 *   p50/p99 are over the deliveries that arrived; `lossRatio` is 1 − delivered/expected.
 * - A step passes when p99 < p99LimitMs (250), delivered/expected ≥ minDeliveryRatio (99.9%), and
 *   the driver really offered ≥ 97% of the rate (else the driver, not the server, was the limit).
 * - Maximum sustained ops/s = the highest offered rate (published messages per second, each
 *   delivered to ~19 subscribers) of a stepped search that passes, stopping at the first failing
 *   step, with one refinement step between the last pass and the first failure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const TOPIC_BYTES = 32;
export const PAYLOAD_BYTES = 1024;
/** Bytes of the payload header: step id u32, sequence u32, publisher u32, send time f64 (LE). */
export const HEADER_BYTES = 20;

/** One simulated peer's connection to the server under test. */
export interface LoadPeer {
  /**
   * Subscribes to a topic (TOPIC_BYTES bytes). `onMessage` gets the payload (at least its
   * HEADER_BYTES header, all the driver reads) of every message published on that topic by someone
   * else (a copy of one's own publish is tolerated and ignored).
   * Resolves when the subscription is in place as far as the target can tell; the driver then
   * probes every topic end to end before measuring, so a lazy target is still measured correctly.
   */
  subscribe(topic: Uint8Array, onMessage: (payload: Uint8Array) => void): Promise<void>;
  /** Publishes a payload on a topic; resolves when the server accepted it (or it was written to it). */
  publish(topic: Uint8Array, payload: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** A server under test, already running (usually in a child process), that peers connect to. */
export interface LoadTarget {
  readonly name: string;
  /**
   * Connects simulated peer `peerIndex` (0-based; the driver connects 0..N-1 once each). `rank` is
   * the peer's place among its topic's subscribers (0, 1, 2…), so a target with several servers can
   * spread every topic's subscribers over all of them.
   */
  connect(peerIndex: number, rank?: number): Promise<LoadPeer>;
  /** Stops the server (and anything shared by the peers); called after every peer is closed. */
  close(): Promise<void>;
  /** The server process, for RSS and CPU figures from /proc. */
  readonly serverPid?: number;
  /** Every server process of a target with several (CPU and RSS are summed); else `serverPid`. */
  readonly serverPids?: readonly number[];
  /** Optional one-line state of the server (e.g. mesh sizes), printed by the bench entries. */
  describe?(): Promise<string>;
}

export interface SwarmOptions {
  /** Simulated peers (default 200). */
  peers?: number;
  /** Topics (default 10); peer i subscribes topic i mod topics. */
  topics?: number;
  /** Connections opened in parallel while connecting (default 16). */
  connectConcurrency?: number;
  /** Time allowed for every subscriber to receive an end-to-end probe (default 30 s). */
  readyTimeoutMs?: number;
  log?: (line: string) => void;
}

/** Per-step measurement state; deliveries for another step id are stale. */
interface StepState {
  readonly id: number;
  readonly total: number;
  readonly warmupCount: number;
  /** Deliveries per message (measured and warm-up alike). */
  readonly counts: Uint16Array;
  /** Expected deliveries per message (subscribers of the publisher's topic − 1). */
  readonly expectedOf: Uint16Array;
  latencies: Float64Array;
  nLatencies: number;
  deliveredMeasured: number;
  expectedMeasured: number;
  duplicates: number;
}

export interface Swarm {
  readonly target: LoadTarget;
  readonly peers: readonly LoadPeer[];
  readonly topics: readonly Uint8Array[];
  /** Topic index of each peer. */
  readonly topicOfPeer: readonly number[];
  /** Subscriber count of each topic. */
  readonly subscribersPerTopic: readonly number[];
  /** Milliseconds from the first connect until every peer had received a probe. */
  readonly setupMs: number;
  /** @internal mutable receive state */
  readonly state: SwarmState;
}

interface SwarmState {
  step: StepState | null;
  nextStepId: number;
  stale: number;
  selfDeliveries: number;
  malformed: number;
  lastArrival: number;
  readyPeers: Uint8Array;
  readyCount: number;
}

const PROBE_STEP_ID = 0xffffffff;

/** Deterministic topic ids: SHA-256("conclave-bench-topic-<i>"). */
export function benchTopics(count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    out.push(new Uint8Array(createHash('sha256').update(`conclave-bench-topic-${i}`).digest()));
  }
  return out;
}

const FILLER = (() => {
  const b = new Uint8Array(PAYLOAD_BYTES);
  for (let i = 0; i < b.length; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
})();

function makePayload(stepId: number, seq: number, publisher: number): Uint8Array {
  const payload = new Uint8Array(PAYLOAD_BYTES);
  payload.set(FILLER);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  view.setUint32(0, stepId, true);
  view.setUint32(4, seq, true);
  view.setUint32(8, publisher, true);
  view.setFloat64(12, performance.now(), true);
  return payload;
}

function onDelivery(swarm: { state: SwarmState }, receiver: number, payload: Uint8Array): void {
  const state = swarm.state;
  const now = performance.now();
  state.lastArrival = now;
  if (payload.byteLength < HEADER_BYTES) {
    state.malformed++;
    return;
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const stepId = view.getUint32(0, true);
  const seq = view.getUint32(4, true);
  const publisher = view.getUint32(8, true);
  if (publisher === receiver) {
    state.selfDeliveries++;
    return;
  }
  if (stepId === PROBE_STEP_ID) {
    if (state.readyPeers[receiver] === 0) {
      state.readyPeers[receiver] = 1;
      state.readyCount++;
    }
    return;
  }
  const step = state.step;
  if (step?.id !== stepId || seq >= step.total) {
    state.stale++;
    return;
  }
  const count = (step.counts[seq] ?? 0) + 1;
  step.counts[seq] = count;
  if (count > (step.expectedOf[seq] ?? 0)) {
    step.duplicates++;
    return;
  }
  if (seq < step.warmupCount) return;
  step.deliveredMeasured++;
  if (step.nLatencies === step.latencies.length) {
    const grown = new Float64Array(step.latencies.length * 2);
    grown.set(step.latencies);
    step.latencies = grown;
  }
  step.latencies[step.nLatencies++] = now - view.getFloat64(12, true);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
) {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Waits until no message arrived for `quietMs` (bounded by `maxMs`). */
async function waitQuiet(state: SwarmState, quietMs: number, maxMs: number): Promise<void> {
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline && performance.now() - state.lastArrival < quietMs) await sleep(25);
}

/**
 * Connects every peer, subscribes peer i to topic i mod T, then probes every topic end to end
 * (rotating publishers, every 250 ms) until every peer has received a probe from another peer.
 */
export async function openSwarm(target: LoadTarget, options: SwarmOptions = {}): Promise<Swarm> {
  const nPeers = options.peers ?? 200;
  const nTopics = options.topics ?? 10;
  const log = options.log ?? (() => undefined);
  const topics = benchTopics(nTopics);
  const topicOfPeer = Array.from({ length: nPeers }, (_, i) => i % nTopics);
  const subscribersPerTopic = topics.map((_, t) => topicOfPeer.filter((x) => x === t).length);
  const state: SwarmState = {
    step: null,
    nextStepId: 1,
    stale: 0,
    selfDeliveries: 0,
    malformed: 0,
    lastArrival: 0,
    readyPeers: new Uint8Array(nPeers),
    readyCount: 0,
  };
  const holder = { state };
  const started = performance.now();
  const indices = Array.from({ length: nPeers }, (_, i) => i);
  const peers = await mapLimit(indices, options.connectConcurrency ?? 16, async (i) => {
    const peer = await target.connect(i, Math.floor(i / nTopics));
    const topic = topics[topicOfPeer[i] ?? 0] as Uint8Array;
    await peer.subscribe(topic, (payload) => {
      onDelivery(holder, i, payload);
    });
    return peer;
  });
  log(
    `${target.name}: ${nPeers} peers connected and subscribed in ${Math.round(performance.now() - started)} ms`,
  );

  const members = topics.map((_, t) => indices.filter((i) => topicOfPeer[i] === t));
  const deadline = performance.now() + (options.readyTimeoutMs ?? 30_000);
  for (let round = 0; state.readyCount < nPeers; round++) {
    if (performance.now() > deadline) {
      throw new Error(`${target.name}: only ${state.readyCount}/${nPeers} peers received a probe in time`);
    }
    for (const group of members) {
      if (group.length < 2 || group.every((i) => state.readyPeers[i] === 1)) continue;
      const publisher = group[round % group.length] as number;
      const topic = topics[topicOfPeer[publisher] ?? 0] as Uint8Array;
      void (peers[publisher] as LoadPeer)
        .publish(topic, makePayload(PROBE_STEP_ID, round, publisher))
        .catch(() => undefined);
    }
    await sleep(250);
  }
  await waitQuiet(state, 300, 5_000);
  const setupMs = Math.round(performance.now() - started);
  log(`${target.name}: every peer received a probe; setup ${setupMs} ms`);
  return { target, peers, topics, topicOfPeer, subscribersPerTopic, setupMs, state };
}

/** Closes every peer, then the target. */
export async function closeSwarm(swarm: Swarm): Promise<void> {
  await mapLimit(swarm.peers, 32, async (peer) => {
    await peer.close().catch(() => undefined);
  });
  await swarm.target.close();
}

export interface RateOptions {
  /** Whole step, warm-up included (default 3000 ms). */
  durationMs?: number;
  /** Published but not measured at the start of the step (default 500 ms). */
  warmupMs?: number;
  /** Longest wait for outstanding deliveries after the last publish (default 2000 ms). */
  drainMs?: number;
  /** Pacer tick (default 10 ms). */
  tickMs?: number;
}

export interface StepResult {
  /** Target offered rate, published messages per second. */
  rate: number;
  /** Rate really offered in the measured window. */
  achievedRate: number;
  /** Messages published in the measured window. */
  published: number;
  /** Deliveries expected for them (publisher excluded). */
  expected: number;
  delivered: number;
  lossRatio: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  publishErrors: number;
  duplicates: number;
  /** Deliveries of other steps' messages that arrived during this step. */
  stale: number;
  maxTickLagMs: number;
  /** Server CPU over the step, % of one core (from /proc/<pid>/stat), when known; summed over processes. */
  serverCpuPct: number | null;
  /** Server VmRSS at the end of the step, MiB, when known; summed over processes. */
  serverRssMiB: number | null;
  /** Server processes the two figures above cover. */
  serverProcesses: number;
  /** Driver (this process) CPU over the step, % of one core. */
  driverCpuPct: number;
  driverRssMiB: number;
  pass: boolean;
  /** Why the step failed, or "" when it passed (filled by `judge`). */
  reason: string;
}

/** /proc/<pid>/status VmRSS in bytes, or null when unavailable. */
export function readRssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/** /proc/<pid>/stat utime+stime in seconds (assumes CLK_TCK = 100, Linux's usual), or null. */
/** The server processes of a target. */
function serverPids(target: LoadTarget): readonly number[] {
  return target.serverPids ?? (target.serverPid === undefined ? [] : [target.serverPid]);
}

/** The sum of `read` over the processes; null if there are none or one cannot be read. */
function sumOver(pids: readonly number[], read: (pid: number) => number | null): number | null {
  let sum = 0;
  for (const pid of pids) {
    const v = read(pid);
    if (v === null) return null;
    sum += v;
  }
  return pids.length === 0 ? null : sum;
}

export function readCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ", field 3 (state) is index 0; utime is field 14 → index 11, stime index 12.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

function percentile(sorted: Float64Array, n: number, q: number): number {
  if (n === 0) return Number.NaN;
  const idx = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return sorted[idx] ?? Number.NaN;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;

/**
 * Publishes `rate` messages per second for `durationMs`, spread round robin over the peers, and
 * measures publish→deliver latency and loss over the window after the warm-up. `pass` and
 * `reason` use the default criteria; use `judge` for others.
 */
export async function runRate(swarm: Swarm, rate: number, options: RateOptions = {}): Promise<StepResult> {
  const durationMs = options.durationMs ?? 3000;
  const warmupMs = Math.min(options.warmupMs ?? 500, durationMs / 2);
  const drainMs = options.drainMs ?? 2000;
  const tickMs = options.tickMs ?? 10;
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const warmupCount = Math.min(total - 1, Math.round((rate * warmupMs) / 1000));
  const nPeers = swarm.peers.length;
  const expectedOf = new Uint16Array(total);
  let expectedMeasured = 0;
  for (let k = 0; k < total; k++) {
    const publisher = k % nPeers;
    const e = (swarm.subscribersPerTopic[swarm.topicOfPeer[publisher] ?? 0] ?? 1) - 1;
    expectedOf[k] = e;
    if (k >= warmupCount) expectedMeasured += e;
  }
  const step: StepState = {
    id: swarm.state.nextStepId++,
    total,
    warmupCount,
    counts: new Uint16Array(total),
    expectedOf,
    latencies: new Float64Array(Math.max(1024, expectedMeasured)),
    nLatencies: 0,
    deliveredMeasured: 0,
    expectedMeasured,
    duplicates: 0,
  };
  const state = swarm.state;
  state.step = step;
  const staleBefore = state.stale;
  const pids = serverPids(swarm.target);
  const serverCpu0 = sumOver(pids, readCpuSeconds);
  const driverCpu0 = process.cpuUsage();
  const wall0 = performance.now();

  let publishErrors = 0;
  let sent = 0;
  let maxTickLag = 0;
  let firstMeasuredAt = Number.NaN;
  let lastSentAt = Number.NaN;
  const onError = (): void => {
    publishErrors++;
  };
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let tickNo = 0;
    const tick = (): void => {
      const now = performance.now();
      maxTickLag = Math.max(maxTickLag, now - (start + tickNo * tickMs));
      const due = Math.min(total, Math.floor(((now - start) * rate) / 1000) + 1);
      while (sent < due) {
        const k = sent++;
        if (k === warmupCount) firstMeasuredAt = performance.now();
        const publisher = k % nPeers;
        const peer = swarm.peers[publisher] as LoadPeer;
        const topic = swarm.topics[swarm.topicOfPeer[publisher] ?? 0] as Uint8Array;
        peer.publish(topic, makePayload(step.id, k, publisher)).catch(onError);
      }
      lastSentAt = performance.now();
      if (sent >= total) {
        resolve();
        return;
      }
      tickNo = Math.max(tickNo + 1, Math.floor((performance.now() - start) / tickMs) + 1);
      setTimeout(tick, Math.max(0, start + tickNo * tickMs - performance.now()));
    };
    tick();
  });
  const measuredCount = total - warmupCount;
  const measuredSpan = (lastSentAt - firstMeasuredAt) / 1000;
  const achievedRate = measuredCount > 1 && measuredSpan > 0 ? (measuredCount - 1) / measuredSpan : rate;

  const drainDeadline = performance.now() + drainMs;
  while (step.deliveredMeasured < step.expectedMeasured && performance.now() < drainDeadline) {
    await sleep(10);
  }
  state.step = null;
  const wallS = (performance.now() - wall0) / 1000;
  const serverCpu1 = sumOver(pids, readCpuSeconds);
  const driverCpu = process.cpuUsage(driverCpu0);

  const lat = step.latencies.subarray(0, step.nLatencies).sort();
  const n = step.nLatencies;
  const delivered = step.deliveredMeasured;
  const expected = step.expectedMeasured;
  const rss = sumOver(pids, readRssBytes);
  const result: StepResult = {
    rate,
    achievedRate: Math.round(achievedRate),
    published: measuredCount,
    expected,
    delivered,
    lossRatio: expected === 0 ? 0 : 1 - delivered / expected,
    p50Ms: round2(percentile(lat, n, 0.5)),
    p90Ms: round2(percentile(lat, n, 0.9)),
    p99Ms: round2(percentile(lat, n, 0.99)),
    maxMs: round2(n === 0 ? Number.NaN : (lat[n - 1] ?? Number.NaN)),
    publishErrors,
    duplicates: step.duplicates,
    stale: state.stale - staleBefore,
    maxTickLagMs: round1(maxTickLag),
    serverCpuPct:
      serverCpu0 === null || serverCpu1 === null
        ? null
        : Math.round(((serverCpu1 - serverCpu0) / wallS) * 100),
    serverRssMiB: rss === null ? null : round1(rss / 1048576),
    serverProcesses: pids.length,
    driverCpuPct: Math.round(((driverCpu.user + driverCpu.system) / 1e6 / wallS) * 100),
    driverRssMiB: round1(process.memoryUsage.rss() / 1048576),
    pass: false,
    reason: '',
  };
  Object.assign(result, judge(result, {}));
  // Let a backlog of this step drain (bounded) so it does not land in the next one.
  await waitQuiet(state, 300, 5_000);
  return result;
}

export interface Criteria {
  /** p99 must be strictly below this (default 250 ms). */
  p99LimitMs?: number;
  /** delivered / expected must be at least this (default 0.999). */
  minDeliveryRatio?: number;
  /** achievedRate / rate must be at least this, else the driver was the limit (default 0.97). */
  minAchievedRatio?: number;
}

/** Applies the pass criteria to a step. */
export function judge(step: StepResult, criteria: Criteria): { pass: boolean; reason: string } {
  const p99Limit = criteria.p99LimitMs ?? 250;
  const minRatio = criteria.minDeliveryRatio ?? 0.999;
  const minAchieved = criteria.minAchievedRatio ?? 0.97;
  const reasons: string[] = [];
  if (step.achievedRate < step.rate * minAchieved) {
    reasons.push(`driver offered only ${step.achievedRate}/s`);
  }
  if (!(step.p99Ms < p99Limit)) reasons.push(`p99 ${step.p99Ms} ms ≥ ${p99Limit} ms`);
  const ratio = step.expected === 0 ? 1 : step.delivered / step.expected;
  if (ratio < minRatio)
    reasons.push(`delivered ${(ratio * 100).toFixed(3)}% < ${(minRatio * 100).toFixed(1)}%`);
  return { pass: reasons.length === 0, reason: reasons.join('; ') };
}

export interface SearchOptions extends RateOptions, Criteria {
  /** Offered rates tried in order (default DEFAULT_RATES). */
  rates?: readonly number[];
  /** One extra step between the last pass and the first failure (default true). */
  refine?: boolean;
  /** Called after every step. */
  onStep?: (step: StepResult) => void;
}

export const DEFAULT_RATES: readonly number[] = [
  250, 500, 1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000, 32000,
];

export interface SearchResult {
  /** Highest passing offered rate (0 if even the first step failed). */
  maxSustainedOpsPerSec: number;
  /** Lowest failing rate, or null if every step passed. */
  firstFailOpsPerSec: number | null;
  steps: StepResult[];
}

/**
 * Stepped search for the maximum sustained rate: runs the rates in order, stops at the first
 * failing step, then (if `refine`) tries once the midpoint (rounded to 50) between the last pass
 * and that failure.
 */
export async function maxSustained(swarm: Swarm, options: SearchOptions = {}): Promise<SearchResult> {
  const rates = options.rates ?? DEFAULT_RATES;
  const steps: StepResult[] = [];
  let best = 0;
  let firstFail: number | null = null;
  const run = async (rate: number): Promise<StepResult> => {
    const step = await runRate(swarm, rate, options);
    Object.assign(step, judge(step, options));
    steps.push(step);
    options.onStep?.(step);
    return step;
  };
  for (const rate of rates) {
    const step = await run(rate);
    if (!step.pass) {
      firstFail = rate;
      break;
    }
    best = rate;
  }
  if ((options.refine ?? true) && firstFail !== null) {
    const mid = Math.round((best + firstFail) / 2 / 50) * 50;
    if (mid > best && mid < firstFail && (best === 0 ? mid >= 50 : mid / best >= 1.1)) {
      const step = await run(mid);
      if (step.pass) best = mid;
      else firstFail = mid;
    }
  }
  return { maxSustainedOpsPerSec: best, firstFailOpsPerSec: firstFail, steps };
}

/**
 * Opens a swarm on `target`, runs the stepped search and makes sure there is a step at
 * 1,000 ops/s (the latency figure of bench:relay); the swarm stays open for more measurements.
 * `onOpen` runs once every peer is connected and subscribed, before the first step.
 */
export async function searchTarget(
  target: LoadTarget,
  options: SearchOptions & SwarmOptions & { onOpen?: (swarm: Swarm) => Promise<void> },
): Promise<{ swarm: Swarm; result: SearchResult; at1000: StepResult }> {
  const name = target.name;
  const log = options.log ?? (() => undefined);
  const swarm = await openSwarm(target, options);
  await options.onOpen?.(swarm);
  const result = await maxSustained(swarm, {
    ...options,
    onStep: (s) => {
      log(formatStep(name, s));
      options.onStep?.(s);
    },
  });
  let at1000 = result.steps.find((s) => s.rate === 1000);
  if (at1000 === undefined) {
    at1000 = await runRate(swarm, 1000, options);
    Object.assign(at1000, judge(at1000, options));
    log(formatStep(`${name} (at 1000/s)`, at1000));
  }
  return { swarm, result, at1000 };
}

/** One readable line for a step. */
export function formatStep(name: string, s: StepResult): string {
  const cpu =
    s.serverCpuPct === null
      ? '?'
      : `${s.serverCpuPct}%${s.serverProcesses > 1 ? ` (${s.serverProcesses} processes)` : ''}`;
  const rss = s.serverRssMiB === null ? '?' : `${s.serverRssMiB} MiB`;
  return (
    `${name} rate=${s.rate}/s (offered ${s.achievedRate}/s) p50=${s.p50Ms}ms p90=${s.p90Ms}ms ` +
    `p99=${s.p99Ms}ms max=${s.maxMs}ms delivered=${s.delivered}/${s.expected} ` +
    `loss=${(s.lossRatio * 100).toFixed(3)}% errors=${s.publishErrors} server cpu=${cpu} rss=${rss} ` +
    `driver cpu=${s.driverCpuPct}% lag=${s.maxTickLagMs}ms ${s.pass ? 'PASS' : `FAIL (${s.reason})`}`
  );
}

// ---------------------------------------------------------------------------------------------
// Server child processes

export interface ServerProcess<Info> {
  readonly pid: number;
  /** What the child reported when ready (e.g. its port or multiaddr). */
  readonly info: Info;
  /** Asks the child for its `status()` (see `serveChild`); null if it has none or is gone. */
  status(): Promise<unknown>;
  /** Asks the child to stop (SIGTERM), waits for it to exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

const READY_PREFIX = '__BENCH_SERVER_READY__ ';
const STATUS_PREFIX = '__BENCH_SERVER_STATUS__ ';

/**
 * Starts `entryFile` in a child Node process with this process's Node flags (so the tsx loader and
 * the Node 20 polyfill carry over), waits for the line `serveChild` prints, and returns its pid and
 * reported info. The child's other output goes to this process's stderr, prefixed. Closing the
 * child's stdin (this process dying) also stops the child.
 */
export async function spawnServer<Info>(
  entryFile: string,
  args: readonly string[],
  parseInfo: (raw: unknown) => Info,
  readyTimeoutMs = 30_000,
): Promise<ServerProcess<Info>> {
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, entryFile, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const pid = child.pid;
  if (pid === undefined || child.stdout === null) throw new Error(`could not start ${entryFile}`);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  const lines = createInterface({ input: child.stdout });
  const statusWaiters: ((value: unknown) => void)[] = [];
  const info = await new Promise<Info>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${entryFile}: not ready within ${readyTimeoutMs} ms`));
    }, readyTimeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${entryFile} exited (${code}) before it was ready`));
    });
    lines.on('line', (line) => {
      if (line.startsWith(READY_PREFIX)) {
        clearTimeout(timer);
        try {
          resolve(parseInfo(JSON.parse(line.slice(READY_PREFIX.length))));
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      } else if (line.startsWith(STATUS_PREFIX)) {
        let value: unknown = null;
        try {
          value = JSON.parse(line.slice(STATUS_PREFIX.length));
        } catch {
          value = null;
        }
        statusWaiters.shift()?.(value);
      } else {
        process.stderr.write(`[server ${pid}] ${line}\n`);
      }
    });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(killer);
      }
      lines.close();
    })();
    return stopping;
  };
  const status = (): Promise<unknown> => {
    if (child.stdin === null || child.exitCode !== null || stopping !== null) return Promise.resolve(null);
    const stdin = child.stdin;
    return new Promise<unknown>((resolve) => {
      const timer = setTimeout(() => {
        const i = statusWaiters.indexOf(done);
        if (i >= 0) statusWaiters.splice(i, 1);
        resolve(null);
      }, 5_000);
      function done(value: unknown): void {
        clearTimeout(timer);
        resolve(value);
      }
      statusWaiters.push(done);
      stdin.write('status\n');
    });
  };
  const onExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', onExit);
  void exited.then(() => process.removeListener('exit', onExit));
  return { pid, info, status, stop };
}

/** True when `moduleUrl` (pass `import.meta.url`) is the script Node was started with. */
export function isMainModule(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  return moduleUrl === pathToFileURL(entry).href || fileURLToPath(moduleUrl) === entry;
}

/** What a child server entry hands to `serveChild`. */
export interface ChildServer {
  /** Sent to the parent once ready (JSON). */
  info: unknown;
  close(): Promise<void>;
  /** Answers the parent's status requests (JSON). */
  status?(): unknown;
}

/**
 * Child side of `spawnServer`: starts the server, prints the ready line with its info, answers
 * `status` lines on stdin, and stops on SIGTERM/SIGINT or when stdin closes (the parent went away).
 */
export function serveChild(start: () => Promise<ChildServer>): void {
  void (async () => {
    const server = await start();
    let closing = false;
    const shutdown = (): void => {
      if (closing) return;
      closing = true;
      const hard = setTimeout(() => process.exit(0), 3_000);
      hard.unref();
      void server
        .close()
        .catch(() => undefined)
        .then(() => process.exit(0));
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
    process.stdin.on('end', shutdown);
    process.stdin.on('error', shutdown);
    createInterface({ input: process.stdin }).on('line', (line) => {
      if (line.trim() !== 'status') return;
      let value: unknown = null;
      try {
        value = server.status?.() ?? null;
      } catch {
        value = null;
      }
      process.stdout.write(`${STATUS_PREFIX}${JSON.stringify(value)}\n`);
    });
    process.stdout.write(`${READY_PREFIX}${JSON.stringify(server.info)}\n`);
  })().catch((err: unknown) => {
    process.stderr.write(
      `server failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
