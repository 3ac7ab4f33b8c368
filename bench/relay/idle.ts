/**
 * The relays' memory per connected idle peer, alone (the part of bench:relay that measures it,
 * with a breakdown): two relay processes, `--peers` libp2p client peers (noise, yamux, a live
 * mailbox subscription each, every one having received a probe), then `--extra` more; the RSS
 * of the relays before and after, and what the relays' `/metrics` say of their V8 heap, external
 * memory and ArrayBuffers. Ends with a short publish step to show the subscriptions still deliver.
 *
 * Run: node --experimental-websocket --import ./scripts/node20.mjs --import tsx bench/relay/idle.ts
 * Options: --peers 200, --extra 100, --relays 2, --settle-ms 2000 (as bench:relay), --late-ms 0
 * (if set, measured again that much later, the same 200 peers still idle),
 * --smaps DIR (copies of the relays' /proc/<pid>/smaps before and with the peers),
 * --snapshot (before the peers and after the measurement, SIGUSR2 to each relay: with
 * BENCH_RELAY_NODE_ARGS="--heapsnapshot-signal=SIGUSR2" each writes a heap snapshot in the repo
 * root; the first one's GC makes the figures a little lower than without).
 * Last line: {"rssPerIdlePeerKiB","rssPerExtraIdlePeerKiB",…}
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type ConclaveTarget, startConclaveRelays } from './conclave.js';
import { type LoadPeer, closeSwarm, openSwarm, runRate } from './driver.js';
// The peers dial with ws's client, as in bench:relay.
import './ws-client.js';

const { values } = parseArgs({
  options: {
    peers: { type: 'string', default: '200' },
    extra: { type: 'string', default: '100' },
    relays: { type: 'string', default: '2' },
    'settle-ms': { type: 'string', default: '2000' },
    'late-ms': { type: 'string', default: '0' },
    snapshot: { type: 'boolean', default: false },
    smaps: { type: 'string' },
  },
});
const PEERS = Number(values.peers);
const EXTRA = Number(values.extra);
const SETTLE_MS = Number(values['settle-ms']);
const TOPICS = 10;
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MiB = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

/** The relays' memory, summed: RSS from /proc, the rest from each relay's `/metrics`. */
async function memory(target: ConclaveTarget): Promise<Memory> {
  const sum: Memory = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
  for (const r of target.relays) {
    sum.rss += await r.rss();
    const text = await (await fetch(`${r.httpUrl}/metrics`)).text();
    const read = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    sum.heapUsed += read('nodejs_heap_used_bytes');
    sum.heapTotal += read('nodejs_heap_total_bytes');
    sum.external += read('nodejs_external_memory_bytes');
    sum.arrayBuffers += read('nodejs_array_buffers_bytes');
  }
  return sum;
}

function describe(m: Memory): string {
  return (
    `rss ${MiB(m.rss)}, heap used ${MiB(m.heapUsed)} of ${MiB(m.heapTotal)}, ` +
    `external ${MiB(m.external)} (ArrayBuffers ${MiB(m.arrayBuffers)})`
  );
}

function perPeer(a: Memory, b: Memory, n: number): Record<string, number> {
  const k = (x: number): number => Number((x / n / 1024).toFixed(1));
  return {
    rss: k(b.rss - a.rss),
    heapUsed: k(b.heapUsed - a.heapUsed),
    heapTotal: k(b.heapTotal - a.heapTotal),
    external: k(b.external - a.external),
    arrayBuffers: k(b.arrayBuffers - a.arrayBuffers),
  };
}

const target = await startConclaveRelays({ relays: Number(values.relays) });
await sleep(1000);
const snapshot = async (): Promise<void> => {
  if (!values.snapshot) return;
  for (const r of target.relays) r.process.kill('SIGUSR2');
  await sleep(20_000);
};
/** With `--smaps DIR`: copies each relay's /proc/<pid>/smaps there, named `<label>-<relay>.smaps`. */
const smaps = (label: string): void => {
  const dir = values.smaps;
  if (dir === undefined) return;
  target.relays.forEach((r, i) => {
    // (copyFileSync copies nothing: /proc files have no size)
    writeFileSync(
      join(dir, `${label}-${String(i)}.smaps`),
      readFileSync(`/proc/${String(r.process.pid)}/smaps`),
    );
  });
};
await snapshot();
const before = await memory(target);
smaps('before');
log(`before the peers: ${describe(before)}`);
const swarm = await openSwarm(target, { peers: PEERS, topics: TOPICS, log });
await sleep(SETTLE_MS);
const idle = await memory(target);
smaps('idle');
const idlePer = perPeer(before, idle, PEERS);
log(`with ${PEERS} idle peers: ${describe(idle)}`);
log(`per peer (KiB): ${JSON.stringify(idlePer)}`);
await snapshot();
const LATE_MS = Number(values['late-ms']);
let latePer: Record<string, number> | undefined;
if (LATE_MS > 0) {
  await sleep(LATE_MS);
  const late = await memory(target);
  latePer = perPeer(before, late, PEERS);
  log(`${String(LATE_MS / 1000)} s later: ${describe(late)}`);
  log(`per peer (KiB): ${JSON.stringify(latePer)}`);
}
const extra: LoadPeer[] = [];
for (let j = 0; j < EXTRA; j++) {
  const peer = await target.connect(PEERS + j);
  await peer.subscribe(swarm.topics[j % TOPICS] as Uint8Array, () => undefined);
  extra.push(peer);
}
await sleep(SETTLE_MS);
const more = await memory(target);
const extraPer = EXTRA > 0 ? perPeer(idle, more, EXTRA) : undefined;
log(`with ${EXTRA} more: ${describe(more)}`);
if (extraPer !== undefined) log(`per added peer (KiB): ${JSON.stringify(extraPer)}`);
await snapshot();
const step = await runRate(swarm, 100, { durationMs: 2000 });
log(`after: 100 ops/s for 2 s, ${step.delivered} delivered, loss ${(step.lossRatio * 100).toFixed(3)}%`);
for (const peer of extra) await peer.close();
await closeSwarm(swarm);
log(
  JSON.stringify({
    rssPerIdlePeerKiB: idlePer.rss,
    rssPerExtraIdlePeerKiB: extraPer?.rss ?? null,
    rssPerIdlePeerLaterKiB: latePer?.rss ?? null,
    heapUsedPerIdlePeerKiB: idlePer.heapUsed,
    externalPerIdlePeerKiB: idlePer.external,
    lossAfter: step.lossRatio,
  }),
);
process.exit(0);
