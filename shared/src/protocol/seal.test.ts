/**
 * Sealing and opening over the whole range of op sizes and epoch numbers: every op the sealer
 * takes comes back out of `decodeSealed` and `openWith` unchanged, in the smallest bucket that
 * holds it. (The top bucket's envelopes were once refused by the decoder's string limit.)
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { webCryptoAead } from '../ports/aead.js';
import { type TopicId, equalBytes } from './ids.js';
import { MAX_OP_BYTES, SEAL_BUCKETS } from './limits.js';
import { NONCE_BYTES, decodeSealed, looksSealed, openWith, sealWith } from './seal.js';

const aead = webCryptoAead();
const topic = new Uint8Array(32).fill(0x3c) as TopicId;
const key = new Uint8Array(32).fill(0x11);
const nonce = new Uint8Array(NONCE_BYTES).fill(0x22);

async function roundTrip(size: number, epoch: number, fill: number): Promise<number> {
  const op = new Uint8Array(size).fill(fill);
  const e = { epoch, commitHash: new Uint8Array(32).fill(0x33) };
  const sealed = await sealWith(aead, op, topic, e, key, nonce);
  expect(SEAL_BUCKETS).toContain(sealed.length);
  expect(looksSealed(sealed)).toBe(true);
  const env = decodeSealed(sealed);
  expect(env.epoch.epoch).toBe(epoch);
  // (equalBytes: a deep equality over 64 KiB arrays would be most of this test's time.)
  expect(equalBytes(await openWith(aead, env, key), op)).toBe(true);
  return sealed.length;
}

describe('seal and open', () => {
  it('round-trips an op of any size up to the largest, at any epoch', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: MAX_OP_BYTES }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: 255 }),
        async (size, epoch, fill) => {
          await roundTrip(size, epoch, fill);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('fills each bucket to its edge: the largest op of every bucket, and the largest op of all', async () => {
    for (const epoch of [0, 24, Number.MAX_SAFE_INTEGER]) {
      expect(await roundTrip(MAX_OP_BYTES, epoch, 0xab)).toBe(64 * 1024);
      for (const bucket of SEAL_BUCKETS) {
        // The first size that does not fit a bucket lands in the next one.
        let lo = 0;
        let hi = MAX_OP_BYTES;
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2);
          if ((await roundTrip(mid, epoch, 1)) <= bucket) lo = mid;
          else hi = mid - 1;
        }
        expect(await roundTrip(lo, epoch, 2)).toBe(bucket);
        if (bucket !== 64 * 1024) expect(await roundTrip(lo + 1, epoch, 3)).toBeGreaterThan(bucket);
      }
    }
  });
});
