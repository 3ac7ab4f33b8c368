/**
 * Our patches to ts-mls 1.6.4 (patches/ts-mls+1.6.4+00N+*.patch, applied by patch-package at
 * install): each test below fails on the untouched library, which is installed beside it as
 * `ts-mls-stock`. The last tests run both libraries in one group over random epochs: every
 * member, patched or stock, must derive the same epoch secrets and read each other's messages.
 *
 * The touched parts are also checked against the stock implementation on real trees (tree
 * hashes, parent-hash verification, secret-tree keys); the RFC 9420 passive-client test vectors,
 * which exercise them end to end, run in `vectors.test.ts` on both libraries.
 */
import type { ClientState, Hash, Kdf, Proposal, RatchetTree, SecretTree } from 'ts-mls';
import { encode } from 'ts-mls/codec/tlsEncoder.js';
import type { ReuseGuard, SenderData } from 'ts-mls/sender.js';
import { toLeafIndex } from 'ts-mls/treemath.js';
import * as enumHelpers from 'ts-mls/util/enumHelpers.js';
import * as stockClientState from 'ts-mls-stock/clientState.js';
import * as stockEnumHelpers from 'ts-mls-stock/util/enumHelpers.js';
import * as stockParentHash from 'ts-mls-stock/parentHash.js';
import * as stockRatchetTree from 'ts-mls-stock/ratchetTree.js';
import * as stockSecretTree from 'ts-mls-stock/secretTree.js';
import * as stockTreeHash from 'ts-mls-stock/treeHash.js';
import * as clientState from 'ts-mls/clientState.js';
import * as parentHash from 'ts-mls/parentHash.js';
import * as ratchetTree from 'ts-mls/ratchetTree.js';
import * as secretTree from 'ts-mls/secretTree.js';
import * as treeHash from 'ts-mls/treeHash.js';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Kit,
  type Member,
  addOf,
  batchGroup,
  commit,
  epochSecrets,
  join,
  kit,
  leafOf,
  loadMls,
  member,
  members,
  processCommit,
  removeOf,
} from './scale.testkit.js';

let P: Kit;
let S: Kit;

beforeAll(async () => {
  P = await kit(await loadMls('patched'));
  S = await kit(await loadMls('stock'));
});

function countingHash(h: Hash): { hash: Hash; digests: () => number } {
  let n = 0;
  return {
    hash: {
      digest: (d) => {
        n++;
        return h.digest(d);
      },
      mac: (k, d) => h.mac(k, d),
      verifyMac: (k, m, d) => h.verifyMac(k, m, d),
    },
    digests: () => n,
  };
}

function countingKdf(kdf: Kdf): { kdf: Kdf; expands: () => number } {
  let n = 0;
  return {
    kdf: {
      size: kdf.size,
      extract: (s, i) => kdf.extract(s, i),
      expand: (p, i, l) => {
        n++;
        return kdf.expand(p, i, l);
      },
    },
    expands: () => n,
  };
}

/**
 * A group of `n` members whose tree has keys: the creator removes two members, the receiver
 * (a member in the middle of the tree) updates, then members are added at two places, which
 * leaves parents with different unmerged leaves.
 */
async function populated(n: number): Promise<{ creator: ClientState; receiver: ClientState; late: Member }> {
  const creatorM = await member(P);
  const others = await members(P, n - 1);
  const built = await batchGroup(P, creatorM, others);
  let creator = built.creator;
  let receiver = await join(P, built.welcome, others[Math.floor(n / 2)] as Member);
  const r1 = await commit(P, creator, [removeOf(1), removeOf(n - 3)]);
  creator = r1.state;
  receiver = await processCommit(P, receiver, r1.commit);
  const r2 = await commit(P, receiver, []);
  receiver = r2.state;
  creator = await processCommit(P, creator, r2.commit);
  const late = await members(P, 2);
  const r3 = await commit(P, creator, late.map(addOf));
  creator = r3.state;
  receiver = await processCommit(P, receiver, r3.commit);
  return { creator, receiver, late: late[0] as Member };
}

/** Deep equality as a boolean: a failing diff of two trees takes minutes to print. */
function same(a: unknown, b: unknown): boolean {
  const text = (x: unknown) => JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  return text(a) === text(b);
}

function parentsWithUnmerged(tree: RatchetTree): number {
  return tree.filter((n) => n?.nodeType === 'parent' && n.parent.unmergedLeaves.length > 0).length;
}

