import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { webCryptoAead } from '../ports/aead.js';
import { SealError } from '../protocol/errors.js';
import { toHex } from '../protocol/ids.js';
import { nodeAead } from './aead.node.js';
import { sha256 } from './sha256.js';
import { nodeSha256 } from './sha256.node.js';
import { World } from '../core/scenario.js';
import { testReplica } from '../core/testkit.js';
import { runEd25519Tests } from './ed25519.conformance.js';
import { crashVerifierThreadsForTests, nodeEd25519 } from './ed25519.node.js';

runEd25519Tests('node (verifier threads)', () => nodeEd25519());

describe('the Node host verifier threads', () => {
  it('answer every signature right when threads crash with batches unanswered, and start again', async () => {
    const ed = nodeEd25519();
    const keys = await Promise.all([ed.generate(), ed.generate(), ed.generate()]);
    const items = await Promise.all(
      Array.from({ length: 120 }, async (_, i) => {
        const key = keys[i % keys.length] as (typeof keys)[number];
        const msg = new TextEncoder().encode(`message ${i}`);
        const sig = await key.sign(msg);
        // Every third signature is for another message: it must verify false.
        return {
          key,
          msg: i % 3 === 0 ? new TextEncoder().encode(`other ${i}`) : msg,
          sig,
          valid: i % 3 !== 0,
        };
      }),
    );
    const answers = items.map((x) => ed.verify(x.key.publicKey, x.msg, x.sig));
    // The batches leave on the next turn of the event loop; crash the threads right after.
    await new Promise((r) => setImmediate(r));
    const crashed = await crashVerifierThreadsForTests();
    expect(crashed).toBeGreaterThan(0);
    expect(await Promise.all(answers)).toEqual(items.map((x) => x.valid));
    // New threads serve what comes next.
    const again = await Promise.all(items.map((x) => ed.verify(x.key.publicKey, x.msg, x.sig)));
    expect(again).toEqual(items.map((x) => x.valid));
  });
});

describe('the Node host crypto', () => {
  it('AES-GCM: the same bytes as WebCrypto both ways, and tampering is refused', async () => {
    const web = webCryptoAead();
    const node = nodeAead();
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.nat(),
        async (key, nonce, ad, plain, flip) => {
          const a = await node.encrypt(key, nonce, ad, plain);
          const b = await web.encrypt(key, nonce, ad, plain);
          expect(toHex(a)).toBe(toHex(b));
          expect(toHex(await node.decrypt(key, nonce, ad, b))).toBe(toHex(plain));
          expect(toHex(node.decryptSync?.(key, nonce, ad, b) ?? new Uint8Array(0))).toBe(toHex(plain));
          expect(toHex(await web.decrypt(key, nonce, ad, a))).toBe(toHex(plain));
          const bad = a.slice();
          const i = flip % bad.length;
          bad[i] = (bad[i] as number) ^ 1;
          await expect(node.decrypt(key, nonce, ad, bad)).rejects.toBeInstanceOf(SealError);
          expect(() => node.decryptSync?.(key, nonce, ad, bad)).toThrow(SealError);
          await expect(node.decrypt(key, nonce, new Uint8Array([...ad, 0]), a)).rejects.toBeInstanceOf(
            SealError,
          );
        },
      ),
      { numRuns: 200 },
    );
    await expect(
      node.decrypt(new Uint8Array(16), new Uint8Array(12), new Uint8Array(0), new Uint8Array(40)),
    ).rejects.toBeInstanceOf(SealError);
    await expect(
      node.decrypt(new Uint8Array(32), new Uint8Array(12), new Uint8Array(0), new Uint8Array(5)),
    ).rejects.toBeInstanceOf(SealError);
    expect(node.decryptSync).toBeDefined();
    expect(() =>
      node.decryptSync?.(new Uint8Array(16), new Uint8Array(12), new Uint8Array(0), new Uint8Array(40)),
    ).toThrow(SealError);
  });

  it('SHA-256: the same digest as the pure-JS one', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (data) => {
        expect(toHex(nodeSha256(data))).toBe(toHex(sha256(data)));
      }),
      { numRuns: 200 },
    );
    expect(toHex(nodeSha256(new TextEncoder().encode('abc')))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('a replica on the Node host crypto accepts what WebCrypto replicas sealed, and reaches the same state', async () => {
    const w = await World.create(['alice', 'bob']);
    const { chat, ops } = await w.setUp();
    const post = await w.post('bob', chat, 'hello from a WebCrypto replica');
    const node = await testReplica(w.space, w.group, {
      clock: w.clock,
      aead: nodeAead(),
      sha256: nodeSha256,
    });
    for (const op of [...ops, post]) expect((await node.accept(op.sealed)).kind).toBe('accepted');
    await w.deliver('alice', post);
    expect(toHex(node.state.canonicalState())).toBe(toHex(w.replica('alice').state.canonicalState()));
    expect(node.currentHeads().map(toHex)).toEqual(w.replica('alice').currentHeads().map(toHex));
  });
});
