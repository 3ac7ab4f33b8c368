/**
 * The network port (ARCHITECTURE.md sections 8 and 9): what the peer core asks of one relay.
 * A `RelayLink` is a session with one relay over its three protocols (`/conclave/mailbox/1`,
 * `/conclave/blob/1`, `/conclave/sync/1`). Hosts supply links over libp2p (WebSockets, in Node
 * and in the browser worker); `RelayPool` (net/pool.ts) spreads work over several links, fails
 * over and keeps the outbox; unit tests use in-memory links.
 */
import type { AppendResult, MailboxMessage } from './mailbox.js';

export type NetworkErrorCode =
  /** The relay could not be reached, or the connection dropped before the answer. */
  | 'unreachable'
  /** No answer within the request's time limit. */
  | 'timeout'
  /** The relay refused the request; `status` holds its `Status` name. */
  | 'refused'
  /** The relay sent something that does not decode. */
  | 'protocol'
  /** The link was closed locally. */
  | 'closed';

export class NetworkError extends Error {
  override readonly name = 'NetworkError';
  constructor(
    readonly code: NetworkErrorCode,
    message: string,
    /** For `refused`: the relay's status name (wire.ts `Status`), e.g. `rateLimited`, `quota`. */
    readonly status?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a subscription delivers, in order. */
export interface SubscriptionHandler {
  /** One mailbox message; `seq` grows by at least one each call. Called in seq order, never concurrently. */
  onMessage(seq: number, message: Uint8Array): void | Promise<void>;
  /** The backlog up to `lastSeq` has been delivered; later messages are live. */
  onLive?(lastSeq: number): void;
  /**
   * The subscription ended: the relay dropped it (`NetworkError('refused', …, 'slowSubscriber')`),
   * the connection died (`unreachable`) or it was closed locally (`closed`). No call follows.
   */
  onEnd?(error: NetworkError): void;
}

export interface Subscription {
  /** Stops the subscription; `onEnd` is called with a `closed` error. */
  close(): void;
}

export interface ReadPage {
  readonly messages: MailboxMessage[];
  /** The relay's last seq at this address when it answered. */
  readonly lastSeq: number;
}

export interface RelayLink {
  /** The relay's peer id (string form): what cursors are kept per. */
  readonly relay: string;
  /** False once the connection is gone; a closed link never reopens (make a new one). */
  readonly open: boolean;
  /**
   * Appends `message` at `address`; resolves with its seq once the relay made it durable, or
   * `refused: epoch-taken` for a second commit on an epoch (section 6.3). Appending the same
   * bytes again returns the seq they already have.
   *
   * @throws NetworkError `unreachable` | `timeout` | `refused` (rate limit, quota, too large) | `closed`
   */
  append(address: Uint8Array, message: Uint8Array, options?: { commitEpoch?: number }): Promise<AppendResult>;
  /** One page of the messages after `afterSeq`, oldest first (at most `limit`). */
  read(address: Uint8Array, afterSeq: number, limit?: number): Promise<ReadPage>;
  /**
   * Streams the messages after `afterSeq`, then every new one, until closed or ended. Flow
   * control is handled here: a handler that is slow to resolve slows the relay, which pages
   * from disk rather than buffering.
   */
  subscribe(address: Uint8Array, afterSeq: number, handler: SubscriptionHandler): Subscription;
  /** The sealed ops among `opIds` that the relay holds (by SHA-256 of their bytes). */
  fetch(opIds: readonly Uint8Array[]): Promise<Uint8Array[]>;
  /** Stores a blob chunk at its SHA-256 address. @throws NetworkError `refused` (`hashMismatch`, `quota`…) */
  putBlob(hash: Uint8Array, chunk: Uint8Array): Promise<void>;
  /** A blob chunk, or undefined when the relay has none at `hash`. */
  getBlob(hash: Uint8Array): Promise<Uint8Array | undefined>;
  /** Closes the session; pending requests reject with `closed`, subscriptions end. */
  close(): Promise<void>;
}

/** Opens links to relays by multiaddr (with `/p2p/<peer id>`). */
export interface RelayConnector {
  /** @throws NetworkError `unreachable` | `timeout` */
  connect(relayAddress: string): Promise<RelayLink>;
  /** Stops the host's network node. */
  stop(): Promise<void>;
}
