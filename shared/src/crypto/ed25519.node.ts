import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Ed25519 } from '../ports/crypto.js';
import { KEY_BYTES, SIG_BYTES, bytesKey, concatBytes, fromHex } from '../protocol/ids.js';
import {
  VERIFY_BATCHES_AHEAD,
  VERIFY_BATCH_ITEMS,
  VERIFY_KEY_CACHE_ENTRIES,
  VERIFY_THREAD_NICE,
  VERIFY_THREADS_MAX,
} from '../protocol/limits.js';
import { isSmallOrder, webCryptoEd25519 } from './ed25519-webcrypto.js';

/** DER prefix of a SubjectPublicKeyInfo for Ed25519 (RFC 8410); the 32-byte key follows. */
const SPKI_PREFIX = fromHex('302a300506032b6570032100') ?? new Uint8Array(0);

/** Each item of a batch: message length (u32, little-endian), public key, signature, message. */
const ITEM_HEAD = 4 + KEY_BYTES + SIG_BYTES;

/**
 * The verifier threads' code, evaluated as a CommonJS script so it needs no file of its own in
 * any bundle. A thread takes a batch (the layout above), checks each signature with Node's
 * `crypto.verify` and answers with one byte per item, 1 for valid. On Linux it first lowers its
 * own priority (a thread's nice value is its own there): the event loop that feeds it runs the
 * pipeline's serial steps and must not wait behind verification for a core.
 */
