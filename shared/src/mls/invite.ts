/**
 * Invites (ARCHITECTURE.md sections 6.1 and 9): the link a person shares, the join request an
 * invitee leaves in the invite's mailbox, and the answer an admitter leaves at the invitee's
 * reply address. Relays see only mailbox addresses and ciphertext: the invite secret never
 * leaves the link and the Space's own (sealed) ops.
 *
 * Link payload: `0x01 ‖ CBOR [spaceId, secret, relays, expiresAtMs] ‖ SHA-256(first part)[0..4]`,
 * base64url without padding, as `conclave://join/<payload>` or `https://…/#join=<payload>`.
 */
import type { Aead } from '../ports/aead.js';
import type { Rng } from '../ports/env.js';
import { type DecodeLimits, decode, encode } from '../protocol/cbor.js';
import { SealError } from '../protocol/errors.js';
import type { SpaceId } from '../protocol/ids.js';
import { ID16_BYTES, KEY_BYTES, concatBytes, equalBytes } from '../protocol/ids.js';
import { MAX_MLS_MESSAGE_BYTES } from '../protocol/limits.js';
import { NONCE_BYTES } from '../protocol/seal.js';
import { sha256 } from '../crypto/sha256.js';
import { fromBase64Url, toBase64Url } from '../protocol/base64url.js';

export const INVITE_LINK_VERSION = 1;
/** Relays one link may name. */
export const MAX_LINK_RELAYS = 8;
/** Characters of one relay multiaddr in a link. */
export const MAX_RELAY_ADDR = 256;
const MAX_LINK_BYTES = 4096;
const CHECKSUM_BYTES = 4;

const te = new TextEncoder();
const INVITE_DOMAIN = te.encode('conclave/invite');
const REQUEST_DOMAIN = te.encode('conclave/join-request/1');

export interface InviteLink {
  readonly space: SpaceId;
  /** 32 random bytes: whoever holds them may ask to join. */
  readonly secret: Uint8Array;
  /** Multiaddrs of relays that carry the invite's mailbox. */
  readonly relays: readonly string[];
  readonly expiresAtMs: number;
}

export type InviteLinkErrorCode =
  'not-an-invite' | 'bad-encoding' | 'unsupported-version' | 'bad-checksum' | 'malformed';

export type ParsedLink =
  | { readonly ok: true; readonly link: InviteLink }
  | { readonly ok: false; readonly code: InviteLinkErrorCode; readonly message: string };

/** Where join requests for an invite go: SHA-256("conclave/invite" ‖ secret). */
export function inviteMailbox(secret: Uint8Array): Uint8Array {
  return sha256(concatBytes(INVITE_DOMAIN, secret));
}

function payloadOf(link: InviteLink): Uint8Array {
  const body = concatBytes(
    new Uint8Array([INVITE_LINK_VERSION]),
    encode([link.space, link.secret, [...link.relays], link.expiresAtMs]),
  );
  return concatBytes(body, sha256(body).subarray(0, CHECKSUM_BYTES));
}

/**
 * The link for `link`: `conclave://join/…`, or `<webOrigin>/#join=…` for the web app.
 *
 * @throws RangeError for a link that could not be parsed back (a bug in the caller).
 */
export function formatInviteLink(link: InviteLink, webOrigin?: string): string {
  if (link.space.length !== ID16_BYTES || link.secret.length !== KEY_BYTES) throw new RangeError('bad ids');
  if (link.relays.length > MAX_LINK_RELAYS || link.relays.some((r) => r.length > MAX_RELAY_ADDR)) {
    throw new RangeError('too many or too long relay addresses');
  }
  if (!Number.isSafeInteger(link.expiresAtMs) || link.expiresAtMs < 0) throw new RangeError('bad expiry');
  const p = toBase64Url(payloadOf(link));
  return webOrigin === undefined ? `conclave://join/${p}` : `${webOrigin.replace(/\/+$/, '')}/#join=${p}`;
}

