import * as A from '@automerge/automerge';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_COLLAB_CHANGE_BYTES } from '../protocol/limits.js';
import {
  type CollabApply,
  type CollabDoc,
  applyCollabChange,
  collabHeads,
  collabText,
  createCollab,
  editCollab,
  loadCollab,
  loadAutomerge,
} from './collab.js';

// Automerge loads on first need (collab.ts); these tests call it directly.
await loadAutomerge();

const author = (n: number): Uint8Array => new Uint8Array(32).fill(n);
const ALICE = author(1);
const BOB = author(2);

function load(bytes: Uint8Array): CollabDoc {
  const r = loadCollab(bytes);
  if (!r.ok) throw new Error(`does not load: ${r.reason}`);
  return r.doc;
}

function edit(
  from: Uint8Array | CollabDoc,
  text: string,
  who: Uint8Array,
): { change: Uint8Array; doc: CollabDoc } {
  const r = editCollab(from, text, who);
  if (!r.ok) throw new Error(`no edit: ${r.reason}`);
  return r;
}

function applyAll(doc: CollabDoc, changes: readonly Uint8Array[]): CollabDoc {
  return changes.reduce((d, c) => {
    const r = applyCollabChange(d, c);
    if (!r.ok) throw new Error(`not applied: ${r.reason}`);
    return r.doc;
  }, doc);
}

const SENTENCES = [
  'The forum keeps every thread in the order its members wrote it.',
  'Moderators can hide a post, but the audit log still shows who did it and when.',
  'Relays forward sealed operations they cannot read, and store them until a device asks.',
  'A new member receives the keys of past epochs only if the Space allows it.',
  'Offline edits wait in the outbox and leave as soon as a relay answers.',
  'Nothing here depends on a server that can read what people write.',
];

/** About 3,000 characters in six paragraphs, the same every run. */
function longBody(): string {
  const paragraphs: string[] = [];
  for (let p = 0; p < 6; p++) {
    const words: string[] = [];
    for (let s = 0; s < 7; s++) words.push(SENTENCES[(p + s) % SENTENCES.length] ?? '');
    paragraphs.push(`${p + 1}. ${words.join(' ')}`);
  }
  // A typo for the second author to fix.
  paragraphs[5] = `${paragraphs[5] ?? ''} Everyone will recieve the same text.`;
  return paragraphs.join('\n\n');
}

/** Applies `edit` (a splice) to `text`. */
const splice = (text: string, at: number, del: number, ins: string): string =>
  text.slice(0, at) + ins + text.slice(at + del);

