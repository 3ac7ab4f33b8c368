/**
 * bench:relay — two Conclave relays on one backbone under 200 simulated peers (same IP, split
 * across the relays), 10 topics, 1 KiB sealed ops: publish→deliver latency at 1,000 ops/s, the
 * maximum sustained ops/s (highest offered rate with p99 < 250 ms and ≥ 99.9% delivered), relay
 * RSS per connected idle peer, and one fresh peer's catch-up of 10,000 ops end to end (connect,
 * subscribe, open, verify, accept; the peer is a process of its own, bench/catchup-peer.ts). In
 * the same run, four floors under the same load: a plain `ws` fan-out server, a bare js-libp2p
 * gossipsub hub, and a bare js-libp2p stream fan-out hub with the relays' transport stack and no
 * relay logic, alone and as two hubs in the relays' layout (bench/relay/).
 *
 * Run: npm run bench:relay   (BENCH_RELAY_FLOORS=0 skips the floors; BENCH_RELAY_SIGNING=1 adds
 * a pass with signed backbone gossip at 150 and 250 ops/s, to compare with the same steps unsigned;
 * BENCH_RELAY_ONLY=catchup runs only the catch-up, BENCH_RELAY_ONLY=idle only the RSS per idle peer,
 * measured as in the full run: the swarm opened, 2 s, then 100 more peers.)
 * Last line: {"p50Ms","p99Ms","maxSustainedOpsPerSec","rssPerIdlePeerKiB","catchup10kSec",
 *             "floorGossipsubOpsPerSec","floorWsOpsPerSec"}
 */
import os from 'node:os';
import { topicId } from '../shared/src/crypto/sha256.js';
import { TestGroup } from '../shared/src/core/testkit.js';
import { libp2pConnector } from '../shared/src/net/libp2p.js';
import { appendMany } from '../relay/src/testing/util.js';
import { catchUpInChild, catchUpInput } from './catchup-peer.js';
import { generate, makeAuthors } from './oplog.js';
import {
  type LoadPeer,
  type LoadTarget,
  type SearchResult,
  type StepResult,
  type Swarm,
  closeSwarm,
  formatStep,
  judge,
  openSwarm,
  runRate,
  searchTarget,
} from './relay/driver.js';
import { type ConclaveTarget, startConclaveRelays } from './relay/conclave.js';
import { startGossipsubFloor } from './relay/gossipsub-floor.js';
import { startStreamsFloor } from './relay/streams-floor.js';
import { startWsFloor } from './relay/ws-floor.js';
import { wsClient } from './relay/ws-client.js';

const PEERS = 200;
const TOPICS = 10;
/** Idle peers connected beside the swarm to measure the relays' marginal RSS per peer. */
const EXTRA_PEERS = 100;
const STEP_MS = Number(process.env.BENCH_RELAY_STEP_MS ?? 3000);
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const options = { peers: PEERS, topics: TOPICS, durationMs: STEP_MS, log };

