/** Wall-clock time, in milliseconds since the Unix epoch. A port so tests control time. */
export interface Clock {
  now(): number;
}

/** Cryptographically secure random bytes. */
export interface Rng {
  randomBytes(n: number): Uint8Array;
}

export const systemClock: Clock = { now: () => Date.now() };

export const webRng: Rng = {
  randomBytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    // getRandomValues fills at most 65536 bytes per call.
    for (let o = 0; o < n; o += 65536)
      globalThis.crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
    return out;
  },
};
