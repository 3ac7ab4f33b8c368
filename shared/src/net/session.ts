/**
 * A client's session with one relay: the `RelayLink` port over the three relay protocols,
 * each one long-lived stream carrying many requests by id (protocol/wire.ts).
 */
import type { Stream } from '@libp2p/interface';
import { sha256 } from '../crypto/sha256.js';
import { equalBytes } from '../protocol/ids.js';
import { MAX_FRAME_BYTES, MAX_PAGE_MESSAGES } from '../protocol/limits.js';
import {
  type Answer,
  BLOB_PROTOCOL,
  MAILBOX_PROTOCOL,
  type Request,
  type RequestId,
  SYNC_PROTOCOL,
  Status,
  WireError,
  decodeAnswer,
  encodeRequest,
  statusName,
} from '../protocol/wire.js';
import type { AppendResult } from '../ports/mailbox.js';
import {
  NetworkError,
  type ReadPage,
  type RelayLink,
  type Subscription,
  type SubscriptionHandler,
} from '../ports/network.js';
import { type FrameChannel, frameChannel } from './frames.js';

type Protocol = typeof MAILBOX_PROTOCOL | typeof BLOB_PROTOCOL | typeof SYNC_PROTOCOL;

export interface SessionOptions {
  /** Milliseconds a request waits for its answer before failing with `timeout`. */
  readonly requestTimeoutMs?: number;
  /** Messages a subscription lets the relay send ahead of the handler (flow-control window). */
  readonly window?: number;
}

const DEFAULT_TIMEOUT_MS = 20_000;
const DEFAULT_WINDOW = 512;

interface Pending {
  readonly protocol: Protocol;
  readonly resolve: (a: Answer) => void;
  readonly reject: (e: NetworkError) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

interface Channel {
  readonly frames: FrameChannel;
  readonly ids: Set<RequestId>;
}

class SubscriptionState implements Subscription {
  private chain: Promise<void> = Promise.resolve();
  private consumed = 0;
  ended = false;

  constructor(
    readonly id: RequestId,
    private readonly session: RelaySession,
    private readonly handler: SubscriptionHandler,
    private readonly window: number,
  ) {}

  deliver(a: Answer): void {
    if (this.ended) return;
    // Fast path: nothing queued and a handler that finishes synchronously needs no promise.
    if (this.idle && a.kind === 'message') {
      let r: void | Promise<void>;
      try {
        r = this.handler.onMessage(a.seq, a.message);
      } catch (e) {
        this.end(new NetworkError('closed', 'the subscription handler failed', undefined, { cause: e }));
        this.session.unsubscribe(this.id);
        return;
      }
      if (r === undefined) {
        this.consumedOne();
        return;
      }
      this.idle = false;
      this.chain = r.then(() => {
        this.consumedOne();
      });
      this.watch();
      return;
    }
    this.idle = false;
    this.chain = this.chain.then(async () => {
      if (this.ended) return;
      if (a.kind === 'message') {
        await this.handler.onMessage(a.seq, a.message);
        this.consumedOne();
      } else if (a.kind === 'live') {
        this.handler.onLive?.(a.lastSeq);
      }
    });
    this.watch();
  }

  /** Pending: handler calls queued behind the chain; when it empties, the fast path resumes. */
  private idle = true;
  private queued = 0;

  private watch(): void {
    const mine = ++this.queued;
    this.chain.then(
      () => {
        if (mine === this.queued) this.idle = true;
      },
      (e: unknown) => {
        this.end(new NetworkError('closed', 'the subscription handler failed', undefined, { cause: e }));
        this.session.unsubscribe(this.id);
      },
    );
  }

  private consumedOne(): void {
    if (++this.consumed >= this.window / 2) {
      this.session.grant(this.id, this.consumed);
      this.consumed = 0;
    }
  }

  /** Ends after the messages already queued for the handler were handled. */
  end(error: NetworkError): void {
    if (this.ended) return;
    void this.chain.finally(() => {
      if (this.ended) return;
      this.ended = true;
      this.handler.onEnd?.(error);
    });
  }

  close(): void {
    if (this.ended) return;
    this.session.unsubscribe(this.id);
    this.ended = true;
    this.handler.onEnd?.(new NetworkError('closed', 'subscription closed'));
  }
}

function refusedError(status: number, what: string): NetworkError {
  const name = statusName(status) ?? `status-${status}`;
  return new NetworkError('refused', `${what}: refused (${name})`, name);
}

export class RelaySession implements RelayLink {
  private readonly channels = new Map<Protocol, Promise<Channel>>();
  private readonly pending = new Map<RequestId, Pending>();
  private readonly subs = new Map<RequestId, SubscriptionState>();
  private nextId = 1;
  private closed = false;
  private readonly timeoutMs: number;
  private readonly window: number;

