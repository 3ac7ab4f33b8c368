import { describe, expect, it } from 'vitest';
import { concatBytes, equalBytes } from './ids.js';
import { decodeAnswer, encodeAnswer, encodeMessageHead } from './wire.js';

describe('encodeMessageHead', () => {
  it('is the start of the message answer, whatever the sizes of id, seq and message', () => {
    const sizes = [0, 1, 23, 24, 255, 256, 1024, 65_535, 65_536, 70_000];
    const numbers = [0, 1, 23, 24, 255, 256, 65_536, 0xffff_ffff, 2 ** 40];
    let mismatches = 0;
    for (const length of sizes) {
      const message = new Uint8Array(length).map((_, i) => i & 0xff);
      for (const id of [0, 7, 300, 0xffff_ffff]) {
        for (const seq of numbers) {
          const whole = encodeAnswer({ kind: 'message', id, seq, message });
          const head = encodeMessageHead(id, seq, length);
          if (!equalBytes(concatBytes(head, message), whole)) mismatches++;
        }
      }
      const back = decodeAnswer(concatBytes(encodeMessageHead(9, 42, length), message));
      expect(back.kind === 'message' && back.id === 9 && back.seq === 42).toBe(true);
      expect(back.kind === 'message' && equalBytes(back.message, message)).toBe(true);
    }
    expect(mismatches).toBe(0);
  });
});
