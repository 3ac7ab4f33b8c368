/**
 * A state checkpoint: a Space's reduced state as of its first `count` stored ops, saved so that
 * opening the Space reads and applies only the ops stored after them instead of the whole log.
 *
 * Layout: `CCKP` (4 bytes) ‖ format (uint32, big-endian) ‖ canonical CBOR body ‖ CRC-32 of all
 * that precedes it (4 bytes, big-endian). The body is `[space, count, lastOpId, state]`, where
 * `state` is what `SpaceReplica` and `SpaceState` write (numeric columns as little-endian
 * typed-array bytes). The checksum catches a damaged or cut record; it is no defence against
 * anyone who can write the device's storage (nothing is).
 *
 * The format is private to this device: it is never sent, and a checkpoint of another format
 * is simply not used (the log is replayed instead and a new checkpoint written).
 */
import { type CborValue, type DecodeLimits, decode, encode } from '../protocol/cbor.js';
import { CodecError } from '../protocol/errors.js';

/** Format of the checkpoint layout; bump it whenever anything the state writes changes. */
export const CHECKPOINT_FORMAT = 1;

const MAGIC = [0x43, 0x43, 0x4b, 0x50]; // "CCKP"

/**
 * Limits for decoding a checkpoint: it is the device's own record, so they only bound what a
 * damaged one could make the decoder allocate.
 */
const LIMITS: DecodeLimits = {
  maxBytes: 1 << 30,
  maxArrayLength: 1 << 26,
  maxStringBytes: 1 << 29,
  maxDepth: 12,
};

/**
 * `corrupt`: the record is damaged, cut short or not of the shape written; `version`: written in
 * another format (older code); `mismatch`: well-formed, but not of the ops this store holds
 * (another Space, or a store that was changed since).
 */
export type CheckpointErrorCode = 'corrupt' | 'version' | 'mismatch';

/** A checkpoint that cannot be used; the caller replays the whole log instead. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    readonly code: CheckpointErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The parts of a checkpoint. */
export interface CheckpointBody {
  readonly space: Uint8Array;
  /** Ops of the store it covers: the first `count`, in store order. */
  readonly count: number;
  /** The OpId of the last op it covers (the `count - 1`-th stored). */
  readonly lastOpId: Uint8Array;
  readonly state: CborValue;
}

export function encodeCheckpoint(b: CheckpointBody): Uint8Array {
  const body = encode([b.space, b.count, b.lastOpId, b.state]);
  const out = new Uint8Array(8 + body.length + 4);
  out.set(MAGIC);
  const view = new DataView(out.buffer);
  view.setUint32(4, CHECKPOINT_FORMAT);
  out.set(body, 8);
  view.setUint32(8 + body.length, crc32(out.subarray(0, 8 + body.length)));
  return out;
}

/**
 * Reads a checkpoint's parts. Byte strings in `state` are views into `bytes`.
 *
 * @throws CheckpointError `version` for another format, `corrupt` for anything damaged.
 */
export function decodeCheckpoint(bytes: Uint8Array): CheckpointBody {
  if (bytes.length < 12 || MAGIC.some((m, i) => bytes[i] !== m))
    throw new CheckpointError('corrupt', 'not a checkpoint');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint32(4);
  if (format !== CHECKPOINT_FORMAT)
    throw new CheckpointError('version', `checkpoint format ${format}, this code reads ${CHECKPOINT_FORMAT}`);
  const end = bytes.length - 4;
  if (crc32(bytes.subarray(0, end)) !== view.getUint32(end))
    throw new CheckpointError('corrupt', 'the checkpoint checksum does not match');
  let v: CborValue;
  try {
    v = decode(bytes.subarray(8, end), LIMITS, { views: true });
  } catch (e) {
    if (e instanceof CodecError || e instanceof RangeError)
      throw new CheckpointError('corrupt', `the checkpoint does not decode: ${e.message}`);
    throw e;
  }
  const f = list(v, 4);
  return { space: bin(f[0]), count: int(f[1]), lastOpId: bin(f[2]), state: f[3] ?? null };
}

// ---------- reading a decoded checkpoint: every check throws `CheckpointError('corrupt')` ----------

export function corrupt(what: string): never {
  throw new CheckpointError('corrupt', `checkpoint: ${what}`);
}

/** An array, of exactly `n` items when `n` is given. */
export function list(v: CborValue | undefined, n?: number): readonly CborValue[] {
  if (!Array.isArray(v) || (n !== undefined && v.length !== n))
    corrupt(n === undefined ? 'expected an array' : `expected an array of ${n}`);
  return v as readonly CborValue[];
}

/** A non-negative safe integer. */
export function int(v: CborValue | undefined): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) corrupt('expected a count or index');
  return v;
}

export function bin(v: CborValue | undefined): Uint8Array {
  if (!(v instanceof Uint8Array)) corrupt('expected bytes');
  return v;
}

export function str(v: CborValue | undefined): string {
  if (typeof v !== 'string') corrupt('expected text');
  return v;
}

export function bool(v: CborValue | undefined): boolean {
  if (typeof v !== 'boolean') corrupt('expected a boolean');
  return v;
}

/** `null`, or what `read` makes of the value. */
export function nullable<T>(v: CborValue | undefined, read: (v: CborValue) => T): T | null {
  return v === null ? null : read(v ?? corrupt('missing item'));
}

/** An index below `bound`. */
export function below(v: CborValue | undefined, bound: number): number {
  const i = int(v);
  if (i >= bound) corrupt('index out of range');
  return i;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type Numeric = Int32Array | Uint32Array | Float64Array | Uint8Array;

/** The first `n` numbers of `a` as bytes (little-endian: the layout of every host we run on). */
export function columnBytes(a: Numeric, n: number): Uint8Array {
  if (!LITTLE_ENDIAN) throw new Error('checkpoints need a little-endian host');
  return new Uint8Array(a.buffer, a.byteOffset, n * a.BYTES_PER_ELEMENT);
}

/** A column back from {@link columnBytes}: `n` numbers (checked), in a buffer of its own. */
export function column<T extends Numeric>(
  v: CborValue | undefined,
  make: { new (buffer: ArrayBuffer): T; readonly BYTES_PER_ELEMENT: number },
  n: number,
): T {
  const b = bin(v);
  if (!LITTLE_ENDIAN) throw new CheckpointError('version', 'checkpoints need a little-endian host');
  if (b.length !== n * make.BYTES_PER_ELEMENT) corrupt('a column of the wrong length');
  return new make(b.slice().buffer);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3), as zip and PNG use it. */
export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = (CRC_TABLE[(c ^ (b[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
