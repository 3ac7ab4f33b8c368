/**
 * The relay's one check of a mailbox message (envelope.ts), against what peers send: sealed ops
 * are checked, and an MLS handshake envelope is stored whatever its length, even one that
 * happens to be a padding bucket's.
 */
import { describe, expect, it } from 'vitest';
import { webCryptoAead } from '../../shared/src/ports/aead.js';
import { handshakeTopicId, topicId } from '../../shared/src/crypto/sha256.js';
import { testEpoch, testSpaceId } from '../../shared/src/core/testkit.js';
import { decodeHandshake, sealHandshake } from '../../shared/src/mls/envelope.js';
import { isSealedOp } from '../../shared/src/net/space-sync.js';
import { SEAL_BUCKETS } from '../../shared/src/protocol/limits.js';
import { looksSealed } from '../../shared/src/protocol/seal.js';
import { envelopeProblem } from './envelope.js';
import { fakeSealed, sealedMessage } from './testing/util.js';

const space = testSpaceId(3);
const ops = topicId(space);
const handshakes = handshakeTopicId(space);

/** A real handshake envelope (`sealHandshake`) exactly `size` bytes long. */
async function handshakeOf(size: number): Promise<Uint8Array> {
  const aead = webCryptoAead();
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(12).fill(1);
  for (let n = size; n > 0; n--) {
    const bytes = await sealHandshake(
      aead,
      handshakes,
      testEpoch(2),
      key,
      nonce,
      new Uint8Array(n).fill(n & 0xff),
    );
    if (bytes.length === size) return bytes;
    if (bytes.length < size) break;
  }
  throw new Error(`no handshake is ${size} bytes long`);
}

describe('envelopeProblem', () => {
  it('stores an MLS handshake of every padding bucket’s length, and peers do not take it for an op', async () => {
    for (const size of SEAL_BUCKETS) {
      const h = await handshakeOf(size);
      expect(h.length).toBe(size);
      expect(decodeHandshake(h).topic).toEqual(handshakes);
      expect(looksSealed(h)).toBe(false);
      expect(envelopeProblem(handshakes, h)).toBeUndefined();
      expect(isSealedOp(h, handshakes)).toBe(false);
    }
  });

  it('checks what presents itself as a sealed op: its own topic passes, another topic or broken CBOR does not', () => {
    for (const size of SEAL_BUCKETS) {
      const own = sealedMessage(ops, 1, size);
      expect(envelopeProblem(ops, own)).toBeUndefined();
      expect(isSealedOp(own, ops)).toBe(true);
      expect(envelopeProblem(handshakes, own)).toBe('sealed op of another topic');
      expect(envelopeProblem(ops, fakeSealed(ops, size))).toBe('malformed sealed op');
    }
  });

  it('leaves a message with a sealed op’s head alone when its length is no padding bucket’s', () => {
    const odd = fakeSealed(ops, 1000);
    expect(looksSealed(odd)).toBe(false);
    expect(envelopeProblem(ops, odd)).toBeUndefined();
  });
});
