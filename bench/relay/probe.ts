/**
 * A quick probe of the Conclave relays at fixed rates, for profiling (not part of bench:relay):
 *   node --experimental-websocket --import ./scripts/node20.mjs --import tsx bench/relay/probe.ts 250,500,1000
 * Add --cpu-prof for the driver's profile; BENCH_RELAY_PROFILE=DIR for the relays'.
 */
import { closeSwarm, formatStep, judge, openSwarm, readCpuSeconds, runRate } from './driver.js';
import { startConclaveRelays } from './conclave.js';
import './ws-client.js';

const rates = process.argv[2] === 'none' ? [] : (process.argv[2] ?? '250,500,1000').split(',').map(Number);
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const target = await startConclaveRelays();
const rss0 = await target.relayRss();
const PEERS = Number(process.env.PROBE_PEERS ?? 200);
const swarm = await openSwarm(target, { peers: PEERS, topics: 10, log });
await new Promise((r) => setTimeout(r, 2000));
const rss1 = await target.relayRss();
log(
  `relays' RSS ${(rss0 / 2 ** 20).toFixed(1)} MiB before, ${(rss1 / 2 ** 20).toFixed(1)} MiB with ${PEERS} idle peers: ` +
    `${((rss1 - rss0) / PEERS / 1024).toFixed(1)} KiB per peer`,
);
const relayCpu = (): number =>
  target.relays.reduce((a, r) => a + (readCpuSeconds(r.process.pid ?? 0) ?? 0), 0);
for (const rate of rates) {
  const r0 = relayCpu();
  const from = process.hrtime.bigint() / 1000n;
  const d0 = process.cpuUsage();
  const step = await runRate(swarm, rate, { durationMs: Number(process.env.BENCH_RELAY_STEP_MS ?? 3000) });
  Object.assign(step, judge(step, {}));
  log(formatStep('conclave', step));
  // The step's window on the monotonic clock CPU profiles use (µs), to cut a profile to it.
  log(`  window FROM=${from} TO=${process.hrtime.bigint() / 1000n}`);
  const d = process.cpuUsage(d0);
  const n = Math.max(1, step.delivered);
  log(
    `  CPU per delivery: driver ${((d.user + d.system) / n).toFixed(0)} µs, both relays ${(((relayCpu() - r0) * 1e6) / n).toFixed(0)} µs`,
  );
}
await closeSwarm(swarm);
process.exit(0);
