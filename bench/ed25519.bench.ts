/**
 * Ed25519 throughput of both implementations: signatures per second, and verifications per
 * second awaited one at a time and with 100 in flight. Messages are distinct, ~300 bytes,
 * signed by 50 keys (many authors, so the webcrypto key cache is exercised but fits).
 * Run: `npx tsx bench/ed25519.bench.ts`. The last line printed is one JSON object.
 */
import { nobleEd25519 } from '../shared/src/crypto/ed25519-noble.js';
import { webCryptoEd25519 } from '../shared/src/crypto/ed25519-webcrypto.js';
import type { Ed25519, SigningKey } from '../shared/src/ports/crypto.js';

const AUTHORS = 50;
const MSG_BYTES = 300;
const IN_FLIGHT = 100;

interface Item {
  readonly publicKey: Uint8Array;
  readonly msg: Uint8Array;
  readonly sig: Uint8Array;
}

interface Result {
  readonly signPerSec: number;
  readonly verifyPerSec: number;
  readonly verifyInFlightPerSec: number;
}

function messages(n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => {
    const m = globalThis.crypto.getRandomValues(new Uint8Array(MSG_BYTES));
    new DataView(m.buffer).setUint32(0, i);
    return m;
  });
}

function pick<T>(xs: readonly T[], i: number): T {
  const x = xs[i % xs.length];
  if (x === undefined) throw new Error('empty list');
  return x;
}

async function run(make: () => Ed25519, iterations: number): Promise<Result> {
  const ed = make();
  const keys: SigningKey[] = [];
  for (let i = 0; i < AUTHORS; i++) keys.push(await ed.generate());
  const msgs = messages(iterations);

  // Warm-up, outside the timings: JIT, lazy tables, the first key imports.
  for (let i = 0; i < Math.min(50, iterations); i++) {
    const k = pick(keys, i);
    const m = pick(msgs, i);
    await ed.verify(k.publicKey, m, await k.sign(m));
  }

  const items: Item[] = [];
  let t = performance.now();
  for (let i = 0; i < iterations; i++) {
    const k = pick(keys, i);
    const msg = pick(msgs, i);
    items.push({ publicKey: k.publicKey, msg, sig: await k.sign(msg) });
  }
  const signMs = performance.now() - t;

  // A fresh instance per verify pass, so both start with a cold key cache.
  const v1 = make();
  t = performance.now();
  for (const x of items) if (!(await v1.verify(x.publicKey, x.msg, x.sig))) throw new Error('bad signature');
  const verifyMs = performance.now() - t;

  const v2 = make();
  t = performance.now();
  for (let i = 0; i < items.length; i += IN_FLIGHT) {
    const batch = items.slice(i, i + IN_FLIGHT);
    const ok = await Promise.all(batch.map((x) => v2.verify(x.publicKey, x.msg, x.sig)));
    if (!ok.every(Boolean)) throw new Error('bad signature');
  }
  const inFlightMs = performance.now() - t;

  return {
    signPerSec: (iterations / signMs) * 1000,
    verifyPerSec: (iterations / verifyMs) * 1000,
    verifyInFlightPerSec: (iterations / inFlightMs) * 1000,
  };
}

const round = (x: number): number => Math.round(x);
const fmt = (x: number): string => round(x).toLocaleString('en-US').padStart(12);

const started = performance.now();
const web = await run(() => webCryptoEd25519(), 2000);
const noble = await run(() => nobleEd25519(), 300);
const totalS = (performance.now() - started) / 1000;

console.log(`Ed25519, ${MSG_BYTES}-byte messages, ${AUTHORS} authors, Node ${process.versions.node}`);
console.log(
  `${'implementation'.padEnd(16)}${'sign/s'.padStart(12)}${'verify/s'.padStart(12)}${`verify/s (${IN_FLIGHT} in flight)`.padStart(28)}`,
);
for (const [name, r] of [
  ['webcrypto', web],
  ['noble', noble],
] as const) {
  console.log(
    `${name.padEnd(16)}${fmt(r.signPerSec)}${fmt(r.verifyPerSec)}${fmt(r.verifyInFlightPerSec).padStart(28)}`,
  );
}
console.log(`(total ${totalS.toFixed(1)} s)`);
console.log(
  JSON.stringify({
    webcryptoVerifyPerSec: round(web.verifyPerSec),
    webcryptoVerifyInFlightPerSec: round(web.verifyInFlightPerSec),
    nobleVerifyPerSec: round(noble.verifyPerSec),
    nobleVerifyInFlightPerSec: round(noble.verifyInFlightPerSec),
    webcryptoSignPerSec: round(web.signPerSec),
    nobleSignPerSec: round(noble.signPerSec),
  }),
);
