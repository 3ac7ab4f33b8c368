import { sha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compareBytes, concatBytes, toHex } from '../protocol/ids.js';
import type { OpId, SpaceId } from '../protocol/ids.js';
import { StorageError } from './storage.js';
import type { Storage, StoredOp } from './storage.js';

const enc = new TextEncoder();

function spaceId(n: number): SpaceId {
  const b = new Uint8Array(16);
  b[0] = n;
  b[15] = 0xa5;
  return b as SpaceId;
}

/** A well-formed op: `opId` is the SHA-256 of `sealed`, as the store's users guarantee. */
function makeOp(label: string, extra: Uint8Array = new Uint8Array(0)): StoredOp {
  const op = concatBytes(enc.encode(`op ${label}`), extra);
  const sealed = concatBytes(enc.encode('sealed '), op, new Uint8Array([0, 255, 128]));
  return { opId: sha256(sealed) as OpId, sealed, op };
}

/** Ops as hex, so a failure shows which bytes differ. */
function view(
  op: StoredOp | undefined,
): { opId: string; sealed: string; op: string; content: string | null } | undefined {
  return op === undefined
    ? undefined
    : {
        opId: toHex(op.opId),
        sealed: toHex(op.sealed),
        op: toHex(op.op),
        content: op.content === undefined || op.content === null ? null : toHex(op.content),
      };
}

function hexes(ids: readonly Uint8Array[]): string[] {
  return ids.map(toHex);
}

function sortedHexes(ids: readonly Uint8Array[]): string[] {
  return [...ids].sort(compareBytes).map(toHex);
}

async function collect(ops: AsyncIterable<StoredOp>): Promise<StoredOp[]> {
  const out: StoredOp[] = [];
  for await (const op of ops) out.push(op);
  return out;
}

/** What `call` rejected with; fails the test if it throws synchronously or resolves. */
async function rejectionOf(call: () => Promise<unknown>): Promise<unknown> {
  let p: Promise<unknown> = Promise.resolve();
  expect(() => {
    p = call();
  }, 'must reject, not throw synchronously').not.toThrow();
  return p.then(
    (v: unknown) => {
      expect.fail(`expected a rejection, got ${String(v)}`);
    },
    (e: unknown) => e,
  );
}

/**
 * The conformance suite of the `Storage` port: every implementation runs it, so the in-memory
 * double and the real adapters cannot drift. `make` returns a new, empty store each call;
 * each store is closed after its test. Observes only the port's behaviour, never internals.
 */