describe('patch 001: memoised tree hashes and parent-hash verification in one pass', () => {
  let tree: RatchetTree;
  beforeAll(async () => {
    tree = (await populated(40)).receiver.ratchetTree;
  });

  it('hashes a tree it has hashed before without a digest, with the stock result', async () => {
    const expected = await stockTreeHash.treeHashRoot(tree, S.cs.hash);
    const c = countingHash(P.cs.hash);
    expect(await treeHash.treeHashRoot(tree, c.hash)).toEqual(expected);
    expect(c.digests()).toBe(tree.length);
    expect(await treeHash.treeHashRoot(tree.slice(), c.hash)).toEqual(expected);
    // Stock: one digest per node on every call.
    expect(c.digests()).toBe(tree.length);
  });

  it('rehashes only the path of a changed leaf', async () => {
    const c = countingHash(P.cs.hash);
    await treeHash.treeHashRoot(tree, c.hash);
    const leaf = tree[4];
    if (leaf?.nodeType !== 'leaf') throw new Error('expected a leaf at node 4');
    const changed = tree.slice();
    changed[4] = { nodeType: 'leaf', leaf: { ...leaf.leaf, signature: new Uint8Array(64) } };
    const before = c.digests();
    const hash = await treeHash.treeHashRoot(changed, c.hash);
    expect(hash).toEqual(await stockTreeHash.treeHashRoot(changed, S.cs.hash));
    expect(c.digests() - before).toBe(Math.log2(tree.length + 1));
  });

  it('verifies parent hashes with O(N) digests, agreeing with stock on good and broken trees', async () => {
    expect(parentsWithUnmerged(tree)).toBeGreaterThan(0);
    const stockCount = countingHash(S.cs.hash);
    const ok = countingHash(P.cs.hash);
    expect(await stockParentHash.verifyParentHashes(tree, stockCount.hash)).toBe(true);
    expect(await parentHash.verifyParentHashes(tree, ok.hash)).toBe(true);
    // Stock rehashes a sibling subtree per leaf walk step (N log N and more); patched hashes
    // each node once and each non-blank node's link once.
    expect(ok.digests()).toBeLessThanOrEqual(2 * tree.length);
    expect(stockCount.digests()).toBeGreaterThan(4 * tree.length);

    const broken = tree.map((n) =>
      n?.nodeType === 'parent'
        ? { nodeType: 'parent' as const, parent: { ...n.parent, parentHash: new Uint8Array(32) } }
        : n,
    );
    expect(await stockParentHash.verifyParentHashes(broken, S.cs.hash)).toBe(false);
    expect(await parentHash.verifyParentHashes(broken, P.cs.hash)).toBe(false);
  });

  it('removeLeaves keeps the nodes it does not change', () => {
    // (Booleans, not the trees: a failing diff of two trees takes minutes to print.)
    expect(ratchetTree.removeLeaves(tree, []) === tree).toBe(true);
    const unmerged = tree.find((n) => n?.nodeType === 'parent' && n.parent.unmergedLeaves.length > 0);
    if (unmerged?.nodeType !== 'parent') throw new Error('expected unmerged leaves');
    const gone = toLeafIndex(unmerged.parent.unmergedLeaves[0] as number);
    const removed = ratchetTree.removeLeaves(tree, [gone]);
    const stock = stockRatchetTree.removeLeaves(tree, [gone]);
    expect(same(removed, stock)).toBe(true);
    const kept = tree.filter(
      (n, i) => n?.nodeType === 'parent' && !n.parent.unmergedLeaves.includes(gone) && removed[i] === n,
    ).length;
    expect(kept).toBe(
      tree.filter((n) => n?.nodeType === 'parent' && !n.parent.unmergedLeaves.includes(gone)).length,
    );
  });
});

