/**
 * The relay protocols' frames (ARCHITECTURE.md sections 7 to 9). Each protocol runs over one
 * long-lived libp2p stream per connection; each frame is one length-prefixed canonical CBOR
 * array `[kind, id, ...fields]`. Requests carry an id chosen by the side that asks, answers
 * repeat it, so many requests and subscriptions share one stream.
 *
 * `/conclave/mailbox/1`
 *   append     [1, id, address, message, commitEpoch | null]   → ack [16, id, seq] | refused
 *   subscribe  [2, id, address, afterSeq, credit]               → message [18, id, seq, msg]…,
 *                                                                 live [19, id, lastSeq] once the
 *                                                                 backlog is sent, ended [21, id, status]
 *   credit     [3, id, n]        the subscriber may take n more messages (flow control)
 *   unsubscribe [4, id]
 *   read       [5, id, address, afterSeq, limit]                → page [20, id, [[seq, msg]…], lastSeq]
 *   replicate  [6, id, address, message, commitEpoch | null]   a relay copying an append to a
 *                                                                 replica: like append, not copied further
 * `/conclave/blob/1`
 *   put [7, id, hash, chunk] → ok [22, id];  get [8, id, hash] → chunk [23, id, bytes]
 * `/conclave/sync/1`
 *   fetch [9, id, [opId…]] → ops [24, id, [sealed…]] (the ones the relay has, by SHA-256)
 * Any request can be answered with refused [17, id, status].
 *
 * Decoding happens once, here, with the limits of `limits.ts`; anything else is a `WireError`.
 */
import { type CborValue, type DecodeLimits, decode, encode } from './cbor.js';
import { CodecError } from './errors.js';
import { HASH_BYTES } from './ids.js';
import {
  MAX_BLOB_CHUNK_BYTES,
  MAX_FRAME_BYTES,
  MAX_MAILBOX_MESSAGE_BYTES,
  MAX_PAGE_MESSAGES,
  MAX_SUBSCRIPTION_CREDIT,
  MAX_SYNC_IDS,
} from './limits.js';

export const MAILBOX_PROTOCOL = '/conclave/mailbox/1';
export const BLOB_PROTOCOL = '/conclave/blob/1';
export const SYNC_PROTOCOL = '/conclave/sync/1';

/** Why a relay refused a request or ended a subscription. Stable numbers: they are on the wire. */
export const Status = {
  /** The frame did not decode or its fields are out of range. */
  malformed: 1,
  /** A message, chunk or frame is over its size limit. */
  tooLarge: 2,
  /** The peer sent more than its rate allows; retry later. */
  rateLimited: 3,
  /** The peer's storage quota (or the relay's) is used up. */
  quota: 4,
  /** Soft sequencing: another commit for this epoch was appended first (section 6.3). */
  epochTaken: 5,
  /** Nothing stored under that hash. */
  notFound: 6,
  /** A blob chunk's bytes do not hash to its address. */
  hashMismatch: 7,
  /** Too many subscriptions or pending requests on this connection. */
  tooMany: 8,
  /** The relay failed to store or read; nothing was written. */
  internal: 9,
  /** The id is already in use by another request of this session. */
  duplicateId: 10,
  /** The relay is shutting down. */
  shuttingDown: 11,
  /** The subscriber did not take messages fast enough; resubscribe from the last seq. */
  slowSubscriber: 12,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];
export type StatusName = keyof typeof Status;

const statusNames = new Map<number, StatusName>(
  (Object.entries(Status) as [StatusName, number][]).map(([name, code]) => [code, name]),
);

export function statusName(code: number): StatusName | undefined {
  return statusNames.get(code);
}

export const Kind = {
  append: 1,
  subscribe: 2,
  credit: 3,
  unsubscribe: 4,
  read: 5,
  replicate: 6,
  blobPut: 7,
  blobGet: 8,
  fetch: 9,
  ack: 16,
  refused: 17,
  message: 18,
  live: 19,
  page: 20,
  ended: 21,
  ok: 22,
  chunk: 23,
  ops: 24,
} as const;

/** A request id: chosen by the asking side, unique among its open requests. */
export type RequestId = number;

