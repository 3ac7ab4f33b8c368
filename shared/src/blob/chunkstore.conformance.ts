import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageError } from '../ports/storage.js';
import { toHex } from '../protocol/ids.js';
import type { ChunkEntry, ChunkPin, ChunkStore } from './chunkstore.js';

/** Opens a store on one medium; each call opens the same medium again (after a close). */
export type ChunkStoreOpener = () => Promise<ChunkStore>;

function hash(n: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, i) => (n * 37 + i * 11) & 0xff);
}

function bytes(n: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (n * 131 + i * 7) & 0xff);
}

/** Entries as sorted plain values, so a failure shows which differ. */
function view(entries: readonly ChunkEntry[]): { hash: string; size: number; used: number }[] {
  return entries
    .map((e) => ({ hash: toHex(e.hash), size: e.size, used: e.used }))
    .sort((a, b) => a.hash.localeCompare(b.hash));
}

function pinView(pins: readonly ChunkPin[]): { manifest: string; chunks: string[] }[] {
  return pins
    .map((p) => ({ manifest: toHex(p.manifest), chunks: p.chunks.map(toHex) }))
    .sort((a, b) => a.manifest.localeCompare(b.manifest));
}

const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : toHex(b));

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v: unknown) => expect.fail(`expected a rejection, got ${String(v)}`),
    (e: unknown) => e,
  );
}

/**
 * The conformance suite of the `ChunkStore` port: every implementation runs it, so the
 * in-memory double and the IndexedDB adapter cannot drift. `make` returns the opener of a new,
 * empty medium. Observes only the port's behaviour.
 */