/** A fresh peer's catch-up of `n` ops written through relay 0, read from relay 1. */
async function catchUp(
  target: ConclaveTarget,
  n: number,
): Promise<{ sec: number; connectMs: number; firstMs: number }> {
  const people = await makeAuthors();
  const group = new TestGroup();
  const gen = await generate(n, people, group);
  const topic = topicId(gen.space);
  const writerNode = await libp2pConnector();
  const writer = await writerNode.connect(target.relays[0]?.multiaddr ?? '');
  const t0 = performance.now();
  await appendMany(writer, topic, n, (i) => gen.sealed[i] as Uint8Array, 64);
  log(`catch-up: ${n} sealed ops appended through relay A in ${Math.round(performance.now() - t0)} ms`);
  const other = target.relays[1] ?? target.relays[0];
  if (other === undefined) throw new Error('no relay');
  const probeNode = await libp2pConnector();
  const probe = await probeNode.connect(other.multiaddr);
  for (let i = 0; i < 600; i++) {
    if ((await probe.read(topic, 0, 1)).lastSeq >= n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await probeNode.stop();
  await writerNode.stop();
  // The fresh peer is a process of its own, bundled like the CLI: not this driver, whose event
  // loop also carries the swarm's 200 client nodes.
  const r = await catchUpInChild(
    catchUpInput(
      other.multiaddr,
      gen.space,
      people.map((p) => p.user),
      n,
    ),
  );
  if (r.accepted !== n) throw new Error(`catch-up accepted only ${r.accepted} of ${n}`);
  return { sec: r.sec, connectMs: r.connectMs, firstMs: r.firstMs };
}

/**
 * The relays' RSS per connected idle peer: (RSS with the swarm's PEERS idle, connected and
 * subscribed peers − RSS before them) / PEERS, and the marginal figure with EXTRA_PEERS more.
 */
async function measureIdle(
  target: ConclaveTarget,
  open: Swarm,
  rssBefore: number,
): Promise<{ rssPerIdlePeerKiB: number; rssPerExtraIdlePeerKiB: number }> {
  await new Promise((r) => setTimeout(r, 2000));
  const rssIdle = await target.relayRss();
  const rssPerIdlePeerKiB = (rssIdle - rssBefore) / PEERS / 1024;
  log(
    `relays' RSS: ${(rssBefore / 2 ** 20).toFixed(0)} MiB before the peers, ${(rssIdle / 2 ** 20).toFixed(0)} MiB ` +
      `with ${PEERS} idle peers connected and subscribed: ${rssPerIdlePeerKiB.toFixed(1)} KiB per peer`,
  );
  // The figure above also holds what the relays grow by once, whatever the number of peers
  // (code compiled for the handshakes, V8's young generation growing to its working size).
  // The marginal cost: EXTRA_PEERS more idle peers on relays that already hold PEERS.
  const extra: LoadPeer[] = [];
  for (let j = 0; j < EXTRA_PEERS; j++) {
    const peer = await target.connect(PEERS + j);
    await peer.subscribe(open.topics[j % TOPICS] as Uint8Array, () => undefined);
    extra.push(peer);
  }
  await new Promise((r) => setTimeout(r, 2000));
  const rssMore = await target.relayRss();
  const rssPerExtraIdlePeerKiB = (rssMore - rssIdle) / EXTRA_PEERS / 1024;
  log(
    `relays' RSS with ${EXTRA_PEERS} more idle peers: ${(rssMore / 2 ** 20).toFixed(0)} MiB, ` +
      `${rssPerExtraIdlePeerKiB.toFixed(1)} KiB per added peer`,
  );
  for (const peer of extra) await peer.close();
  await new Promise((r) => setTimeout(r, 1000));
  return {
    rssPerIdlePeerKiB: Number(rssPerIdlePeerKiB.toFixed(1)),
    rssPerExtraIdlePeerKiB: Number(rssPerExtraIdlePeerKiB.toFixed(1)),
  };
}

async function floor(
  start: () => Promise<LoadTarget>,
): Promise<{ result: SearchResult; at1000: StepResult }> {
  const { swarm, result, at1000 } = await searchTarget(await start(), options);
  await closeSwarm(swarm);
  return { result, at1000 };
}

async function main(): Promise<void> {
  log(
    `bench:relay on ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, node ${process.version}; ` +
      `${PEERS} peers on 127.0.0.1, ${TOPICS} topics, 1 KiB sealed ops, ${STEP_MS} ms steps, ` +
      `peers' WebSocket client: ${wsClient}`,
  );
  const target = await startConclaveRelays();
  await new Promise((r) => setTimeout(r, 1000));
  if (process.env.BENCH_RELAY_ONLY === 'catchup') {
    const c = await catchUp(target, 10_000);
    log(
      `catch-up of 10,000 ops by a fresh peer: ${c.sec.toFixed(2)} s (connect ${Math.round(c.connectMs)} ms, ` +
        `first op accepted at ${Math.round(c.firstMs)} ms)`,
    );
    log(JSON.stringify({ catchup10kSec: Number(c.sec.toFixed(2)) }));
    await target.close();
    return;
  }
  const rssBefore = await target.relayRss();
  if (process.env.BENCH_RELAY_ONLY === 'idle') {
    const swarm = await openSwarm(target, options);
    const idle = await measureIdle(target, swarm, rssBefore);
    log(JSON.stringify(idle));
    await closeSwarm(swarm);
    return;
  }
  let idle = { rssPerIdlePeerKiB: 0, rssPerExtraIdlePeerKiB: 0 };
  const { swarm, result, at1000 } = await searchTarget(target, {
    ...options,
    onOpen: async (open) => {
      idle = await measureIdle(target, open, rssBefore);
    },
  });
  const { rssPerIdlePeerKiB, rssPerExtraIdlePeerKiB } = idle;
  log(`conclave: ${(await target.describe?.()) ?? ''}`);
  const catchup = await catchUp(target, 10_000);
  log(
    `catch-up of 10,000 ops by a fresh peer: ${catchup.sec.toFixed(2)} s ` +
      `(connect ${Math.round(catchup.connectMs)} ms, first op accepted at ${Math.round(catchup.firstMs)} ms, ` +
      `then open + verify + accept)`,
  );
  await closeSwarm(swarm);

  const figures: Record<string, number | null> = {};
  if (process.env.BENCH_RELAY_SIGNING === '1') {
    const signed = await startConclaveRelays({ args: ['--backbone-signing', 'strict'] });
    const s = await openSwarm(signed, { peers: PEERS, topics: TOPICS, log });
    for (const rate of [150, 250]) {
      const step = await runRate(s, rate, { durationMs: STEP_MS });
      Object.assign(step, judge(step, {}));
      log(formatStep('conclave (signed backbone)', step));
      figures[`signedP50MsAt${rate}`] = step.p50Ms;
      figures[`signedP99MsAt${rate}`] = step.p99Ms;
      figures[`signedCpuPctAt${rate}`] = step.serverCpuPct;
    }
    await closeSwarm(s);
  }

  let floorGossipsub: number | null = null;
  let floorWs: number | null = null;
  if (process.env.BENCH_RELAY_FLOORS !== '0') {
    const g = await floor(() => startGossipsubFloor());
    floorGossipsub = g.result.maxSustainedOpsPerSec;
    figures.floorGossipsubP99MsAt1000 = g.at1000.p99Ms;
    figures.floorGossipsubLossAt1000 = Number(g.at1000.lossRatio.toFixed(6));
    const w = await floor(() => startWsFloor());
    floorWs = w.result.maxSustainedOpsPerSec;
    figures.floorWsP99MsAt1000 = w.at1000.p99Ms;
    // What the relays' transport alone costs: libp2p streams with the relays' stack, no relay logic.
    const st = await floor(() => startStreamsFloor());
    figures.floorStreamsOpsPerSec = st.result.maxSustainedOpsPerSec;
    figures.floorStreamsP50MsAt1000 = st.at1000.p50Ms;
    figures.floorStreamsP99MsAt1000 = st.at1000.p99Ms;
    // The same with the relays' layout: two hubs, each topic's subscribers split between them, one
    // stream between the hubs in place of the backbone.
    const st2 = await floor(() => startStreamsFloor({ hubs: 2 }));
    figures.floorStreams2HubsOpsPerSec = st2.result.maxSustainedOpsPerSec;
    figures.floorStreams2HubsP50MsAt1000 = st2.at1000.p50Ms;
    figures.floorStreams2HubsP99MsAt1000 = st2.at1000.p99Ms;
    log(
      `conclave sustained ${result.maxSustainedOpsPerSec} ops/s = ` +
        `${floorWs > 0 ? ((result.maxSustainedOpsPerSec / floorWs) * 100).toFixed(0) : '?'}% of the ws floor`,
    );
  }
  log(
    'targets: p50 <= 20 ms and p99 <= 100 ms at 1,000 ops/s; >= 3,000 ops/s sustained (>= 40% of ws); ' +
      '<= 100 KiB per idle peer; 10k catch-up <= 3 s',
  );
  log(
    JSON.stringify({
      p50Ms: at1000.p50Ms,
      p99Ms: at1000.p99Ms,
      maxSustainedOpsPerSec: result.maxSustainedOpsPerSec,
      rssPerIdlePeerKiB,
      catchup10kSec: Number(catchup.sec.toFixed(2)),
      floorGossipsubOpsPerSec: floorGossipsub,
      floorWsOpsPerSec: floorWs,
      rssPerExtraIdlePeerKiB,
      ...figures,
    }),
  );
}

await main();
process.exit(0);