export type MailboxRequest =
  | {
      readonly kind: 'append' | 'replicate';
      readonly id: RequestId;
      readonly address: Uint8Array;
      readonly message: Uint8Array;
      readonly commitEpoch: number | undefined;
    }
  | {
      readonly kind: 'subscribe';
      readonly id: RequestId;
      readonly address: Uint8Array;
      readonly afterSeq: number;
      readonly credit: number;
    }
  | { readonly kind: 'credit'; readonly id: RequestId; readonly n: number }
  | { readonly kind: 'unsubscribe'; readonly id: RequestId }
  | {
      readonly kind: 'read';
      readonly id: RequestId;
      readonly address: Uint8Array;
      readonly afterSeq: number;
      readonly limit: number;
    };

export type BlobRequest =
  | {
      readonly kind: 'blobPut';
      readonly id: RequestId;
      readonly hash: Uint8Array;
      readonly chunk: Uint8Array;
    }
  | { readonly kind: 'blobGet'; readonly id: RequestId; readonly hash: Uint8Array };

export type SyncRequest = { readonly kind: 'fetch'; readonly id: RequestId; readonly opIds: Uint8Array[] };

export type Request = MailboxRequest | BlobRequest | SyncRequest;

export interface PagedMessage {
  readonly seq: number;
  readonly message: Uint8Array;
}

export type Answer =
  | { readonly kind: 'ack'; readonly id: RequestId; readonly seq: number }
  | { readonly kind: 'refused'; readonly id: RequestId; readonly status: number }
  | { readonly kind: 'message'; readonly id: RequestId; readonly seq: number; readonly message: Uint8Array }
  | { readonly kind: 'live'; readonly id: RequestId; readonly lastSeq: number }
  | {
      readonly kind: 'page';
      readonly id: RequestId;
      readonly messages: PagedMessage[];
      readonly lastSeq: number;
    }
  | { readonly kind: 'ended'; readonly id: RequestId; readonly status: number }
  | { readonly kind: 'ok'; readonly id: RequestId }
  | { readonly kind: 'chunk'; readonly id: RequestId; readonly bytes: Uint8Array }
  | { readonly kind: 'ops'; readonly id: RequestId; readonly sealed: Uint8Array[] };

export type WireErrorCode = 'malformed' | 'too-large' | 'unknown-kind';

/** A frame that does not decode, or whose fields are out of range. */
export class WireError extends Error {
  override readonly name = 'WireError';
  constructor(
    readonly code: WireErrorCode,
    message: string,
    /** The request id, when the frame got far enough to name one: the refusal can answer it. */
    readonly id?: RequestId,
  ) {
    super(message);
  }
}

const FRAME_LIMITS: DecodeLimits = {
  maxBytes: MAX_FRAME_BYTES,
  maxArrayLength: Math.max(MAX_PAGE_MESSAGES, MAX_SYNC_IDS, 8),
  // The frame bounds every string; field limits are checked after the request id is read, so
  // an oversize message is refused under its id instead of dropping the frame unanswered.
  maxStringBytes: MAX_FRAME_BYTES,
  maxDepth: 3,
};

const MAX_ID = 0xffff_ffff;

function frame(bytes: Uint8Array): readonly CborValue[] {
  let v: CborValue;
  try {
    v = decode(bytes, FRAME_LIMITS, { views: true });
  } catch (e) {
    if (e instanceof CodecError) {
      throw new WireError(e.code === 'too-large' ? 'too-large' : 'malformed', `frame: ${e.message}`);
    }
    if (e instanceof RangeError) throw new WireError('malformed', 'frame exhausted the decoder');
    throw e;
  }
  if (!Array.isArray(v) || v.length < 2) throw new WireError('malformed', 'a frame is [kind, id, …]');
  return v as readonly CborValue[];
}

class Fields {
  constructor(
    private readonly f: readonly CborValue[],
    readonly id: RequestId,
  ) {}

  bad(what: string, code: WireErrorCode = 'malformed'): never {
    throw new WireError(code, what, this.id);
  }

  count(n: number): void {
    if (this.f.length !== n) this.bad(`expected ${n} fields, got ${this.f.length}`);
  }

  uint(i: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.f[i];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) this.bad(`field ${i}: uint`);
    return v;
  }

  bytes(i: number, max: number, exact?: number): Uint8Array {
    const v = this.f[i];
    if (!(v instanceof Uint8Array)) this.bad(`field ${i}: bytes`);
    if (v.length > max) this.bad(`field ${i}: ${v.length} bytes is over ${max}`, 'too-large');
    if (exact !== undefined && v.length !== exact) this.bad(`field ${i}: ${exact} bytes expected`);
    return v;
  }

  array(i: number, max: number): readonly CborValue[] {
    const v = this.f[i];
    if (!Array.isArray(v)) this.bad(`field ${i}: array`);
    if (v.length > max) this.bad(`field ${i}: ${v.length} items is over ${max}`, 'too-large');
    return v as readonly CborValue[];
  }

  optionalUint(i: number): number | undefined {
    return this.f[i] === null ? undefined : this.uint(i);
  }
}