describe('patch 002: lazy secret tree', () => {
  const secret = new Uint8Array(32).fill(7);
  const senderData = (leafIndex: number, generation: number): SenderData => ({
    leafIndex,
    generation,
    reuseGuard: new Uint8Array([1, 2, 3, 4]) as ReuseGuard,
  });
  const retention = { retainKeysForGenerations: 10, retainKeysForEpochs: 4, maximumForwardRatchetSteps: 200 };

  it('derives nothing at creation and about 2·log N expansions per first use of a leaf', async () => {
    const c = countingKdf(P.cs.kdf);
    const tree = await secretTree.createSecretTree(64, secret, c.kdf);
    expect(c.expands()).toBe(0);
    const cs = { ...P.cs, kdf: c.kdf };
    await secretTree.ratchetToGeneration(tree, senderData(5, 0), 'application', retention, cs);
    // 2 per level (left, right) + 2 ratchet roots + key, nonce and the next ratchet secret.
    expect(c.expands()).toBe(2 * 6 + 2 + 3);
    // Stock derives every node and both ratchet roots of each.
    const eager = countingKdf(S.cs.kdf);
    await stockSecretTree.createSecretTree(64, secret, eager.kdf);
    expect(eager.expands()).toBe(126 + 2 * 127);
  });

  it('gives every leaf the keys stock gives it, and deletes the secrets it expanded', async () => {
    const stockTree = await stockSecretTree.createSecretTree(12, secret, S.cs.kdf);
    let lazy: SecretTree = await secretTree.createSecretTree(12, secret, P.cs.kdf);
    for (const leaf of [11, 0, 5, 6, 3]) {
      for (const contentType of ['application', 'commit'] as const) {
        const want = await stockSecretTree.ratchetToGeneration(
          stockTree,
          senderData(leaf, 2),
          contentType,
          retention,
          S.cs,
        );
        const got = await secretTree.ratchetToGeneration(
          lazy,
          senderData(leaf, 2),
          contentType,
          retention,
          P.cs,
        );
        expect(got.key).toEqual(want.key);
        expect(got.nonce).toEqual(want.nonce);
        lazy = got.newTree;
      }
    }
    const rootIndex = 15;
    expect(lazy[rootIndex]).toBeUndefined();
    expect(secret.every((b) => b === 7)).toBe(true);
  });

  it('saves and loads a lazy tree, and loads a tree saved by stock', async () => {
    const lazy = (
      await secretTree.ratchetToGeneration(
        await secretTree.createSecretTree(9, secret, P.cs.kdf),
        senderData(4, 1),
        'application',
        retention,
        P.cs,
      )
    ).newTree;
    const bytes = encode(secretTree.secretTreeEncoder)(lazy);
    const decoded = secretTree.decodeSecretTree(bytes, 0)?.[0];
    expect(same(decoded, lazy)).toBe(true);
    if (decoded === undefined) throw new Error('undecodable');
    for (const leaf of [4, 8, 0]) {
      const a = await secretTree.ratchetToGeneration(
        lazy,
        senderData(leaf, 3),
        'application',
        retention,
        P.cs,
      );
      const b = await secretTree.ratchetToGeneration(
        decoded,
        senderData(leaf, 3),
        'application',
        retention,
        P.cs,
      );
      expect(b.key).toEqual(a.key);
    }
    const stockTree = await stockSecretTree.createSecretTree(9, secret, S.cs.kdf);
    const fromStock = secretTree.decodeSecretTree(
      encode(stockSecretTree.secretTreeEncoder)(stockTree),
      0,
    )?.[0];
    if (fromStock === undefined) throw new Error('undecodable stock tree');
    const want = await stockSecretTree.ratchetToGeneration(
      stockTree,
      senderData(8, 0),
      'commit',
      retention,
      S.cs,
    );
    const got = await secretTree.ratchetToGeneration(fromStock, senderData(8, 0), 'commit', retention, P.cs);
    expect(got.key).toEqual(want.key);
  });
});

describe('patch 003: iterative vector encoder', () => {
  it('encodes a 12,000-leaf tree, which overflows the stock encoder', async () => {
    const small = (await populated(6)).creator.ratchetTree;
    const leaf = small[0];
    if (leaf?.nodeType !== 'leaf') throw new Error('expected a leaf');
    const big: RatchetTree = Array.from({ length: 2 * 12_000 - 1 }, (_, i) =>
      i % 2 === 0 ? leaf : undefined,
    );
    expect(() => stockRatchetTree.encodeRatchetTree(big)).toThrow(RangeError);
    const bytes = ratchetTree.encodeRatchetTree(big);
    const back = ratchetTree.decodeRatchetTree(bytes, 0)?.[0];
    expect(back?.filter((n) => n !== undefined)).toHaveLength(12_000);
  });
});