export function runStorageTests(name: string, make: () => Promise<Storage>): void {
  describe(`Storage conformance: ${name}`, () => {
    const A = spaceId(1);
    const B = spaceId(2);
    let store: Storage;

    beforeEach(async () => {
      store = await make();
    });
    afterEach(async () => {
      await store.close();
    });

    describe('an empty store', () => {
      it('has no ops, heads, Spaces or meta', async () => {
        const op = makeOp('absent');
        expect(await store.getOp(A, op.opId)).toBeUndefined();
        expect(await store.hasOp(A, op.opId)).toBe(false);
        expect(await store.getHeads(A)).toEqual([]);
        expect(await store.countOps(A)).toBe(0);
        expect(await collect(store.listOps(A))).toEqual([]);
        expect(await store.listSpaces()).toEqual([]);
        expect(await store.getMeta('absent')).toBeUndefined();
      });
    });

    describe('ops', () => {
      it('stores an op that getOp, hasOp, getHeads, countOps and listOps then return', async () => {
        const op = makeOp('one');
        expect(await store.putOp(A, op, [op.opId])).toBe(true);
        expect(view(await store.getOp(A, op.opId))).toEqual(view(op));
        expect(await store.hasOp(A, op.opId)).toBe(true);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([op.opId]));
        expect(await store.countOps(A)).toBe(1);
        expect((await collect(store.listOps(A))).map(view)).toEqual([view(op)]);
      });

      it('keeps an op’s opened content with it, and none for an op stored without', async () => {
        const withContent = { ...makeOp('post'), content: Uint8Array.from([0x82, 0x61, 0x68, 0xf6]) };
        const without = makeOp('role');
        const nulled = { ...makeOp('thread'), content: null };
        for (const op of [withContent, without, nulled]) await store.putOp(A, op, [op.opId]);
        for (const op of [withContent, without, nulled])
          expect(view(await store.getOp(A, op.opId))).toEqual(view(op));
        expect((await collect(store.listOps(A))).map(view)).toEqual([withContent, without, nulled].map(view));
        expect(view(await store.getOp(A, withContent.opId))?.content).toBe('826168f6');
      });

      it('answers undefined and false for an unknown id in a known Space', async () => {
        const op = makeOp('known');
        const unknown = makeOp('unknown');
        await store.putOp(A, op, [op.opId]);
        expect(await store.getOp(A, unknown.opId)).toBeUndefined();
        expect(await store.hasOp(A, unknown.opId)).toBe(false);
      });

      it('lists more than 1000 ops in the order stored, not in id order, while the consumer awaits', async () => {
        const ops = Array.from({ length: 1234 }, (_, i) => makeOp(`many ${i}`));
        for (const op of ops) expect(await store.putOp(A, op, [op.opId])).toBe(true);
        expect(await store.countOps(A)).toBe(ops.length);

        const seen: StoredOp[] = [];
        let i = 0;
        for await (const op of store.listOps(A)) {
          seen.push(op);
          // A real consumer awaits other work between items, including writes to the store.
          if (++i % 200 === 0) {
            await new Promise((resolve) => setTimeout(resolve, 0));
            const other = makeOp(`during ${i}`);
            await store.putOp(B, other, [other.opId]);
          }
        }
        expect(seen.map(view)).toEqual(ops.map(view));
        expect(hexes(seen.map((op) => op.opId))).not.toEqual(sortedHexes(ops.map((op) => op.opId)));
        expect(await store.countOps(B)).toBe(Math.floor(ops.length / 200));
      });

      it('lists from the n-th op stored when asked, and nothing from the count on', async () => {
        const ops = Array.from({ length: 7 }, (_, i) => makeOp(`from ${i}`));
        await store.putOps(
          A,
          ops.slice(0, 4),
          ops.slice(3, 4).map((o) => o.opId),
        );
        for (const op of ops.slice(4)) await store.putOp(A, op, [op.opId]);
        for (const from of [0, 1, 3, 4, 6]) {
          expect((await collect(store.listOps(A, from))).map(view)).toEqual(ops.slice(from).map(view));
        }
        expect(await collect(store.listOps(A, 7))).toEqual([]);
        expect(await collect(store.listOps(A, 100))).toEqual([]);
        expect(await collect(store.listOps(B, 2))).toEqual([]);
      });

      it('a duplicate putOp resolves false and changes nothing, not even the heads', async () => {
        const first = makeOp('first');
        const second = makeOp('second');
        await store.putOp(A, first, [first.opId]);
        await store.putOp(A, second, [second.opId]);

        expect(await store.putOp(A, first, [first.opId])).toBe(false);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([second.opId]));
        expect(await store.countOps(A)).toBe(2);
        expect((await collect(store.listOps(A))).map(view)).toEqual([view(first), view(second)]);
        expect(view(await store.getOp(A, first.opId))).toEqual(view(first));
      });

      it('of concurrent putOps of one op, exactly one resolves true', async () => {
        const op = makeOp('racing');
        const others = Array.from({ length: 5 }, (_, i) => makeOp(`racing other ${i}`));
        const results = await Promise.all([
          ...others.map((o) => store.putOp(A, o, [o.opId])),
          ...Array.from({ length: 5 }, () => store.putOp(A, op, [op.opId])),
        ]);
        expect(results.slice(0, 5)).toEqual([true, true, true, true, true]);
        expect(results.slice(5).filter((r) => r)).toHaveLength(1);
        expect(await store.countOps(A)).toBe(6);
        expect(sortedHexes((await collect(store.listOps(A))).map((o) => o.opId))).toEqual(
          sortedHexes([op, ...others].map((o) => o.opId)),
        );
      });
    });

    describe('putOps (a batch in one transaction)', () => {
      it('stores the batch in order, skips ops already there and repeats, and sets the heads once', async () => {
        const [a, b, c, d] = Array.from({ length: 4 }, (_, i) => makeOp(`batch ${i}`)) as [
          StoredOp,
          StoredOp,
          StoredOp,
          StoredOp,
        ];
        const withContent = { ...c, content: Uint8Array.from([0xa1, 0x01, 0x02]) };
        await store.putOp(A, a, [a.opId]);
        expect(await store.putOps(A, [b, a, withContent, b, d], [d.opId, b.opId])).toBe(3);
        expect((await collect(store.listOps(A))).map(view)).toEqual([a, b, withContent, d].map(view));
        expect(view(await store.getOp(A, c.opId))).toEqual(view(withContent));
        expect(hexes(await store.getHeads(A))).toEqual(sortedHexes([d.opId, b.opId]));
        expect(await store.countOps(A)).toBe(4);
        // A batch after a batch goes on from where the first ended.
        const e = makeOp('batch 4');
        expect(await store.putOps(A, [e], [e.opId])).toBe(1);
        expect((await collect(store.listOps(A))).map((o) => toHex(o.opId))).toEqual(
          hexes([a, b, c, d, e].map((o) => o.opId)),
        );
      });

      it('a batch of ops all stored already, or an empty one, changes nothing, not even the heads', async () => {
        const [a, b] = [makeOp('old a'), makeOp('old b')];
        await store.putOps(A, [a, b], [b.opId]);
        expect(await store.putOps(A, [b, a], [a.opId])).toBe(0);
        expect(await store.putOps(A, [], [a.opId])).toBe(0);
        expect(await store.putOps(B, [], [a.opId])).toBe(0);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([b.opId]));
        expect(await store.countOps(A)).toBe(2);
        expect(await store.listSpaces()).toHaveLength(1);
      });
    });

    describe('heads', () => {
      it('are those of the last new op, returned in sorted order whatever the order given', async () => {
        const ops = Array.from({ length: 4 }, (_, i) => makeOp(`head ${i}`));
        const ids = ops.map((op) => op.opId);
        const [op0, op1, op2, op3] = ops as [StoredOp, StoredOp, StoredOp, StoredOp];
        await store.putOp(A, op0, [op0.opId]);
        await store.putOp(A, op1, [op1.opId, op0.opId]);
        expect(hexes(await store.getHeads(A))).toEqual(sortedHexes([op1.opId, op0.opId]));

        const unsorted = [...ids].sort(compareBytes).reverse();
        await store.putOp(A, op2, unsorted);
        expect(hexes(await store.getHeads(A))).toEqual(sortedHexes(ids));

        await store.putOp(A, op3, []);
        expect(await store.getHeads(A)).toEqual([]);
      });

      it('do not change when the array given or returned is mutated', async () => {
        const op = makeOp('mutation');
        const other = makeOp('mutation other');
        const given = [op.opId];
        await store.putOp(A, op, given);
        given.push(other.opId);
        const returned = await store.getHeads(A);
        returned.push(other.opId);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([op.opId]));
      });
    });

    describe('Spaces', () => {
      it('keeps the ops and heads of two Spaces apart', async () => {
        const a = makeOp('in A');
        const b1 = makeOp('in B 1');
        const b2 = makeOp('in B 2');
        await store.putOp(A, a, [a.opId]);
        await store.putOp(B, b1, [b1.opId]);
        await store.putOp(B, b2, [b2.opId, b1.opId]);

        expect(await store.hasOp(A, b1.opId)).toBe(false);
        expect(await store.getOp(A, b1.opId)).toBeUndefined();
        expect(await store.hasOp(B, a.opId)).toBe(false);
        expect(await store.getOp(B, a.opId)).toBeUndefined();
        expect(await store.countOps(A)).toBe(1);
        expect(await store.countOps(B)).toBe(2);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([a.opId]));
        expect(hexes(await store.getHeads(B))).toEqual(sortedHexes([b1.opId, b2.opId]));
        expect((await collect(store.listOps(A))).map(view)).toEqual([view(a)]);
        expect((await collect(store.listOps(B))).map(view)).toEqual([view(b1), view(b2)]);
      });

      it('stores the same op id in two Spaces independently', async () => {
        const op = makeOp('shared');
        expect(await store.putOp(A, op, [op.opId])).toBe(true);
        expect(await store.putOp(B, op, [])).toBe(true);
        expect(await store.putOp(B, op, [op.opId])).toBe(false);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([op.opId]));
        expect(await store.getHeads(B)).toEqual([]);
      });

      it('listSpaces lists exactly the Spaces with ops', async () => {
        const spaces = [spaceId(9), spaceId(3), spaceId(200)];
        for (const [i, s] of spaces.entries()) {
          const op = makeOp(`space ${i}`);
          await store.putOp(s, op, [op.opId]);
          await store.putOp(s, makeOp(`space ${i} again`), [op.opId]);
        }
        expect(sortedHexes(await store.listSpaces())).toEqual(sortedHexes(spaces));
      });
    });

    describe('bytes', () => {
      it('round-trip exactly: every byte value, empty and large arrays', async () => {
        const every = Uint8Array.from({ length: 256 }, (_, i) => i);
        const large = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 7919) & 0xff);
        const ops = [makeOp('every', every), makeOp('large', large)];
        const empty = makeOp('empty');
        ops.push({ ...empty, op: new Uint8Array(0) });
        for (const op of ops) await store.putOp(A, op, [op.opId]);
        for (const op of ops) expect(view(await store.getOp(A, op.opId))).toEqual(view(op));
        expect((await collect(store.listOps(A))).map(view)).toEqual(ops.map(view));
      });

      it('of a view into a larger buffer are exactly the view’s bytes, and find by value', async () => {
        const op = makeOp('view');
        const inBig = (b: Uint8Array): Uint8Array => {
          const big = new Uint8Array(b.length + 64).fill(0xee);
          big.set(b, 32);
          return big.subarray(32, 32 + b.length);
        };
        const viewed: StoredOp = { opId: inBig(op.opId) as OpId, sealed: inBig(op.sealed), op: inBig(op.op) };
        await store.putOp(inBig(A) as SpaceId, viewed, [inBig(op.opId) as OpId]);

        expect(view(await store.getOp(A, op.opId))).toEqual(view(op));
        expect(await store.hasOp(A, inBig(op.opId) as OpId)).toBe(true);
        expect(hexes(await store.getHeads(A))).toEqual(hexes([op.opId]));
        expect(hexes(await store.listSpaces())).toEqual(hexes([A]));
        await store.putMeta('view', inBig(new Uint8Array([1, 2, 3])));
        expect(toHex((await store.getMeta('view')) ?? new Uint8Array(0))).toBe('010203');
      });
    });

    describe('meta', () => {
      it('gets, puts, overwrites and deletes values by key', async () => {
        expect(await store.getMeta('cursor')).toBeUndefined();
        await store.putMeta('cursor', new Uint8Array([1, 2, 3]));
        await store.putMeta('other', new Uint8Array([9]));
        expect(hexes([(await store.getMeta('cursor')) ?? new Uint8Array(0)])).toEqual(['010203']);

        await store.putMeta('cursor', new Uint8Array([4]));
        expect(toHex((await store.getMeta('cursor')) ?? new Uint8Array(0))).toBe('04');

        await store.putMeta('empty', new Uint8Array(0));
        expect(toHex((await store.getMeta('empty')) ?? new Uint8Array([0xff]))).toBe('');

        await store.deleteMeta('cursor');
        expect(await store.getMeta('cursor')).toBeUndefined();
        await store.deleteMeta('never set');
        expect(toHex((await store.getMeta('other')) ?? new Uint8Array(0))).toBe('09');
        expect(await store.listSpaces()).toEqual([]);
      });
    });

    describe('close', () => {
      it('after close, every method rejects with StorageError "closed"', async () => {
        const op = makeOp('before close');
        await store.putOp(A, op, [op.opId]);
        await store.putMeta('k', new Uint8Array([1]));
        await store.close();

        const calls: [string, () => Promise<unknown>][] = [
          ['putOp', () => store.putOp(A, makeOp('after close'), [])],
          ['putOps', () => store.putOps(A, [makeOp('after close')], [])],
          ['getOp', () => store.getOp(A, op.opId)],
          ['hasOp', () => store.hasOp(A, op.opId)],
          ['getHeads', () => store.getHeads(A)],
          ['listOps', () => collect(store.listOps(A))],
          ['countOps', () => store.countOps(A)],
          ['listSpaces', () => store.listSpaces()],
          ['getMeta', () => store.getMeta('k')],
          ['putMeta', () => store.putMeta('k', new Uint8Array([2]))],
          ['deleteMeta', () => store.deleteMeta('k')],
        ];
        for (const [method, call] of calls) {
          const e = await rejectionOf(call);
          expect(e, method).toBeInstanceOf(StorageError);
          expect((e as StorageError).code, method).toBe('closed');
        }
      });

      it('a second close resolves', async () => {
        await store.close();
        await expect(store.close()).resolves.toBeUndefined();
      });
    });

    it('matches a simple model over random putOp and putOps sequences with duplicates', async () => {
      const POOL = 10;
      const SPACES = 3;
      const pool = Array.from({ length: POOL }, (_, i) => makeOp(`pool ${i}`));
      const spaces = Array.from({ length: SPACES }, (_, i) => spaceId(100 + i));
      const command = fc.record({
        space: fc.nat({ max: SPACES - 1 }),
        op: fc.nat({ max: POOL - 1 }),
        // More than one: the ops go in one putOps call (repeats included), the first one too.
        batch: fc.array(fc.nat({ max: POOL - 1 }), { maxLength: 4 }),
        heads: fc.uniqueArray(fc.nat({ max: POOL - 1 }), { maxLength: 3 }),
      });

      await fc.assert(
        fc.asyncProperty(fc.array(command, { maxLength: 30 }), async (commands) => {
          const model = spaces.map(() => ({ order: [] as number[], heads: [] as OpId[] }));
          const s = await make();
          try {
            for (const c of commands) {
              const m = model[c.space];
              const sp = spaces[c.space];
              const op = pool[c.op];
              if (m === undefined || sp === undefined || op === undefined) throw new Error('bad command');
              const heads = c.heads.map((h) => pool[h]?.opId ?? op.opId);
              if (c.batch.length === 0) {
                const isNew = !m.order.includes(c.op);
                if (isNew) {
                  m.order.push(c.op);
                  m.heads = heads;
                }
                expect(await s.putOp(sp, op, heads)).toBe(isNew);
              } else {
                const batch = [c.op, ...c.batch];
                let fresh = 0;
                for (const n of batch) {
                  if (m.order.includes(n)) continue;
                  m.order.push(n);
                  fresh++;
                }
                if (fresh > 0) m.heads = heads;
                const ops = batch.map((n) => pool[n] ?? op);
                expect(await s.putOps(sp, ops, heads)).toBe(fresh);
              }
            }
            for (const [i, sp] of spaces.entries()) {
              const m = model[i];
              if (m === undefined) throw new Error('bad model');
              const expected = m.order.map((n) => view(pool[n]));
              expect((await collect(s.listOps(sp))).map(view)).toEqual(expected);
              const from = Math.floor(expected.length / 2);
              expect((await collect(s.listOps(sp, from))).map(view)).toEqual(expected.slice(from));
              expect(hexes(await s.getHeads(sp))).toEqual(sortedHexes(m.heads));
              expect(await s.countOps(sp)).toBe(m.order.length);
              for (const [n, op] of pool.entries()) {
                expect(await s.hasOp(sp, op.opId)).toBe(m.order.includes(n));
              }
            }
            const withOps = spaces.filter((_, i) => (model[i]?.order.length ?? 0) > 0);
            expect(sortedHexes(await s.listSpaces())).toEqual(sortedHexes(withOps));
          } finally {
            await s.close();
          }
        }),
        { numRuns: 200 },
      );
    });
  });
}
