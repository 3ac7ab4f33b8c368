import type { Ed25519 } from '../ports/crypto.js';

/**
 * The same Ed25519, with at most `inFlight` verifications handed to it at once; the rest wait
 * in order. WebCrypto verifies on a thread pool (libuv's four threads in Node) while the
 * pipeline's own work runs on the calling thread: with more verifications queued than the
 * machine has spare cores, the pool's threads take the calling thread's core and the whole
 * pipeline slows down. A host sets `inFlight` to its core count minus one.
 *
 * @throws RangeError when `inFlight` is not a positive integer.
 */
export function limitVerifications(ed: Ed25519, inFlight: number): Ed25519 {
  if (!Number.isInteger(inFlight) || inFlight < 1)
    throw new RangeError('inFlight must be a positive integer');
  let running = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    running--;
    const next = waiting.shift();
    if (next !== undefined) {
      running++;
      next();
    }
  };
  return {
    generate: (o) => ed.generate(o),
    fromSeed: (seed, o) => ed.fromSeed(seed, o),
    exportSeed: (key) => ed.exportSeed(key),
    async verify(publicKey, msg, sig) {
      if (running >= inFlight) await new Promise<void>((resolve) => waiting.push(resolve));
      else running++;
      try {
        return await ed.verify(publicKey, msg, sig);
      } finally {
        release();
      }
    },
  };
}