describe('patch 004: join validation', () => {
  it('checks leaf signatures and credentials concurrently, hashing the tree meanwhile', async () => {
    const n = 24;
    const creatorM = await member(P);
    const others = await members(P, n - 1);
    const built = await batchGroup(P, creatorM, others);
    const peak = async (k: Kit) => {
      let inFlight = 0;
      let max = 0;
      let hashedMeanwhile = 0;
      let verifying = 0;
      const kk: Kit = {
        ...k,
        cs: {
          ...k.cs,
          signature: {
            sign: (key, m) => k.cs.signature.sign(key, m),
            keygen: () => k.cs.signature.keygen(),
            async verify(key, m, sig) {
              verifying++;
              try {
                return await k.cs.signature.verify(key, m, sig);
              } finally {
                verifying--;
              }
            },
          },
          hash: {
            digest: (d) => {
              if (inFlight > 0 || verifying > 0) hashedMeanwhile++;
              return k.cs.hash.digest(d);
            },
            mac: (key, d) => k.cs.hash.mac(key, d),
            verifyMac: (key, m, d) => k.cs.hash.verifyMac(key, m, d),
          },
        },
        config: {
          ...k.config,
          authService: {
            async validateCredential(c, key) {
              inFlight++;
              max = Math.max(max, inFlight);
              await new Promise((r) => setTimeout(r, 20));
              inFlight--;
              return k.config.authService.validateCredential(c, key);
            },
          },
        },
      };
      await join(kk, built.welcome, others[3] as Member);
      return { max, hashedMeanwhile };
    };
    expect(await peak(S)).toEqual({ max: 1, hashedMeanwhile: 0 });
    const patched = await peak(P);
    // All started before the first returns, give or take those whose signature check is slow.
    expect(patched.max).toBeGreaterThan(n / 2);
    // The tree hash (one digest per node of the 32-leaf tree) runs while the checks wait.
    expect(patched.hashedMeanwhile).toBeGreaterThanOrEqual(63);
  });

  it('lets a member join after adds at two places, which stock refuses', async () => {
    const { creator, late } = await populated(20);
    expect(parentsWithUnmerged(creator.ratchetTree)).toBeGreaterThan(1);
    const another = await member(P);
    const made = await commit(P, creator, [addOf(another)]);
    if (made.welcome === undefined) throw new Error('no Welcome');
    await expect(join(S, made.welcome, another)).rejects.toThrow(/unmerged_leaves/);
    const joined = await join(P, made.welcome, another);
    expect(epochSecrets(joined)).toEqual(epochSecrets(made.state));
    expect(late.publicPackage).toBeDefined();
  });

  it('still refuses an unmerged leaf missing from a node between it and its listing ancestor', async () => {
    const { creator } = await populated(20);
    const tree = creator.ratchetTree;
    const gc = creator.groupContext;
    const cfg = P.config.lifetimeConfig;
    expect(
      await clientState.validateRatchetTree(tree, gc, cfg, P.config.authService, gc.treeHash, P.cs),
    ).toBeUndefined();
    // Drop an unmerged leaf listed by two parents from the lower one, keep it above.
    const listing = new Map<number, number[]>();
    for (const [i, n] of tree.entries()) {
      if (n?.nodeType !== 'parent') continue;
      for (const l of n.parent.unmergedLeaves) listing.set(l, [...(listing.get(l) ?? []), i]);
    }
    const twice = [...listing.values()].find((at) => at.length > 1) ?? [];
    const level = (i: number) => Math.log2((i ^ (i + 1)) + 1) - 1;
    const lowest = twice.reduce((a, b) => (level(a) <= level(b) ? a : b), twice[0] ?? -1);
    const node = tree[lowest];
    if (node?.nodeType !== 'parent') throw new Error('expected a parent with unmerged leaves');
    const tampered = tree.slice();
    tampered[lowest] = { nodeType: 'parent', parent: { ...node.parent, unmergedLeaves: [] } };
    const err = await clientState.validateRatchetTree(
      tampered,
      gc,
      cfg,
      P.config.authService,
      gc.treeHash,
      P.cs,
    );
    expect(err?.message).toMatch(/unmerged_leaves/);
    expect(stockClientState.validateRatchetTree).toBeTypeOf('function');
  });
});