function fields(f: readonly CborValue[]): { kind: number; x: Fields } {
  const kind = f[0];
  const id = f[1];
  if (typeof kind !== 'number') throw new WireError('malformed', 'kind');
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id > MAX_ID) {
    throw new WireError('malformed', 'request id');
  }
  return { kind, x: new Fields(f, id) };
}

/** Decodes a request frame as a relay receives it. Throws `WireError`. */
export function decodeRequest(bytes: Uint8Array): Request {
  const { kind, x } = fields(frame(bytes));
  const id = x.id;
  switch (kind) {
    case Kind.append:
    case Kind.replicate:
      x.count(5);
      return {
        kind: kind === Kind.append ? 'append' : 'replicate',
        id,
        address: x.bytes(2, HASH_BYTES, HASH_BYTES),
        message: x.bytes(3, MAX_MAILBOX_MESSAGE_BYTES),
        commitEpoch: x.optionalUint(4),
      };
    case Kind.subscribe:
      x.count(5);
      return {
        kind: 'subscribe',
        id,
        address: x.bytes(2, HASH_BYTES, HASH_BYTES),
        afterSeq: x.uint(3),
        credit: x.uint(4, MAX_SUBSCRIPTION_CREDIT),
      };
    case Kind.credit:
      x.count(3);
      return { kind: 'credit', id, n: x.uint(2, MAX_SUBSCRIPTION_CREDIT) };
    case Kind.unsubscribe:
      x.count(2);
      return { kind: 'unsubscribe', id };
    case Kind.read:
      x.count(5);
      return {
        kind: 'read',
        id,
        address: x.bytes(2, HASH_BYTES, HASH_BYTES),
        afterSeq: x.uint(3),
        limit: Math.max(1, x.uint(4, MAX_PAGE_MESSAGES)),
      };
    case Kind.blobPut:
      x.count(4);
      return {
        kind: 'blobPut',
        id,
        hash: x.bytes(2, HASH_BYTES, HASH_BYTES),
        chunk: x.bytes(3, MAX_BLOB_CHUNK_BYTES),
      };
    case Kind.blobGet:
      x.count(3);
      return { kind: 'blobGet', id, hash: x.bytes(2, HASH_BYTES, HASH_BYTES) };
    case Kind.fetch: {
      x.count(3);
      const ids = x.array(2, MAX_SYNC_IDS);
      return {
        kind: 'fetch',
        id,
        opIds: ids.map((v, i) => {
          if (!(v instanceof Uint8Array) || v.length !== HASH_BYTES) return x.bad(`op id ${i}`);
          return v;
        }),
      };
    }
    default:
      return x.bad(`unknown request kind ${kind}`, 'unknown-kind');
  }
}

/** Decodes an answer frame as a client receives it. Throws `WireError`. */
export function decodeAnswer(bytes: Uint8Array): Answer {
  const { kind, x } = fields(frame(bytes));
  const id = x.id;
  switch (kind) {
    case Kind.ack:
      x.count(3);
      return { kind: 'ack', id, seq: x.uint(2) };
    case Kind.refused:
      x.count(3);
      return { kind: 'refused', id, status: x.uint(2, 0xffff) };
    case Kind.message:
      x.count(4);
      return { kind: 'message', id, seq: x.uint(2), message: x.bytes(3, MAX_MAILBOX_MESSAGE_BYTES) };
    case Kind.live:
      x.count(3);
      return { kind: 'live', id, lastSeq: x.uint(2) };
    case Kind.page: {
      x.count(4);
      const items = x.array(2, MAX_PAGE_MESSAGES);
      const messages = items.map((item, i): PagedMessage => {
        if (!Array.isArray(item) || item.length !== 2) return x.bad(`page item ${i}`);
        const [seq, message] = item as readonly CborValue[];
        if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1)
          return x.bad(`page item ${i}: seq`);
        if (!(message instanceof Uint8Array)) return x.bad(`page item ${i}: message`);
        return { seq, message };
      });
      return { kind: 'page', id, messages, lastSeq: x.uint(3) };
    }
    case Kind.ended:
      x.count(3);
      return { kind: 'ended', id, status: x.uint(2, 0xffff) };
    case Kind.ok:
      x.count(2);
      return { kind: 'ok', id };
    case Kind.chunk:
      x.count(3);
      return { kind: 'chunk', id, bytes: x.bytes(2, MAX_BLOB_CHUNK_BYTES) };
    case Kind.ops: {
      x.count(3);
      const items = x.array(2, MAX_SYNC_IDS);
      return {
        kind: 'ops',
        id,
        sealed: items.map((v, i) => {
          if (!(v instanceof Uint8Array)) return x.bad(`op ${i}`);
          return v;
        }),
      };
    }
    default:
      return x.bad(`unknown answer kind ${kind}`, 'unknown-kind');
  }
}

