/**
 * The reference floors of `bench:relay`: a plain `ws` fan-out server, a bare js-libp2p gossipsub
 * hub and a bare js-libp2p stream fan-out hub (streams-floor.ts), each under the same load (200
 * peers on 127.0.0.1, 10 topics × 20 subscribers, 1 KiB messages, publisher excluded: 19
 * deliveries per message). For each: p50/p99 at 1000 ops/s and the maximum sustained ops/s
 * (stepped search, see driver.ts).
 *
 *   node --experimental-websocket --import ./scripts/node20.mjs --import tsx bench/relay/floors.ts
 *
 * Options: --only ws|gossipsub|streams|streams2   --rates 250,500,…   --step-ms 3000   --peers 200   --topics 10
 *          --ws-no-cork (naive one-write-per-frame ws server)
 *          --gossipsub-peers-per-node k (k simulated peers per client libp2p node, k ≤ topics)
 *          --gossipsub-mesh D,Dlo,Dhi (diagnostic variant; the floor is 6,4,12)
 * Prints one line per step and ends with one line of JSON.
 */
import { parseArgs } from 'node:util';
import {
  DEFAULT_RATES,
  type LoadTarget,
  type SearchResult,
  type StepResult,
  closeSwarm,
  searchTarget,
} from './driver.js';
import { startGossipsubFloor } from './gossipsub-floor.js';
import { startStreamsFloor } from './streams-floor.js';
import { startWsFloor } from './ws-floor.js';
import './ws-client.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    rates: { type: 'string' },
    'step-ms': { type: 'string' },
    peers: { type: 'string' },
    topics: { type: 'string' },
    'ws-no-cork': { type: 'boolean' },
    'gossipsub-peers-per-node': { type: 'string' },
    'gossipsub-mesh': { type: 'string' },
  },
});

const rates = values.rates?.split(',').map(Number) ?? DEFAULT_RATES;
const durationMs = Number(values['step-ms'] ?? 3000);
const peers = Number(values.peers ?? 200);
const topics = Number(values.topics ?? 10);
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface FloorFigures {
  search: SearchResult;
  at1000: StepResult;
  setupMs: number;
}

async function measure(start: () => Promise<LoadTarget>): Promise<FloorFigures> {
  const target = await start();
  try {
    const {
      swarm,
      result: search,
      at1000,
    } = await searchTarget(target, {
      peers,
      topics,
      log,
      rates,
      durationMs,
      onOpen: async () => {
        if (target.describe !== undefined) log(`${target.name}: ${await target.describe()}`);
      },
    });
    if (target.describe !== undefined) log(`${target.name}: ${await target.describe()}`);
    log(
      `${target.name}: max sustained ${search.maxSustainedOpsPerSec} ops/s ` +
        `(first failure ${search.firstFailOpsPerSec ?? 'none'})`,
    );
    await closeSwarm(swarm);
    return { search, at1000, setupMs: swarm.setupMs };
  } catch (err) {
    await target.close();
    throw err;
  }
}

const summary: Record<string, number | string | null> = {};
const record = (key: string, f: FloorFigures): void => {
  summary[`floor${key}OpsPerSec`] = f.search.maxSustainedOpsPerSec;
  summary[`floor${key}FirstFailOpsPerSec`] = f.search.firstFailOpsPerSec;
  summary[`floor${key}P50MsAt1000`] = f.at1000.p50Ms;
  summary[`floor${key}P99MsAt1000`] = f.at1000.p99Ms;
  summary[`floor${key}LossAt1000`] = Number(f.at1000.lossRatio.toFixed(6));
  summary[`floor${key}OfferedAt1000`] = f.at1000.achievedRate;
  summary[`floor${key}ServerRssMiB`] = Math.max(...f.search.steps.map((s) => s.serverRssMiB ?? 0));
};

if (values.only === undefined || values.only === 'gossipsub') {
  const peersPerNode = Number(values['gossipsub-peers-per-node'] ?? 1);
  const meshArg = values['gossipsub-mesh']?.split(',').map(Number);
  const mesh =
    meshArg?.length === 3 ? { D: meshArg[0] ?? 6, Dlo: meshArg[1] ?? 4, Dhi: meshArg[2] ?? 12 } : undefined;
  record(
    'Gossipsub',
    await measure(() => startGossipsubFloor(mesh === undefined ? { peersPerNode } : { peersPerNode, mesh })),
  );
}
if (values.only === undefined || values.only === 'streams') {
  record('Streams', await measure(() => startStreamsFloor()));
}
if (values.only === undefined || values.only === 'streams2') {
  record('Streams2Hubs', await measure(() => startStreamsFloor({ hubs: 2 })));
}
if (values.only === undefined || values.only === 'ws') {
  record('Ws', await measure(() => startWsFloor({ cork: values['ws-no-cork'] !== true })));
}
log(JSON.stringify({ ...summary, peers, topics, payloadBytes: 1024, stepMs: durationMs }));
