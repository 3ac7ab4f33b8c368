/**
 * How much of the event loop the relay's store takes: appends of 1 KiB messages to 10 addresses
 * at a fixed rate for 5 s, each acknowledged once durable, in one process with nothing else to
 * do. Prints the event loop's busy share, the acknowledgement latency and the process's CPU.
 * Not part of bench:relay (the relays there share the machine with the driver); for comparing
 * ways of syncing the store.
 *
 * Run: node --import tsx bench/relay/store-loop.ts [appends per second, default 1000]
 * Last line: {"rate","eventLoopBusy","p50Ms","p99Ms","cpuSec"}
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RelayStore } from '../../relay/src/store.js';

const RATE = Number(process.argv[2] ?? 1000);
const SECONDS = 5;
if (!Number.isFinite(RATE) || RATE <= 0 || RATE > 100_000) {
  console.error('usage: store-loop.ts [appends per second, 1..100000]');
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'conclave-store-loop-'));
const store = RelayStore.open(dir, {
  retentionMs: 1e12,
  maxMailboxBytes: 1e12,
  maxBlobBytesPerOwner: 1e12,
  maxBlobStoreBytes: 1e12,
});
const addresses = Array.from({ length: 10 }, (_, i) => new Uint8Array(32).fill(i));
const total = RATE * SECONDS;
const latencies: number[] = [];
let sent = 0;

const elu0 = performance.eventLoopUtilization();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await new Promise<void>((resolve) => {
  const tick = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
    while (sent < due) {
      const message = randomFillSync(new Uint8Array(1024));
      const at = performance.now();
      void store.append(addresses[sent % addresses.length] as Uint8Array, message).then(() => {
        latencies.push(performance.now() - at);
        if (latencies.length === total) resolve();
      });
      sent++;
    }
    if (sent >= total) clearInterval(tick);
  }, 1);
});
const busy = performance.eventLoopUtilization(elu0).utilization;
const cpu = process.cpuUsage(cpu0);
store.close();
rmSync(dir, { recursive: true, force: true });

latencies.sort((a, b) => a - b);
const at = (q: number): number =>
  latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
const figures = {
  rate: RATE,
  eventLoopBusy: Number(busy.toFixed(2)),
  p50Ms: Number(at(0.5).toFixed(2)),
  p99Ms: Number(at(0.99).toFixed(2)),
  cpuSec: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
};
console.log(
  `${RATE} appends/s for ${SECONDS} s: event loop busy ${(busy * 100).toFixed(0)} %, ` +
    `ack p50 ${figures.p50Ms} ms, p99 ${figures.p99Ms} ms, CPU ${figures.cpuSec} s`,
);
console.log(JSON.stringify(figures));