export function encodeRequest(r: Request): Uint8Array {
  switch (r.kind) {
    case 'append':
    case 'replicate':
      return encode([Kind[r.kind], r.id, r.address, r.message, r.commitEpoch ?? null]);
    case 'subscribe':
      return encode([Kind.subscribe, r.id, r.address, r.afterSeq, r.credit]);
    case 'credit':
      return encode([Kind.credit, r.id, r.n]);
    case 'unsubscribe':
      return encode([Kind.unsubscribe, r.id]);
    case 'read':
      return encode([Kind.read, r.id, r.address, r.afterSeq, r.limit]);
    case 'blobPut':
      return encode([Kind.blobPut, r.id, r.hash, r.chunk]);
    case 'blobGet':
      return encode([Kind.blobGet, r.id, r.hash]);
    case 'fetch':
      return encode([Kind.fetch, r.id, r.opIds]);
  }
}

export function encodeAnswer(a: Answer): Uint8Array {
  switch (a.kind) {
    case 'ack':
      return encode([Kind.ack, a.id, a.seq]);
    case 'refused':
      return encode([Kind.refused, a.id, a.status]);
    case 'message':
      return encode([Kind.message, a.id, a.seq, a.message]);
    case 'live':
      return encode([Kind.live, a.id, a.lastSeq]);
    case 'page':
      return encode([Kind.page, a.id, a.messages.map((m) => [m.seq, m.message]), a.lastSeq]);
    case 'ended':
      return encode([Kind.ended, a.id, a.status]);
    case 'ok':
      return encode([Kind.ok, a.id]);
    case 'chunk':
      return encode([Kind.chunk, a.id, a.bytes]);
    case 'ops':
      return encode([Kind.ops, a.id, a.sealed]);
  }
}

/**
 * The bytes of a `message` answer before its message: `encodeAnswer({ kind: 'message', id, seq,
 * message })` is these bytes followed by `message`'s own (`length` of them). A relay pushing one
 * message to many subscribers encodes only this per subscriber and sends the message's bytes
 * as they are.
 */
export function encodeMessageHead(id: RequestId, seq: number, length: number): Uint8Array {
  // Written by hand, not with `encode` (whose writer allocates a buffer per call): one per push.
  const out = new Uint8Array(2 + uintHeadSize(id) + uintHeadSize(seq) + uintHeadSize(length));
  out[0] = 0x84; // an array of 4
  out[1] = Kind.message;
  let at = writeHead(out, 2, 0, id);
  at = writeHead(out, at, 0, seq);
  writeHead(out, at, 2, length);
  return out;
}

/** Bytes of a CBOR head whose argument is `n` (a safe integer ≥ 0). */
function uintHeadSize(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1_0000_0000 ? 5 : 9;
}

/** Writes the CBOR head of major type `major` with argument `n` at `at`; returns where it ends. */
function writeHead(out: Uint8Array, at: number, major: number, n: number): number {
  const m = major << 5;
  const size = uintHeadSize(n);
  if (size === 1) {
    out[at] = m | n;
    return at + 1;
  }
  out[at] = m | (size === 2 ? 24 : size === 3 ? 25 : size === 5 ? 26 : 27);
  for (let i = size - 1, v = n; i >= 1; i--) {
    out[at + i] = v % 256;
    v = Math.floor(v / 256);
  }
  return at + size;
}

/** Which protocol a request belongs to: a relay refuses a request sent on another's stream. */
export function protocolOf(
  r: Request,
): typeof MAILBOX_PROTOCOL | typeof BLOB_PROTOCOL | typeof SYNC_PROTOCOL {
  switch (r.kind) {
    case 'blobPut':
    case 'blobGet':
      return BLOB_PROTOCOL;
    case 'fetch':
      return SYNC_PROTOCOL;
    default:
      return MAILBOX_PROTOCOL;
  }
}