/** Reads an invite link as pasted or opened: never throws, says what is wrong. */
export function parseInviteLink(text: string): ParsedLink {
  const fail = (code: InviteLinkErrorCode, message: string): ParsedLink => ({ ok: false, code, message });
  const t = text.trim();
  let p: string | undefined;
  const app = /^(?:web\+)?conclave:\/\/join\/([A-Za-z0-9_-]+)$/.exec(t);
  const web = /^https?:\/\/[^\s#]+#join=([A-Za-z0-9_-]+)$/.exec(t);
  if (app !== null) p = app[1];
  else if (web !== null) p = web[1];
  if (p === undefined) return fail('not-an-invite', 'not a Conclave invite link');
  if (p.length > Math.ceil((MAX_LINK_BYTES * 4) / 3)) return fail('malformed', 'the link is too long');
  const bytes = fromBase64Url(p);
  if (bytes === undefined) return fail('bad-encoding', 'the link is not valid base64url');
  if (bytes.length < 1 + CHECKSUM_BYTES) return fail('malformed', 'the link is too short');
  if (bytes[0] !== INVITE_LINK_VERSION) {
    return fail('unsupported-version', `invite link version ${String(bytes[0])} is not supported`);
  }
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  if (!equalBytes(sha256(body).subarray(0, CHECKSUM_BYTES), bytes.subarray(bytes.length - CHECKSUM_BYTES))) {
    return fail('bad-checksum', 'the link was mistyped or cut short');
  }
  const limits: DecodeLimits = {
    maxBytes: MAX_LINK_BYTES,
    maxArrayLength: MAX_LINK_RELAYS,
    maxStringBytes: MAX_RELAY_ADDR,
    maxDepth: 2,
  };
  let v;
  try {
    v = decode(body.subarray(1), limits);
  } catch (e) {
    return fail('malformed', `the link's contents: ${(e as Error).message}`);
  }
  if (!Array.isArray(v) || v.length !== 4) return fail('malformed', 'the link has the wrong fields');
  const [space, secret, relays, expiresAtMs] = v as unknown[];
  if (!(space instanceof Uint8Array) || space.length !== ID16_BYTES) return fail('malformed', 'bad Space id');
  if (!(secret instanceof Uint8Array) || secret.length !== KEY_BYTES) return fail('malformed', 'bad secret');
  if (!Array.isArray(relays) || !relays.every((r) => typeof r === 'string'))
    return fail('malformed', 'bad relays');
  if (typeof expiresAtMs !== 'number' || !Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0) {
    return fail('malformed', 'bad expiry');
  }
  return { ok: true, link: { space: space as SpaceId, secret, relays, expiresAtMs } };
}

/** What an invitee asks: to be added with this key package, answered at `replyTo`. */
export interface JoinRequest {
  /** The invitee's key package (an MLS message): its credential names user and device. */
  readonly keyPackage: Uint8Array;
  /** 32 random bytes: the mailbox where the answer goes. */
  readonly replyTo: Uint8Array;
  /** 32 random bytes: the key the answer is sealed with. */
  readonly replyKey: Uint8Array;
}

function requestKey(secret: Uint8Array): Uint8Array {
  return sha256(concatBytes(REQUEST_DOMAIN, secret));
}

/** A join request for the invite's mailbox, sealed with a key only holders of the secret have. */
export async function sealJoinRequest(
  aead: Aead,
  rng: Rng,
  secret: Uint8Array,
  request: JoinRequest,
): Promise<Uint8Array> {
  const nonce = rng.randomBytes(NONCE_BYTES);
  const plain = encode([1, request.keyPackage, request.replyTo, request.replyKey]);
  return concatBytes(nonce, await aead.encrypt(requestKey(secret), nonce, inviteMailbox(secret), plain));
}

export type OpenedRequest =
  | { readonly ok: true; readonly request: JoinRequest }
  | { readonly ok: false; readonly reason: 'forged' | 'malformed'; readonly detail: string };

/** A join request from the invite's mailbox: `forged` unless sealed with the invite's secret. */
export async function openJoinRequest(
  aead: Aead,
  secret: Uint8Array,
  bytes: Uint8Array,
): Promise<OpenedRequest> {
  if (bytes.length < NONCE_BYTES + 16 || bytes.length > MAX_MLS_MESSAGE_BYTES) {
    return { ok: false, reason: 'malformed', detail: 'wrong size' };
  }
  let plain: Uint8Array;
  try {
    plain = await aead.decrypt(
      requestKey(secret),
      bytes.subarray(0, NONCE_BYTES),
      inviteMailbox(secret),
      bytes.subarray(NONCE_BYTES),
    );
  } catch (e) {
    if (e instanceof SealError)
      return { ok: false, reason: 'forged', detail: 'not sealed with the invite secret' };
    throw e;
  }
  try {
    const v = decode(plain, {
      maxBytes: MAX_MLS_MESSAGE_BYTES,
      maxArrayLength: 4,
      maxStringBytes: MAX_MLS_MESSAGE_BYTES,
      maxDepth: 1,
    });
    if (Array.isArray(v) && v.length === 4 && v[0] === 1) {
      const [, keyPackage, replyTo, replyKey] = v as unknown[];
      if (
        keyPackage instanceof Uint8Array &&
        replyTo instanceof Uint8Array &&
        replyTo.length === KEY_BYTES &&
        replyKey instanceof Uint8Array &&
        replyKey.length === KEY_BYTES
      ) {
        return { ok: true, request: { keyPackage, replyTo, replyKey } };
      }
    }
  } catch {
    // reported below
  }
  return { ok: false, reason: 'malformed', detail: 'not a join request' };
}

/** Why an admitter refused a join request (sent back to the invitee). */
export type JoinRefusal =
  'unknown-invite' | 'revoked' | 'expired' | 'used-up' | 'banned' | 'already-member' | 'invalid-key-package';

export const JOIN_REFUSALS: readonly JoinRefusal[] = [
  'unknown-invite',
  'revoked',
  'expired',
  'used-up',
  'banned',
  'already-member',
  'invalid-key-package',
];

export type JoinAnswer =
  | { readonly kind: 'welcome'; readonly welcome: Uint8Array }
  | { readonly kind: 'refused'; readonly reason: JoinRefusal; readonly detail: string };

export async function sealJoinAnswer(
  aead: Aead,
  rng: Rng,
  request: JoinRequest,
  answer: JoinAnswer,
): Promise<Uint8Array> {
  const nonce = rng.randomBytes(NONCE_BYTES);
  const plain = encode(
    answer.kind === 'welcome' ? ['welcome', answer.welcome] : ['refused', answer.reason, answer.detail],
  );
  return concatBytes(nonce, await aead.encrypt(request.replyKey, nonce, request.replyTo, plain));
}

/** An answer from the reply mailbox; `undefined` when it is not one sealed with `replyKey`. */
export async function openJoinAnswer(
  aead: Aead,
  request: JoinRequest,
  bytes: Uint8Array,
): Promise<JoinAnswer | undefined> {
  if (bytes.length < NONCE_BYTES + 16) return undefined;
  try {
    const plain = await aead.decrypt(
      request.replyKey,
      bytes.subarray(0, NONCE_BYTES),
      request.replyTo,
      bytes.subarray(NONCE_BYTES),
    );
    const v = decode(plain, {
      maxBytes: MAX_MLS_MESSAGE_BYTES,
      maxArrayLength: 3,
      maxStringBytes: MAX_MLS_MESSAGE_BYTES,
      maxDepth: 1,
    });
    if (!Array.isArray(v)) return undefined;
    const [kind, a, b] = v as unknown[];
    if (kind === 'welcome' && v.length === 2 && a instanceof Uint8Array) return { kind, welcome: a };
    if (
      kind === 'refused' &&
      v.length === 3 &&
      typeof a === 'string' &&
      (JOIN_REFUSALS as readonly string[]).includes(a) &&
      typeof b === 'string'
    ) {
      return { kind, reason: a as JoinRefusal, detail: b };
    }
    return undefined;
  } catch {
    return undefined;
  }
}