  constructor(
    readonly relay: string,
    private readonly openStream: (protocol: Protocol) => Promise<Stream>,
    options: SessionOptions = {},
    private readonly onGone?: () => void,
  ) {
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.window = options.window ?? DEFAULT_WINDOW;
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Opens the mailbox stream now, so a failed connection shows at connect time. */
  async start(): Promise<void> {
    await this.channel(MAILBOX_PROTOCOL);
  }

  private channel(protocol: Protocol): Promise<Channel> {
    if (this.closed) return Promise.reject(new NetworkError('closed', 'link closed'));
    let ch = this.channels.get(protocol);
    if (ch === undefined) {
      ch = this.openChannel(protocol);
      this.channels.set(protocol, ch);
      ch.catch(() => this.channels.delete(protocol));
    }
    return ch;
  }

  private async openChannel(protocol: Protocol): Promise<Channel> {
    let stream: Stream;
    try {
      stream = await this.openStream(protocol);
    } catch (e) {
      throw new NetworkError('unreachable', `cannot open ${protocol} to ${this.relay}`, undefined, {
        cause: e,
      });
    }
    const ids = new Set<RequestId>();
    const frames = frameChannel(stream, MAX_FRAME_BYTES, {
      onFrame: (frame) => {
        this.onFrame(frame);
      },
      onClose: (reason) => {
        this.onChannelClosed(protocol, ids, reason);
      },
    });
    return { frames, ids };
  }

  private onFrame(frame: Uint8Array): void {
    let a: Answer;
    try {
      a = decodeAnswer(frame);
    } catch (e) {
      if (e instanceof WireError) {
        // A relay that speaks nonsense is not trusted with the rest of the session.
        this.fail(new NetworkError('protocol', `bad frame from ${this.relay}: ${e.message}`));
        return;
      }
      throw e;
    }
    const sub = this.subs.get(a.id);
    if (sub !== undefined) {
      if (a.kind === 'ended' || a.kind === 'refused') {
        this.subs.delete(a.id);
        sub.end(refusedError(a.status, 'subscription'));
      } else {
        sub.deliver(a);
      }
      return;
    }
    const p = this.pending.get(a.id);
    if (p === undefined) return;
    this.pending.delete(a.id);
    clearTimeout(p.timer);
    p.resolve(a);
  }

  private onChannelClosed(protocol: Protocol, ids: Set<RequestId>, reason: string | undefined): void {
    this.channels.delete(protocol);
    const error = new NetworkError(
      'unreachable',
      `connection to ${this.relay} lost${reason ? `: ${reason}` : ''}`,
    );
    for (const id of ids) {
      const p = this.pending.get(id);
      if (p !== undefined) {
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.reject(error);
      }
      const sub = this.subs.get(id);
      if (sub !== undefined) {
        this.subs.delete(id);
        sub.end(error);
      }
    }
    if (protocol === MAILBOX_PROTOCOL) this.fail(error);
  }

  private fail(error: NetworkError): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(error);
    }
    for (const [id, sub] of this.subs) {
      this.subs.delete(id);
      sub.end(error);
    }
    for (const ch of this.channels.values()) {
      void ch.then(
        (c) => {
          c.frames.abort(error.message);
        },
        () => undefined,
      );
    }
    this.channels.clear();
    this.onGone?.();
  }