describe('collab', () => {
  it('creates the same bytes for the same text and author, and loads them', () => {
    const a = createCollab('hello', ALICE);
    expect(createCollab('hello', ALICE)).toEqual(a);
    expect(createCollab('hello', BOB)).not.toEqual(a);
    // No wall-clock time in a change: it would make the bytes depend on when they were made.
    expect(A.decodeChange(a).time).toBe(0);
    expect(A.decodeChange(edit(a, 'hello!', ALICE).change).time).toBe(0);
    expect(collabText(load(a))).toBe('hello');
    expect(collabText(load(createCollab('', ALICE)))).toBe('');
  });

  it('merges two concurrent edits of a long body in either order to the same text', () => {
    const body = longBody();
    expect(body.length).toBeGreaterThan(2900);
    const base = load(createCollab(body, ALICE));

    const firstBreak = body.indexOf('\n\n');
    const inserted = ' Alice adds this sentence to the first paragraph.';
    const aliceText = splice(body, firstBreak, 0, inserted);
    const alice = edit(base, aliceText, ALICE);

    const typo = body.lastIndexOf('recieve');
    const bobText = splice(body, typo, 'recieve'.length, 'receive');
    const bob = edit(base, bobText, BOB);

    const expected = splice(splice(body, typo, 'recieve'.length, 'receive'), firstBreak, 0, inserted);
    const ab = applyAll(base, [alice.change, bob.change]);
    const ba = applyAll(base, [bob.change, alice.change]);
    expect(collabText(ab)).toBe(expected);
    expect(collabText(ba)).toBe(expected);
    expect(collabHeads(ab)).toEqual(collabHeads(ba));
    // Each author's replica reaches it too, from its own edit.
    expect(collabText(applyAll(alice.doc, [bob.change]))).toBe(expected);
    expect(collabText(applyAll(bob.doc, [alice.change]))).toBe(expected);

    // A one-word fix in a 3,000-character body is a small change.
    expect(bob.change.length).toBeLessThan(200);
    expect(bob.change.length).toBeLessThanOrEqual(MAX_COLLAB_CHANGE_BYTES);
  });

  it('records only the difference, and nothing when the text is unchanged', () => {
    const base = load(createCollab('one two three', ALICE));
    const r = edit(base, 'one 2 three', ALICE);
    const ops = A.decodeChange(r.change).ops;
    expect(ops.filter((o) => o.action === 'del')).toHaveLength(3);
    expect(ops.filter((o) => o.action === 'set')).toHaveLength(1);
    expect(editCollab(base, 'one two three', ALICE)).toEqual({ ok: false, reason: 'unchanged' });
  });

  it('accepts saved bytes or a held document, and leaves its inputs unchanged', () => {
    const saved = createCollab('abc', ALICE);
    const copy = saved.slice();
    const fromBytes = edit(saved, 'abcd', ALICE);
    const base = load(saved);
    const fromDoc = edit(base, 'abcd', ALICE);
    // Same author, heads and result: the same change, so a retried edit is applied once.
    expect(fromDoc.change).toEqual(fromBytes.change);
    expect(saved).toEqual(copy);

    const heads = collabHeads(base);
    const applied = applyAll(base, [fromDoc.change]);
    expect(collabText(applied)).toBe('abcd');
    expect(collabText(base)).toBe('abc');
    expect(collabHeads(base)).toEqual(heads);
    // The old document is still usable: another edit from it merges with the first.
    const other = edit(base, 'xabc', BOB);
    expect(collabText(applyAll(applied, [other.change]))).toBe('xabcd');
    // Applying a change twice is a no-op.
    expect(collabText(applyAll(applied, [fromDoc.change]))).toBe('abcd');
  });

  it('converges whatever the delivery order, with duplicates (property)', () => {
    const char = fc.constantFrom('a', 'b', 'c', ' ', '\n', 'é', '€', 'ß');
    const text = (max: number) => fc.array(char, { maxLength: max }).map((cs) => cs.join(''));
    const spliceArb = fc.record({ at: fc.nat(), del: fc.nat({ max: 5 }), ins: text(8) });
    const scenario = fc.record({
      base: text(40),
      actors: fc.array(fc.array(spliceArb, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 4 }),
      // Per replica: a sort key per delivery, and which changes are delivered twice.
      replicas: fc.array(
        fc.record({
          keys: fc.array(fc.double({ noNaN: true }), { minLength: 24, maxLength: 24 }),
          dups: fc.array(fc.nat({ max: 11 }), { maxLength: 4 }),
        }),
        { minLength: 3, maxLength: 3 },
      ),
    });

    fc.assert(
      fc.property(scenario, ({ base, actors, replicas }) => {
        const created = createCollab(base, ALICE);
        const changes: Uint8Array[] = [];
        actors.forEach((edits, i) => {
          let doc = load(created);
          for (const { at, del, ins } of edits) {
            const current = collabText(doc);
            const pos = current.length === 0 ? 0 : at % (current.length + 1);
            const r = editCollab(doc, splice(current, pos, del, ins), author(10 + i));
            if (!r.ok) {
              expect(r.reason).toBe('unchanged');
              continue;
            }
            expect(collabText(r.doc)).toBe(splice(current, pos, del, ins));
            changes.push(r.change);
            doc = r.doc;
          }
        });

        const results = replicas.map(({ keys, dups }) => {
          const deliveries = [...changes, ...dups.filter((d) => d < changes.length).map((d) => changes[d])]
            .filter((c): c is Uint8Array => c !== undefined)
            .map((c, i) => ({ c, k: keys[i] ?? 0 }))
            .sort((x, y) => x.k - y.k)
            .map((x) => x.c);
          let doc = load(created);
          let held: Uint8Array[] = [];
          const deliver = (c: Uint8Array): boolean => {
            const r: CollabApply = applyCollabChange(doc, c);
            if (r.ok) doc = r.doc;
            else expect(r.reason).toBe('missing-deps');
            return r.ok;
          };
          for (const c of deliveries) {
            if (!deliver(c)) held.push(c);
            // Retry the holdback queue until nothing more applies, as the pipeline does.
            for (let progress = true; progress;) {
              const before = held.length;
              held = held.filter((h) => !deliver(h));
              progress = held.length < before;
            }
          }
          expect(held).toHaveLength(0);
          return { text: collabText(doc), heads: collabHeads(doc) };
        });

        for (const r of results) expect(r).toEqual(results[0]);
      }),
      { numRuns: 200 },
    );
  });

  describe('bytes from the network', () => {
    const base = load(createCollab('hello world', ALICE));
    const valid = edit(base, 'hello brave world', BOB).change;

    function expectRejected(doc: CollabDoc, change: Uint8Array): void {
      const text = collabText(doc);
      const heads = collabHeads(doc);
      expect(applyCollabChange(doc, change)).toEqual({ ok: false, reason: 'malformed-change' });
      expect(collabText(doc)).toBe(text);
      expect(collabHeads(doc)).toEqual(heads);
    }

    it('rejects random bytes and leaves the document as it was', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
          expectRejected(base, bytes);
        }),
        { numRuns: 300 },
      );
      expectRejected(base, new Uint8Array(0));
    });

    it('rejects every truncation of a valid change, and a change with trailing bytes', () => {
      for (let n = 0; n < valid.length; n++) expectRejected(base, valid.subarray(0, n));
      expectRejected(base, new Uint8Array([...valid, 0]));
      expectRejected(base, new Uint8Array([...valid, ...valid]));
      // The document still takes the valid change afterwards.
      expect(collabText(applyAll(base, [valid]))).toBe('hello brave world');
    });

    it('rejects a creation change or other Automerge bytes offered as an edit', () => {
      expectRejected(base, createCollab('hello world', ALICE));
      expectRejected(base, A.save(A.from({ text: 'x' })));
    });

    const decoded = A.decodeChange(valid);
    const craft = (over: Partial<A.DecodedChange>): Uint8Array => {
      const { hash: _hash, ...rest } = { ...decoded, ...over };
      return A.encodeChange(rest);
    };
    const textObj = decoded.ops[0]?.obj ?? '';

    it('rejects ops that are not plain text edits of this document', () => {
      const head = { obj: textObj, elemId: '_head', insert: true, pred: [] };
      // Ops carry elemId and insert, which Automerge's Op type leaves out.
      const ops = (o: object[]) => o as unknown as A.DecodedChange['ops'];
      expectRejected(base, craft({ ops: ops([{ ...head, action: 'set', value: 5 }]) }));
      expectRejected(
        base,
        craft({ ops: ops([{ action: 'set', obj: '_root', key: 'text', value: 'x', pred: [] }]) }),
      );
      expectRejected(
        base,
        craft({ ops: ops([{ action: 'makeMap', obj: '_root', key: 'other', pred: [] }]) }),
      );
      expectRejected(base, craft({ ops: ops([{ ...head, action: 'makeMap' }]) }));
      expectRejected(base, craft({ ops: ops([]) }));
      expectRejected(base, craft({ deps: [] }));
    });

    it('rejects a change whose declared op count is out of bounds before decoding it', () => {
      // One del op repeated by run-length encoding: a few hundred bytes declaring many ops.
      const del = { action: 'del', obj: textObj, elemId: `2@${decoded.actor}`, pred: [`2@${decoded.actor}`] };
      const bomb = craft({
        ops: Array.from({ length: 60_000 }, () => del) as unknown as A.DecodedChange['ops'],
      });
      expect(bomb.length).toBeLessThan(300);
      const started = performance.now();
      expectRejected(base, bomb);
      expect(performance.now() - started).toBeLessThan(50);
    });

    it('rejects a change naming elements outside its causal past, in every delivery order', () => {
      // Carol edits after Bob's change, then the change is re-labelled as depending only on the
      // base: it names a character Bob inserted without depending on Bob's change.
      const withBob = applyAll(base, [valid]);
      const carol = edit(withBob, 'hello bravest world', author(3)).change;
      const forged = A.encodeChange({ ...A.decodeChange(carol), deps: collabHeads(base) });
      expectRejected(base, forged);
      expectRejected(withBob, forged);
    });
  });

  it('holds back a change whose dependency is missing, then applies it after', () => {
    const base = load(createCollab('draft', ALICE));
    const first = edit(base, 'draft one', ALICE);
    const second = edit(first.doc, 'draft one, two', ALICE);

    expect(applyCollabChange(base, second.change)).toEqual({ ok: false, reason: 'missing-deps' });
    expect(collabText(base)).toBe('draft');
    const after = applyAll(base, [first.change, second.change]);
    expect(collabText(after)).toBe('draft one, two');
  });

  it('rejects creation bytes that are not a plain text document', () => {
    const bad = (bytes: Uint8Array) => {
      expect(loadCollab(bytes)).toEqual({ ok: false, reason: 'malformed-doc' });
    };
    bad(new Uint8Array([1, 2, 3]));
    const created = createCollab('abc', ALICE);
    bad(created.subarray(0, created.length - 1));
    // A saved document chunk, even of the right shape: only a creation change is accepted.
    bad(A.save(A.load(created)));
    // An edit change is not a creation.
    bad(edit(created, 'abcd', ALICE).change);
    // A document with another root key or a non-text body.
    const other = A.change(A.init<Record<string, unknown>>(), { time: 0 }, (d) => {
      d['text'] = 'x';
      d['more'] = 1;
    });
    bad(A.getLastLocalChange(other) ?? new Uint8Array(0));
    const scalar = A.change(A.init<Record<string, unknown>>(), { time: 0 }, (d) => {
      d['text'] = 3;
    });
    bad(A.getLastLocalChange(scalar) ?? new Uint8Array(0));
  });
});
