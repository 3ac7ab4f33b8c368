import { describe, expect, it } from 'vitest';
import type { Ed25519 } from '../ports/crypto.js';
import { webRng } from '../ports/env.js';
import { limitVerifications } from './ed25519-limit.js';
import { webCryptoEd25519 } from './ed25519-webcrypto.js';
import { runEd25519Tests } from './ed25519.conformance.js';

runEd25519Tests('webcrypto, one verification at a time', () => limitVerifications(webCryptoEd25519(), 1));

describe('limited verifications', () => {
  it('never has more than the limit in flight, and answers every call in full', async () => {
    const inner = webCryptoEd25519();
    let now = 0;
    let peak = 0;
    const counting: Ed25519 = {
      ...inner,
      async verify(k, m, s) {
        peak = Math.max(peak, ++now);
        try {
          return await inner.verify(k, m, s);
        } finally {
          now--;
        }
      },
    };
    const limited = limitVerifications(counting, 2);
    const key = await inner.generate();
    const msgs = Array.from({ length: 40 }, () => webRng.randomBytes(50));
    const sigs = await Promise.all(msgs.map((m) => key.sign(m)));
    const results = await Promise.all(
      msgs.map((m, i) =>
        limited.verify(key.publicKey, m, i % 3 === 0 ? webRng.randomBytes(64) : (sigs[i] as Uint8Array)),
      ),
    );
    expect(results).toEqual(msgs.map((_, i) => i % 3 !== 0));
    expect(peak).toBe(2);
    expect(() => limitVerifications(inner, 0)).toThrow(RangeError);
  });
});
