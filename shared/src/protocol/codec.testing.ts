/** Test support for the codec and op tests: shared assertions and boundary values. */
import { expect } from 'vitest';
import { type CodecErrorCode, CodecError } from './errors.js';

/** Unsigned integers at every CBOR head-size boundary. */
export const HEAD_BOUNDARIES: readonly number[] = [
  0,
  23,
  24,
  0xff,
  0x100,
  0xffff,
  0x10000,
  0xffffffff,
  0x100000000,
  Number.MAX_SAFE_INTEGER,
];

/** What `f` throws, or `undefined`. */
export function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Asserts that `f` throws a `CodecError` with this `code`. */
export function expectCodecError(f: () => unknown, code: CodecErrorCode): void {
  const error = thrown(f);
  expect(error).toBeInstanceOf(CodecError);
  expect((error as CodecError).code).toBe(code);
}