describe('patch 005: enum reverse maps built once', () => {
  it('decodes enum values as stock does, from one reverse map per enum', () => {
    const enums: Record<string, number>[] = [
      { basic: 1, x509: 2 },
      { reserved: 0, leaf: 1, parent: 2 },
      { a: 1, b: 2, c: 2, d: 0x0a0a },
    ];
    for (const e of enums) {
      expect(enumHelpers.reverseMap(e) === enumHelpers.reverseMap(e)).toBe(true);
      // Stock rebuilds the map (a spread per entry) on every call.
      expect(stockEnumHelpers.reverseMap(e) === stockEnumHelpers.reverseMap(e)).toBe(false);
      const patched = enumHelpers.enumNumberToKey(e);
      const stock = stockEnumHelpers.enumNumberToKey(e);
      for (const n of [0, 1, 2, 3, 0x0a0a, 65535, -1, 1.5]) expect(patched(n)).toBe(stock(n));
    }
  });
});

describe('patched and stock members in one group', () => {
  function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  interface Seat {
    readonly k: Kit;
    state: ClientState;
  }

  async function send(from: Seat, to: Seat[], text: string): Promise<void> {
    const m = await from.k.mls.createApplicationMessage(
      from.state,
      new TextEncoder().encode(text),
      from.k.cs,
    );
    from.state = m.newState;
    const bytes = from.k.mls.encodeMlsMessage({
      privateMessage: m.privateMessage,
      wireformat: 'mls_private_message',
      version: 'mls10',
    });
    for (const s of to) {
      const msg = s.k.mls.decodeMlsMessage(bytes, 0)?.[0];
      if (msg?.wireformat !== 'mls_private_message') throw new Error('undecodable');
      const r = await s.k.mls.processMessage(msg, s.state, s.k.mls.emptyPskIndex, () => 'accept', s.k.cs);
      if (r.kind !== 'applicationMessage') throw new Error('not an application message');
      expect(new TextDecoder().decode(r.message)).toBe(text);
      s.state = r.newState;
    }
  }

  it('agree on every epoch secret and read each other over random epochs', async () => {
    const seed = Number(process.env.PATCH_TEST_SEED ?? Date.now() % 1_000_000);
    console.log(`patched/stock interop seed ${seed} (PATCH_TEST_SEED to replay)`);
    const random = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const creatorM = await member(P);
    const others = await members(P, 9);
    const built = await batchGroup(P, creatorM, others);
    const seats: Seat[] = [{ k: P, state: built.creator }];
    for (const [i, m] of others.entries()) {
      const k = i % 2 === 0 ? S : P;
      seats.push({ k, state: await join(k, built.welcome, m) });
    }
    for (let epoch = 0; epoch < 10; epoch++) {
      const committer = pick(seats);
      const roll = random();
      let proposals: Proposal[];
      let added: Member[] = [];
      if (roll < 0.3) {
        added = await members(P, 1 + Math.floor(random() * 2));
        proposals = added.map(addOf);
      } else if (roll < 0.6 && seats.length > 5) {
        const victim = pick(seats.filter((s) => s !== committer));
        proposals = [removeOf(leafOf(victim.state))];
        seats.splice(seats.indexOf(victim), 1);
      } else {
        proposals = [];
      }
      const made = await commit(committer.k, committer.state, proposals);
      committer.state = made.state;
      for (const s of seats) if (s !== committer) s.state = await processCommit(s.k, s.state, made.commit);
      for (const m of added) {
        if (made.welcome === undefined) throw new Error('no Welcome');
        seats.push({ k: P, state: await join(P, made.welcome, m) });
      }
      const want = epochSecrets(committer.state);
      for (const s of seats) expect(epochSecrets(s.state)).toEqual(want);

      const tree = committer.state.ratchetTree;
      expect(await treeHash.treeHashRoot(tree, P.cs.hash)).toEqual(
        await stockTreeHash.treeHashRoot(tree, S.cs.hash),
      );
      expect(await parentHash.verifyParentHashes(tree, P.cs.hash)).toBe(true);
      expect(await stockParentHash.verifyParentHashes(tree, S.cs.hash)).toBe(true);

      const sender = pick(seats);
      await send(
        sender,
        seats.filter((s) => s !== sender),
        `epoch ${want.epoch ?? '?'}`,
      );
      // A patched member saves and reloads its state (lazy secret tree inside) and reads on.
      const saver = seats.find((s) => s.k === P && s !== sender);
      if (saver !== undefined) {
        const decoded = P.mls.decodeGroupState(P.mls.encodeGroupState(saver.state), 0)?.[0];
        if (decoded === undefined) throw new Error('undecodable state');
        saver.state = { ...decoded, clientConfig: saver.state.clientConfig };
        await send(
          saver,
          seats.filter((s) => s !== saver),
          `reloaded at ${want.epoch ?? '?'}`,
        );
      }
    }
  });
});