const THREAD_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
if (process.platform === 'linux') {
  try { require('node:os').setPriority(workerData.nice); } catch {}
}
const prefix = Buffer.from(workerData.spkiPrefix);
const keys = new Map();
parentPort.on('message', (buf) => {
  const bytes = new Uint8Array(buf);
  const view = new DataView(buf);
  const out = [];
  let at = 0;
  while (at < bytes.length) {
    const len = view.getUint32(at, true);
    const pub = bytes.subarray(at + 4, at + ${4 + KEY_BYTES});
    const sig = bytes.subarray(at + ${4 + KEY_BYTES}, at + ${ITEM_HEAD});
    const msg = bytes.subarray(at + ${ITEM_HEAD}, at + ${ITEM_HEAD} + len);
    at += ${ITEM_HEAD} + len;
    const id = Buffer.from(pub).toString('latin1');
    let key = keys.get(id);
    if (key === undefined) {
      try { key = createPublicKey({ key: Buffer.concat([prefix, pub]), format: 'der', type: 'spki' }); }
      catch { key = null; }
      if (keys.size >= workerData.keyCache) keys.clear();
      keys.set(id, key);
    }
    let ok = false;
    if (key !== null) { try { ok = verify(null, msg, key, sig); } catch { ok = false; } }
    out.push(ok ? 1 : 0);
  }
  const answer = new Uint8Array(out);
  parentPort.postMessage(answer, [answer.buffer]);
});
`;

interface Pending {
  readonly publicKey: Uint8Array;
  /** The message, in parts joined in order (copied into the batch, never joined here). */
  readonly parts: readonly Uint8Array[];
  readonly msgLength: number;
  readonly sig: Uint8Array;
  readonly resolve: (ok: boolean) => void;
}

interface VerifierThread {
  readonly worker: Worker;
  /** Batches sent and not answered, oldest first (a thread answers in order). */
  readonly batches: Pending[][];
  outstanding: number;
}

/**
 * Ed25519 for Node hosts: keys and signing as `webCryptoEd25519`; verification on a pool of
 * verifier threads (one per core, at most `VERIFY_THREADS_MAX`), in batches, at a lower
 * priority than the calling thread.
 *
 * Why not `crypto.verify` with a callback on libuv's thread pool: each call then costs the
 * event loop a job object, a key lookup and a wake-up, and on a machine with as many busy
 * threads as cores the scheduler shares the cores evenly between the event loop and the four
 * pool threads, so the pipeline's serial steps (steps 4–7 of the acceptance pipeline) got about
 * two fifths of a core while verification had work queued. Here a call only copies its bytes
 * into the next batch; batches leave once per turn of the event loop, in slices of
 * `VERIFY_BATCH_ITEMS` so every thread has work and answers arrive steadily.
 *
 * Same answers as the other verifiers (it runs the same conformance suite; small-order keys are
 * refused before they reach a thread). If a thread fails, its unanswered items are verified on
 * libuv's pool instead and a new thread takes its place. The threads start at the first
 * verification and do not keep the process alive while they have nothing to do.
 */
export function nodeEd25519(): Ed25519 {
  const base = webCryptoEd25519();
  return {
    generate: (o) => base.generate(o),
    fromSeed: (seed, o) => base.fromSeed(seed, o),
    exportSeed: (key) => base.exportSeed(key),
    verify: (publicKey, msg, sig) => enqueue(publicKey, [msg], msg.length, sig),
    verifyParts(publicKey, parts, sig) {
      let length = 0;
      for (const p of parts) length += p.length;
      return enqueue(publicKey, parts, length, sig);
    },
  };
}

function enqueue(
  publicKey: Uint8Array,
  parts: readonly Uint8Array[],
  msgLength: number,
  sig: Uint8Array,
): Promise<boolean> {
  if (publicKey.length !== KEY_BYTES || sig.length !== SIG_BYTES || isSmallOrder(publicKey)) {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    pool.queue.push({ publicKey, parts, msgLength, sig, resolve });
    if (!pool.scheduled) {
      pool.scheduled = true;
      setImmediate(flush);
    }
  });
}

/** One pool per process, shared by every verifier made here (a CLI or test may make several). */
const pool: {
  threads: (VerifierThread | undefined)[];
  queue: Pending[];
  scheduled: boolean;
  /** Threads that failed in a row with no answer between: at 3, no more are started. */
  failures: number;
} = { threads: [], queue: [], scheduled: false, failures: 0 };

function flush(): void {
  pool.scheduled = false;
  if (pool.threads.length === 0)
    pool.threads = Array.from(
      { length: Math.max(1, Math.min(VERIFY_THREADS_MAX, availableParallelism())) },
      () => undefined,
    );
  pump();
}

/**
 * Hands queued signatures to threads that have room: each thread holds at most
 * `VERIFY_BATCHES_AHEAD` unanswered batches, so while the threads are busy the queue grows and
 * the next batches are fuller (fewer messages per signature), and an idle thread gets work at
 * once. Runs on each turn that queued work and on each answer.
 */
function pump(): void {
  while (pool.queue.length > 0) {
    let best: VerifierThread | undefined;
    for (let i = 0; i < pool.threads.length; i++) {
      const t = pool.threads[i] ?? start(i);
      if (t !== undefined && (best === undefined || t.batches.length < best.batches.length)) best = t;
    }
    if (best === undefined) {
      for (const p of pool.queue.splice(0)) fallback(p);
      return;
    }
    if (best.batches.length >= VERIFY_BATCHES_AHEAD) return;
    send(best, pool.queue.splice(0, VERIFY_BATCH_ITEMS));
  }
}

function start(slot: number): VerifierThread | undefined {
  if (pool.failures >= 3) return undefined;
  let worker: Worker;
  try {
    worker = new Worker(THREAD_SOURCE, {
      eval: true,
      workerData: { nice: VERIFY_THREAD_NICE, spkiPrefix: SPKI_PREFIX, keyCache: VERIFY_KEY_CACHE_ENTRIES },
    });
  } catch {
    return undefined;
  }
  const t: VerifierThread = { worker, batches: [], outstanding: 0 };
  worker.unref();
  worker.on('message', (answer: Uint8Array) => {
    const batch = t.batches.shift();
    if (batch === undefined) return;
    pool.failures = 0;
    t.outstanding -= batch.length;
    if (t.outstanding === 0) worker.unref();
    for (let i = 0; i < batch.length; i++) (batch[i] as Pending).resolve(answer[i] === 1);
    pump();
  });
  const fail = (): void => {
    if (pool.threads[slot] !== t) return;
    pool.threads[slot] = undefined;
    pool.failures++;
    for (const batch of t.batches.splice(0)) for (const p of batch) fallback(p);
    t.outstanding = 0;
    void worker.terminate();
    // What still waits in the queue goes to the thread that takes this one's place.
    pump();
  };
  worker.on('error', fail);
  worker.on('exit', fail);
  pool.threads[slot] = t;
  return t;
}

function send(best: VerifierThread, batch: Pending[]): void {
  let bytes = 0;
  for (const p of batch) bytes += ITEM_HEAD + p.msgLength;
  const buf = new ArrayBuffer(bytes);
  const out = new Uint8Array(buf);
  const view = new DataView(buf);
  let at = 0;
  for (const p of batch) {
    view.setUint32(at, p.msgLength, true);
    out.set(p.publicKey, at + 4);
    out.set(p.sig, at + 4 + KEY_BYTES);
    at += ITEM_HEAD;
    for (const part of p.parts) {
      out.set(part, at);
      at += part.length;
    }
  }
  best.batches.push(batch);
  if (best.outstanding === 0) best.worker.ref();
  best.outstanding += batch.length;
  try {
    best.worker.postMessage(buf, [buf]);
  } catch {
    best.batches.pop();
    best.outstanding -= batch.length;
    for (const p of batch) fallback(p);
  }
}

/** Verifies on libuv's thread pool: for a thread that failed, or where threads cannot start. */
function fallback(p: Pending): void {
  const ko = keyObject(p.publicKey);
  if (ko === undefined) {
    p.resolve(false);
    return;
  }
  try {
    const msg = p.parts.length === 1 ? (p.parts[0] as Uint8Array) : concatBytes(...p.parts);
    verify(null, msg, ko, p.sig, (err, ok) => {
      p.resolve(err === null && ok);
    });
  } catch {
    p.resolve(false);
  }
}

/** Keys for the fallback path, bounded like the threads' own caches. */
const fallbackKeys = new Map<string, KeyObject | undefined>();

function keyObject(publicKey: Uint8Array): KeyObject | undefined {
  const k = bytesKey(publicKey);
  if (fallbackKeys.has(k)) return fallbackKeys.get(k);
  let ko: KeyObject | undefined;
  try {
    ko = createPublicKey({
      key: Buffer.from(concatBytes(SPKI_PREFIX, publicKey)),
      format: 'der',
      type: 'spki',
    });
  } catch {
    ko = undefined;
  }
  if (fallbackKeys.size >= VERIFY_KEY_CACHE_ENTRIES) fallbackKeys.clear();
  fallbackKeys.set(k, ko);
  return ko;
}

/**
 * Stops every verifier thread as if it had crashed, for tests of the recovery path: their
 * unanswered signatures are verified on libuv's pool and new threads start on the next batch.
 * Resolves once the threads are gone.
 */
export async function crashVerifierThreadsForTests(): Promise<number> {
  const running = pool.threads.filter((t): t is VerifierThread => t !== undefined);
  await Promise.all(running.map((t) => t.worker.terminate()));
  return running.length;
}
