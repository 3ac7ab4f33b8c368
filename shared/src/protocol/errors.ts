/**
 * Error families of the protocol layer. Expected outcomes travel as tagged unions; these
 * classes are thrown only inside a decoder and caught at its boundary, or for bugs.
 */

export type CodecErrorCode =
  | 'truncated'
  | 'trailing-bytes'
  | 'non-canonical'
  | 'unsupported'
  | 'too-large'
  | 'too-deep'
  | 'too-long'
  | 'bad-utf8'
  | 'wrong-type';

/** Malformed or over-limit CBOR. `code` is stable; `message` says where. */
export class CodecError extends Error {
  override readonly name = 'CodecError';
  constructor(
    readonly code: CodecErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type SealErrorCode = 'bad-envelope' | 'bad-seal' | 'too-large' | 'bad-padding';

export class SealError extends Error {
  override readonly name = 'SealError';
  constructor(
    readonly code: SealErrorCode,
    message: string,
  ) {
    super(message);
  }
}
