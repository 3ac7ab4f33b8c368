import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../protocol/cbor.js';
import { CodecError } from '../protocol/errors.js';
import type { DeviceId, EpochRef, UserId } from '../protocol/ids.js';
import { EpochHistory } from './history.js';
import type { GroupMember } from './suite.js';

const id = (n: number) => new Uint8Array(32).fill(n);
const member = (n: number): GroupMember => ({ user: id(100 + n) as UserId, device: id(n) as DeviceId });
const ref = (e: number, fork = 0): EpochRef => ({ epoch: e, commitHash: id(e === 0 ? 0 : 200 + e + fork) });
const key = (e: number, fork = 0) => id(50 + e + fork);
const ckey = (e: number, fork = 0) => id(150 + e + fork);

/** Epoch e has these members: 0-3 a, b; 4-5 a; 6 a, b again; 7 a, b, c. */
function sample(): EpochHistory {
  const h = new EpochHistory();
  const [a, b, c] = [member(1), member(2), member(3)];
  for (let e = 0; e <= 7; e++) {
    const m = e <= 3 ? [a, b] : e <= 5 ? [a] : e === 6 ? [a, b] : [a, b, c];
    h.record(ref(e), key(e), ckey(e), m);
  }
  return h;
}

describe('epoch history', () => {
  it('answers membership per epoch, through removal and re-admission', () => {
    const h = sample();
    const b = member(2);
    const at = (e: number) => h.memberAt(ref(e), b.user, b.device);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(at)).toEqual([
      'member',
      'member',
      'member',
      'member',
      'not-member',
      'not-member',
      'member',
      'member',
    ]);
    // Another user claiming b's device, an unknown epoch, a forked commit hash.
    expect(h.memberAt(ref(1), member(1).user, b.device)).toBe('not-member');
    expect(h.memberAt(ref(9), b.user, b.device)).toBe('unknown-epoch');
    expect(h.memberAt(ref(3, 1), b.user, b.device)).toBe('unknown-epoch');
    expect(h.keyOf(ref(5))).toEqual(key(5));
    expect(() => {
      h.record(ref(7), key(7), ckey(7), []);
    }).toThrow(RangeError);
  });

  it('round-trips its encoding; a joiner prepends what came before its join', () => {
    const h = sample();
    expect(EpochHistory.decode(h.encode()).toCbor()).toEqual(h.toCbor());
    // A joiner at epoch 6 with the history of epochs 0-5.
    const joiner = new EpochHistory();
    joiner.record(ref(6), key(6), ckey(6), [member(1), member(2)]);
    joiner.record(ref(7), key(7), ckey(7), [member(1), member(2), member(3)]);
    joiner.prepend(EpochHistory.decode(h.encode(6)));
    expect(joiner.toCbor()).toEqual(h.toCbor());
  });

  it('a history without content keys (a Space that hides its history) places every op but opens no post', () => {
    const h = sample();
    const joiner = new EpochHistory();
    joiner.record(ref(6), key(6), ckey(6), [member(1), member(2)]);
    joiner.prepend(EpochHistory.decode(h.encode(6, false)));
    for (let e = 0; e <= 5; e++) {
      expect(joiner.keyOf(ref(e))).toEqual(key(e));
      expect(joiner.contentKeyOf(ref(e))).toBeUndefined();
    }
    expect(joiner.contentKeyOf(ref(6))).toEqual(ckey(6));
    expect(joiner.memberAt(ref(4), member(2).user, member(2).device)).toBe('not-member');
    expect(joiner.memberAt(ref(3), member(2).user, member(2).device)).toBe('member');
    // With content keys, the same joiner opens everything.
    const full = new EpochHistory();
    full.record(ref(6), key(6), ckey(6), [member(1), member(2)]);
    full.prepend(EpochHistory.decode(h.encode(6)));
    expect(full.contentKeyOf(ref(2))).toEqual(ckey(2));
  });

  it('its saved form keeps what fork choice needs: abandoned epochs, and rewinding after a reload', () => {
    const h = sample();
    h.rewindTo(6);
    h.record(ref(7, 1), key(7, 1), ckey(7, 1), [member(1)]);
    const back = EpochHistory.fromSaved(decode(encode(h.toSaved())));
    expect(back.toSaved()).toEqual(h.toSaved());
    // The abandoned epoch 7 stays readable; the reloaded history rewinds like the original.
    expect(back.keyOf(ref(7))).toEqual(key(7));
    expect(back.contentKeyOf(ref(7))).toEqual(ckey(7));
    expect(back.memberAt(ref(7), member(3).user, member(3).device)).toBe('member');
    expect(back.rewindTo(5).map((r) => r.epoch)).toEqual(h.rewindTo(5).map((r) => r.epoch));
    expect(back.toSaved()).toEqual(h.toSaved());
    // Damaged saves are refused.
    for (const bad of [[], [h.toCbor(), [[1, [], [new Uint8Array(3)]]], []], [h.toCbor(), [], [[7]]]]) {
      expect(() => EpochHistory.fromSaved(bad)).toThrow(CodecError);
    }
  });

  it('rewinds abandoned epochs, keeping their keys and members for what was sealed on them', () => {
    const h = sample();
    const abandoned = h.rewindTo(5);
    expect(abandoned.map((r) => r.epoch)).toEqual([7, 6]);
    expect(h.latest).toEqual(ref(5));
    // The winning branch: epoch 6 without b.
    h.record(ref(6, 1), key(6, 1), ckey(6, 1), [member(1)]);
    expect(h.memberAt(ref(6, 1), member(2).user, member(2).device)).toBe('not-member');
    expect(h.memberAt(ref(6), member(2).user, member(2).device)).toBe('member');
    expect(h.keyOf(ref(6))).toEqual(key(6));
    expect(h.keyOf(ref(7))).toEqual(key(7));
    expect(h.memberAt(ref(7), member(3).user, member(3).device)).toBe('member');
    expect(h.memberAt(ref(6, 1), member(3).user, member(3).device)).toBe('not-member');
  });

  it('refuses a malformed history with a CodecError, never a crash', () => {
    const bad = [
      encode([]),
      encode([[], 5]),
      encode([
        [
          [2, id(1), id(2)],
          [1, id(1), id(2)],
        ],
        [],
      ]), // epochs out of order
      encode([[[1, id(1).subarray(1), id(2)]], []]), // short hash
      encode([[], [[id(1), id(2), [3, 2]]]]), // a span that ends before it starts
      encode([[], [[id(1), id(2), [1, 0, 2, 3]]]]), // an open span that is not the last
      encode([
        [],
        [
          [id(1), id(2), [1, 2]],
          [id(1), id(2), [3, 4]],
        ],
      ]), // a device twice
    ];
    for (const b of bad) expect(() => EpochHistory.decode(b)).toThrow(CodecError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        try {
          EpochHistory.decode(b);
        } catch (e) {
          expect(e).toBeInstanceOf(CodecError);
        }
      }),
    );
  });
});
