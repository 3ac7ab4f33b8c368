import * as mls from 'ts-mls';
import { describe, expect, it } from 'vitest';
import { webRng } from '../ports/env.js';
import {
  type Kit,
  addOf,
  commit,
  epochSecrets,
  join,
  kit,
  member,
  processCommit,
  removeOf,
} from './scale.testkit.js';
import { ciphersuite } from './suite.js';

describe('the ciphersuite with synchronous hashes', () => {
  it('gives the same bytes as the stock WebCrypto provider', async () => {
    const stock = (await kit(mls)).cs;
    const fast = await ciphersuite();
    for (let i = 0; i < 20; i++) {
      const a = webRng.randomBytes(i * 7);
      const b = webRng.randomBytes(32 + i);
      expect(await fast.hash.digest(a)).toEqual(await stock.hash.digest(a));
      expect(await fast.hash.mac(b, a)).toEqual(await stock.hash.mac(b, a));
      const mac = await stock.hash.mac(b, a);
      expect(await fast.hash.verifyMac(b, mac, a)).toBe(true);
      mac[0] = (mac[0] as number) ^ 1;
      expect(await fast.hash.verifyMac(b, mac, a)).toBe(false);
      const salt = webRng.randomBytes(32);
      const prk = await stock.kdf.extract(salt, b);
      expect(await fast.kdf.extract(salt, b)).toEqual(prk);
      expect(await fast.kdf.expand(prk, a, 16 + i)).toEqual(await stock.kdf.expand(prk, a, 16 + i));
    }
    // An empty salt means a hash-length salt of zeros (RFC 5869), as the stock provider takes it.
    const ikm = webRng.randomBytes(32);
    expect(await fast.kdf.extract(new Uint8Array(0), ikm)).toEqual(
      await stock.kdf.extract(new Uint8Array(32), ikm),
    );
  });

  it('members on either provider share one group: same epoch secrets, each processes the others’ commits', async () => {
    const stockKit = await kit(mls);
    const fastKit: Kit = { ...stockKit, cs: await ciphersuite() };
    const [creator, a, b] = [await member(fastKit), await member(stockKit), await member(fastKit)];
    let c = await mls.createGroup(
      new Uint8Array(16).fill(3),
      creator.publicPackage,
      creator.privatePackage,
      [],
      fastKit.cs,
      fastKit.config,
    );
    const added = await commit(fastKit, c, [addOf(a), addOf(b)]);
    c = added.state;
    let sa = await join(stockKit, added.welcome as Uint8Array, a);
    let sb = await join(fastKit, added.welcome as Uint8Array, b);
    expect(epochSecrets(sa)).toEqual(epochSecrets(c));
    expect(epochSecrets(sb)).toEqual(epochSecrets(c));
    // A self-update by the stock member, then a removal by a fast one.
    const update = await commit(stockKit, sa, []);
    sa = update.state;
    c = await processCommit(fastKit, c, update.commit);
    sb = await processCommit(fastKit, sb, update.commit);
    expect(epochSecrets(c)).toEqual(epochSecrets(sa));
    const removal = await commit(fastKit, sb, [removeOf(0)]);
    sb = removal.state;
    sa = await processCommit(stockKit, sa, removal.commit);
    expect(epochSecrets(sa)).toEqual(epochSecrets(sb));
  });
});