  private async request(protocol: Protocol, make: (id: RequestId) => Request): Promise<Answer> {
    const ch = await this.channel(protocol);
    const id = this.nextId++;
    return new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        ch.ids.delete(id);
        reject(new NetworkError('timeout', `${protocol} request to ${this.relay} timed out`));
      }, this.timeoutMs);
      this.pending.set(id, {
        protocol,
        resolve: (a) => {
          ch.ids.delete(id);
          resolve(a);
        },
        reject: (e) => {
          ch.ids.delete(id);
          reject(e);
        },
        timer,
      });
      ch.ids.add(id);
      if (!ch.frames.send(encodeRequest(make(id))) && !ch.frames.open) {
        this.pending.delete(id);
        ch.ids.delete(id);
        clearTimeout(timer);
        reject(new NetworkError('unreachable', `connection to ${this.relay} lost`));
      }
    });
  }

  private unexpected(a: Answer, what: string): never {
    if (a.kind === 'refused') throw refusedError(a.status, what);
    throw new NetworkError('protocol', `${what}: unexpected ${a.kind} from ${this.relay}`);
  }

  async append(
    address: Uint8Array,
    message: Uint8Array,
    options: { commitEpoch?: number } = {},
  ): Promise<AppendResult> {
    const a = await this.request(MAILBOX_PROTOCOL, (id) => ({
      kind: 'append',
      id,
      address,
      message,
      commitEpoch: options.commitEpoch,
    }));
    if (a.kind === 'ack') return { kind: 'appended', seq: a.seq };
    if (a.kind === 'refused' && a.status === Status.epochTaken)
      return { kind: 'refused', reason: 'epoch-taken' };
    return this.unexpected(a, 'append');
  }

  /** Relay to relay: stores a copy at a replica, which does not copy it further (it gossips it only to relays beyond the replicas). */
  async replicate(address: Uint8Array, message: Uint8Array, commitEpoch: number | undefined): Promise<void> {
    const a = await this.request(MAILBOX_PROTOCOL, (id) => ({
      kind: 'replicate',
      id,
      address,
      message,
      commitEpoch,
    }));
    if (a.kind !== 'ack') this.unexpected(a, 'replicate');
  }

  async read(address: Uint8Array, afterSeq: number, limit = MAX_PAGE_MESSAGES): Promise<ReadPage> {
    const a = await this.request(MAILBOX_PROTOCOL, (id) => ({ kind: 'read', id, address, afterSeq, limit }));
    if (a.kind !== 'page') return this.unexpected(a, 'read');
    return { messages: a.messages, lastSeq: a.lastSeq };
  }

  subscribe(address: Uint8Array, afterSeq: number, handler: SubscriptionHandler): Subscription {
    const id = this.nextId++;
    const sub = new SubscriptionState(id, this, handler, this.window);
    if (this.closed) {
      sub.end(new NetworkError('closed', 'link closed'));
      return sub;
    }
    this.subs.set(id, sub);
    this.channel(MAILBOX_PROTOCOL).then(
      (ch) => {
        if (sub.ended) return;
        ch.ids.add(id);
        ch.frames.send(encodeRequest({ kind: 'subscribe', id, address, afterSeq, credit: this.window }));
      },
      (e: unknown) => {
        this.subs.delete(id);
        sub.end(e instanceof NetworkError ? e : new NetworkError('unreachable', 'no mailbox stream'));
      },
    );
    return sub;
  }

  /** @internal Flow control: the subscriber handled `n` more messages. */
  grant(id: RequestId, n: number): void {
    void this.channel(MAILBOX_PROTOCOL).then(
      (ch) => ch.frames.send(encodeRequest({ kind: 'credit', id, n })),
      () => undefined,
    );
  }

  /** @internal */
  unsubscribe(id: RequestId): void {
    if (!this.subs.delete(id)) return;
    void this.channel(MAILBOX_PROTOCOL).then(
      (ch) => {
        ch.ids.delete(id);
        ch.frames.send(encodeRequest({ kind: 'unsubscribe', id }));
      },
      () => undefined,
    );
  }

  async fetch(opIds: readonly Uint8Array[]): Promise<Uint8Array[]> {
    if (opIds.length === 0) return [];
    const a = await this.request(SYNC_PROTOCOL, (id) => ({ kind: 'fetch', id, opIds: [...opIds] }));
    if (a.kind !== 'ops') return this.unexpected(a, 'fetch');
    // Keep only what was asked for: a relay cannot slip in other bytes.
    return a.sealed.filter((s) => {
      const h = sha256(s);
      return opIds.some((id) => equalBytes(id, h));
    });
  }

  async putBlob(hash: Uint8Array, chunk: Uint8Array): Promise<void> {
    const a = await this.request(BLOB_PROTOCOL, (id) => ({ kind: 'blobPut', id, hash, chunk }));
    if (a.kind !== 'ok') this.unexpected(a, 'blob put');
  }

  async getBlob(hash: Uint8Array): Promise<Uint8Array | undefined> {
    const a = await this.request(BLOB_PROTOCOL, (id) => ({ kind: 'blobGet', id, hash }));
    if (a.kind === 'refused' && a.status === Status.notFound) return undefined;
    if (a.kind !== 'chunk') return this.unexpected(a, 'blob get');
    if (!equalBytes(sha256(a.bytes), hash)) {
      throw new NetworkError('protocol', `blob chunk from ${this.relay} does not match its hash`);
    }
    return a.bytes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const channels = [...this.channels.values()];
    this.fail(new NetworkError('closed', 'link closed'));
    await Promise.allSettled(channels);
  }
}