export function runChunkStoreTests(name: string, make: () => ChunkStoreOpener): void {
  describe(`ChunkStore conformance: ${name}`, () => {
    const opened: ChunkStore[] = [];
    const open = async (opener: ChunkStoreOpener): Promise<ChunkStore> => {
      const s = await opener();
      opened.push(s);
      return s;
    };
    const fresh = (): Promise<ChunkStore> => open(make());
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    it('is empty when new', async () => {
      const s = await fresh();
      expect(await s.get(hash(1))).toBeUndefined();
      expect(await s.entries()).toEqual([]);
      expect(await s.pins()).toEqual([]);
    });

    it('returns exactly the bytes put, and an entry with their size and the stamp given', async () => {
      const s = await fresh();
      const every = Uint8Array.from({ length: 256 }, (_, i) => i);
      const large = bytes(3, 300_000);
      await s.put(hash(1), every, 5);
      await s.put(hash(2), new Uint8Array(0), 6);
      await s.put(hash(3), large, 7);
      expect(hex(await s.get(hash(1)))).toBe(toHex(every));
      expect(hex(await s.get(hash(2)))).toBe('');
      expect(hex(await s.get(hash(3)))).toBe(toHex(large));
      expect(await s.get(hash(4))).toBeUndefined();
      expect(view(await s.entries())).toEqual(
        view([
          { hash: hash(1), size: 256, used: 5 },
          { hash: hash(2), size: 0, used: 6 },
          { hash: hash(3), size: 300_000, used: 7 },
        ]),
      );
    });

    it('put replaces the chunk and its entry under the same hash', async () => {
      const s = await fresh();
      await s.put(hash(1), bytes(1, 10), 1);
      await s.put(hash(1), bytes(2, 20), 9);
      expect(hex(await s.get(hash(1)))).toBe(toHex(bytes(2, 20)));
      expect(view(await s.entries())).toEqual(view([{ hash: hash(1), size: 20, used: 9 }]));
    });

    it('stores a view into a larger buffer as the view’s bytes, and finds keys by value', async () => {
      const s = await fresh();
      const inBig = (b: Uint8Array): Uint8Array => {
        const big = new Uint8Array(b.length + 64).fill(0xee);
        big.set(b, 32);
        return big.subarray(32, 32 + b.length);
      };
      await s.put(inBig(hash(1)), inBig(bytes(1, 100)), 1);
      await s.putPin({ manifest: inBig(hash(9)), chunks: [inBig(hash(1))] });
      expect(hex(await s.get(hash(1)))).toBe(toHex(bytes(1, 100)));
      expect(view(await s.entries())).toEqual(view([{ hash: hash(1), size: 100, used: 1 }]));
      expect(pinView(await s.pins())).toEqual(pinView([{ manifest: hash(9), chunks: [hash(1)] }]));
      await s.delete([inBig(hash(1))]);
      expect(await s.get(hash(1))).toBeUndefined();
    });

    it('is not changed by later changes to arrays given or returned', async () => {
      const s = await fresh();
      const given = bytes(1, 50);
      const key = hash(1);
      await s.put(key, given, 1);
      given.fill(0);
      key.fill(0);
      const got = await s.get(hash(1));
      got?.fill(1);
      const [entry] = await s.entries();
      entry?.hash.fill(2);
      const chunks = [hash(1)];
      await s.putPin({ manifest: hash(9), chunks });
      chunks[0]?.fill(3);
      chunks.push(hash(5));
      expect(hex(await s.get(hash(1)))).toBe(toHex(bytes(1, 50)));
      expect(view(await s.entries())).toEqual(view([{ hash: hash(1), size: 50, used: 1 }]));
      expect(pinView(await s.pins())).toEqual(pinView([{ manifest: hash(9), chunks: [hash(1)] }]));
    });

    it('delete removes the chunks and entries named, ignores absent ones, keeps the rest', async () => {
      const s = await fresh();
      for (let i = 1; i <= 4; i++) await s.put(hash(i), bytes(i, 10 * i), i);
      await s.delete([hash(1), hash(3), hash(99)]);
      await s.delete([]);
      expect(await s.get(hash(1))).toBeUndefined();
      expect(await s.get(hash(3))).toBeUndefined();
      expect(hex(await s.get(hash(2)))).toBe(toHex(bytes(2, 20)));
      expect(view(await s.entries())).toEqual(
        view([
          { hash: hash(2), size: 20, used: 2 },
          { hash: hash(4), size: 40, used: 4 },
        ]),
      );
    });

    it('touch sets the stamps of present chunks only, and creates nothing', async () => {
      const s = await fresh();
      await s.put(hash(1), bytes(1, 10), 1);
      await s.put(hash(2), bytes(2, 20), 2);
      await s.touch([
        { hash: hash(1), used: 40 },
        { hash: hash(7), used: 41 },
      ]);
      await s.touch([]);
      expect(view(await s.entries())).toEqual(
        view([
          { hash: hash(1), size: 10, used: 40 },
          { hash: hash(2), size: 20, used: 2 },
        ]),
      );
      expect(await s.get(hash(7))).toBeUndefined();
      expect(hex(await s.get(hash(1)))).toBe(toHex(bytes(1, 10)));
    });

    it('keeps pins apart from chunks: put, replace, delete, list', async () => {
      const s = await fresh();
      await s.put(hash(1), bytes(1, 10), 1);
      await s.putPin({ manifest: hash(8), chunks: [hash(1), hash(2)] });
      await s.putPin({ manifest: hash(9), chunks: [] });
      await s.putPin({ manifest: hash(8), chunks: [hash(3)] });
      expect(pinView(await s.pins())).toEqual(
        pinView([
          { manifest: hash(8), chunks: [hash(3)] },
          { manifest: hash(9), chunks: [] },
        ]),
      );
      await s.delete([hash(1), hash(3)]);
      expect(pinView(await s.pins())).toHaveLength(2);
      await s.deletePin(hash(9));
      await s.deletePin(hash(77));
      expect(pinView(await s.pins())).toEqual(pinView([{ manifest: hash(8), chunks: [hash(3)] }]));
      expect(await s.entries()).toEqual([]);
    });

    it('keeps chunks, entries and pins across close and reopen', async () => {
      const opener = make();
      const first = await opener();
      await first.put(hash(1), bytes(1, 1000), 3);
      await first.put(hash(2), bytes(2, 10), 4);
      await first.touch([{ hash: hash(1), used: 5 }]);
      await first.putPin({ manifest: hash(9), chunks: [hash(2)] });
      await first.close();

      const second = await open(opener);
      expect(hex(await second.get(hash(1)))).toBe(toHex(bytes(1, 1000)));
      expect(view(await second.entries())).toEqual(
        view([
          { hash: hash(1), size: 1000, used: 5 },
          { hash: hash(2), size: 10, used: 4 },
        ]),
      );
      expect(pinView(await second.pins())).toEqual(pinView([{ manifest: hash(9), chunks: [hash(2)] }]));
    });

    it('after close, every method rejects with StorageError "closed", and close again resolves', async () => {
      const s = await make()();
      await s.put(hash(1), bytes(1, 10), 1);
      await s.close();
      const calls: (() => Promise<unknown>)[] = [
        () => s.get(hash(1)),
        () => s.put(hash(2), bytes(2, 1), 2),
        () => s.delete([hash(1)]),
        () => s.touch([{ hash: hash(1), used: 3 }]),
        () => s.entries(),
        () => s.putPin({ manifest: hash(9), chunks: [] }),
        () => s.deletePin(hash(9)),
        () => s.pins(),
      ];
      for (const call of calls) {
        const e = await rejection(call());
        expect(e).toBeInstanceOf(StorageError);
        expect((e as StorageError).code).toBe('closed');
      }
      await expect(s.close()).resolves.toBeUndefined();
    });

    it('behaves as a map model under random sequences of operations, reopens included', async () => {
      type Cmd =
        | { op: 'put'; h: number; len: number; used: number }
        | { op: 'delete'; hs: number[] }
        | { op: 'touch'; h: number; used: number }
        | { op: 'pin'; m: number; cs: number[] }
        | { op: 'unpin'; m: number }
        | { op: 'reopen' };
      const h = fc.integer({ min: 0, max: 5 });
      const cmd: fc.Arbitrary<Cmd> = fc.oneof(
        fc.record({
          op: fc.constant('put' as const),
          h,
          len: fc.integer({ min: 0, max: 64 }),
          used: fc.nat(1000),
        }),
        fc.record({ op: fc.constant('delete' as const), hs: fc.array(h, { maxLength: 3 }) }),
        fc.record({ op: fc.constant('touch' as const), h, used: fc.nat(1000) }),
        fc.record({ op: fc.constant('pin' as const), m: h, cs: fc.array(h, { maxLength: 3 }) }),
        fc.record({ op: fc.constant('unpin' as const), m: h }),
        fc.constant({ op: 'reopen' as const }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(cmd, { maxLength: 25 }), async (cmds) => {
          const opener = make();
          let s = await opener();
          const chunks = new Map<number, { len: number; used: number; fill: number }>();
          const pins = new Map<number, number[]>();
          try {
            for (const [i, c] of cmds.entries()) {
              if (c.op === 'put') {
                await s.put(hash(c.h), bytes(i, c.len), c.used);
                chunks.set(c.h, { len: c.len, used: c.used, fill: i });
              } else if (c.op === 'delete') {
                await s.delete(c.hs.map(hash));
                for (const x of c.hs) chunks.delete(x);
              } else if (c.op === 'touch') {
                await s.touch([{ hash: hash(c.h), used: c.used }]);
                const m = chunks.get(c.h);
                if (m !== undefined) m.used = c.used;
              } else if (c.op === 'pin') {
                await s.putPin({ manifest: hash(c.m), chunks: c.cs.map(hash) });
                pins.set(c.m, c.cs);
              } else if (c.op === 'unpin') {
                await s.deletePin(hash(c.m));
                pins.delete(c.m);
              } else {
                await s.close();
                s = await opener();
              }
            }
            expect(view(await s.entries())).toEqual(
              view([...chunks].map(([k, m]) => ({ hash: hash(k), size: m.len, used: m.used }))),
            );
            for (let k = 0; k <= 5; k++) {
              const m = chunks.get(k);
              expect(hex(await s.get(hash(k)))).toBe(
                m === undefined ? undefined : toHex(bytes(m.fill, m.len)),
              );
            }
            expect(pinView(await s.pins())).toEqual(
              pinView([...pins].map(([m, cs]) => ({ manifest: hash(m), chunks: cs.map(hash) }))),
            );
          } finally {
            await s.close();
          }
        }),
        { numRuns: 60, seed: 7 },
      );
    });
  });
}
