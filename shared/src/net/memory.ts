/**
 * An in-memory relay host for unit tests (ARCHITECTURE.md sections 8 and 9): `MemoryRelay` keeps
 * mailboxes, ops and blobs the way a relay does, and `MemoryConnector` hands out `RelayLink`s to
 * it. Test controls model what the network does to a client: the relay goes down and comes back
 * (`down()`/`up()`), appends are slow (`appendDelayMs`), acknowledgements are lost after the
 * message was stored (`dropAcks`), requests are refused (`refuseAppends`), subscribers are dropped
 * as slow (`slowSubscriberLimit`, `endSubscriptions`), and a relay lies (`misbehave`).
 */
import { sha256 } from '../crypto/sha256.js';
import type { AppendResult, MailboxMessage } from '../ports/mailbox.js';
import { NetworkError } from '../ports/network.js';
import type {
  ReadPage,
  RelayConnector,
  RelayLink,
  Subscription,
  SubscriptionHandler,
} from '../ports/network.js';
import { bytesKey, equalBytes } from '../protocol/ids.js';
import { MAX_BLOB_CHUNK_BYTES, MAX_MAILBOX_MESSAGE_BYTES, MAX_PAGE_MESSAGES } from '../protocol/limits.js';
import type { StatusName } from '../protocol/wire.js';
import type { Schedule } from './pool.js';

/** The multiaddr `MemoryConnector` knows a relay by, ending in `/p2p/<peer id>` like a real one. */
export function memoryAddress(peerId: string): string {
  return `/memory/${peerId}/p2p/${peerId}`;
}

export interface MemoryRelayOptions {
  /** Timers for `appendDelayMs`; real timers by default. */
  readonly schedule?: Schedule;
}

interface Box {
  readonly messages: Uint8Array[];
  /** `bytesKey(sha256(message))` → seq, so a repeated append answers with the first seq. */
  readonly seqOf: Map<string, number>;
  /** Epochs that already have a commit (soft sequencing, section 6.3). */
  readonly epochs: Set<number>;
  readonly subs: Set<MemorySubscription>;
}

function defaultSchedule(fn: () => void, ms: number): () => void {
  const t = setTimeout(fn, ms);
  return () => {
    clearTimeout(t);
  };
}

/** One relay's state. Survives `down()`/`up()` like a relay's disk survives a restart. */
export class MemoryRelay {
  private readonly boxes = new Map<string, Box>();
  private readonly ops = new Map<string, Uint8Array>();
  private readonly blobs = new Map<string, Uint8Array>();
  private readonly links = new Set<MemoryLink>();
  private readonly schedule: Schedule;
  private running = true;

  /** Milliseconds each append waits before it is stored and answered. */
  appendDelayMs = 0;
  /**
   * How many of the next appends lose their acknowledgement: the message is stored (and pushed
   * to subscribers) but the call rejects with `timeout`, as when the answer never arrives.
   * `Infinity` drops every ack.
   */
  dropAcks = 0;
  /** When set, every append is refused with this status (nothing stored). */
  refuseAppends: StatusName | undefined;
  /**
   * A live subscription with more than this many messages appended and not yet taken by its
   * handler is ended with `refused`/`slowSubscriber`, as a relay does to bound its buffers.
   */
  slowSubscriberLimit = Infinity;
  /** Lies a test scripts on purpose: what `fetch` and `getBlob` answer instead of the truth. */
  misbehave: {
    fetch?: (opIds: readonly Uint8Array[]) => Uint8Array[];
    getBlob?: (hash: Uint8Array) => Uint8Array | undefined;
  } = {};
  /** Append requests received (including repeats and refused ones): shows the client's retries. */
  appendCalls = 0;
  /** Messages handed to subscription handlers, over all subscriptions: shows what was pushed twice. */
  pushCount = 0;

  constructor(
    /** The relay's peer id: what clients key their cursors by. */
    readonly peerId: string,
    options: MemoryRelayOptions = {},
  ) {
    this.schedule = options.schedule ?? defaultSchedule;
  }

  /** The multiaddr `MemoryConnector` knows this relay by. */
  get address(): string {
    return memoryAddress(this.peerId);
  }

  get isUp(): boolean {
    return this.running;
  }

  /** The relay goes away: links die (`unreachable`), and connecting fails until `up()`. */
  down(): void {
    this.running = false;
    for (const link of [...this.links])
      link.die(new NetworkError('unreachable', `relay ${this.peerId} is down`));
  }

  up(): void {
    this.running = true;
  }

  /** Ends every live subscription at `address` (all when omitted) as the relay would, with `status`. */
  endSubscriptions(address?: Uint8Array, status: StatusName = 'slowSubscriber'): void {
    const boxes = address === undefined ? [...this.boxes.values()] : [this.boxes.get(bytesKey(address))];
    for (const box of boxes) {
      for (const sub of [...(box?.subs ?? [])]) {
        sub.end(new NetworkError('refused', `subscription ended: ${status}`, status));
      }
    }
  }

  /** The messages stored at `address`, in seq order (copies). */
  messages(address: Uint8Array): Uint8Array[] {
    return (this.boxes.get(bytesKey(address))?.messages ?? []).map((m) => m.slice());
  }

  /** Live subscriptions at `address`. */
  subscriberCount(address: Uint8Array): number {
    return this.boxes.get(bytesKey(address))?.subs.size ?? 0;
  }

  /** Stores a message directly, as if another client appended it. */
  inject(address: Uint8Array, message: Uint8Array, commitEpoch?: number): AppendResult {
    return this.store(address, message, commitEpoch);
  }

  /** @internal A new session, for `MemoryConnector`. */
  openLink(): MemoryLink {
    if (!this.running) throw new NetworkError('unreachable', `relay ${this.peerId} is down`);
    const link = new MemoryLink(this);
    this.links.add(link);
    return link;
  }

  /** @internal */
  forget(link: MemoryLink): void {
    this.links.delete(link);
  }

  /** @internal */
  delay(): Promise<void> {
    const ms = this.appendDelayMs;
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => this.schedule(resolve, ms));
  }

  private box(address: Uint8Array): Box {
    const k = bytesKey(address);
    let box = this.boxes.get(k);
    if (box === undefined) {
      box = { messages: [], seqOf: new Map(), epochs: new Set(), subs: new Set() };
      this.boxes.set(k, box);
    }
    return box;
  }

  /** @internal */
  store(address: Uint8Array, message: Uint8Array, commitEpoch: number | undefined): AppendResult {
    const box = this.box(address);
    const hash = bytesKey(sha256(message));
    // A repeat (a retry whose ack was lost) gets its first seq, even for a commit: it is the
    // same commit, not a second one on the epoch.
    const existing = box.seqOf.get(hash);
    if (existing !== undefined) return { kind: 'appended', seq: existing };
    if (commitEpoch !== undefined) {
      if (box.epochs.has(commitEpoch)) return { kind: 'refused', reason: 'epoch-taken' };
      box.epochs.add(commitEpoch);
    }
    const copy = message.slice();
    box.messages.push(copy);
    const seq = box.messages.length;
    box.seqOf.set(hash, seq);
    if (!this.ops.has(hash)) this.ops.set(hash, copy);
    for (const sub of [...box.subs]) sub.wake();
    return { kind: 'appended', seq };
  }

  /** @internal */
  page(address: Uint8Array, afterSeq: number, limit: number): ReadPage {
    const box = this.boxes.get(bytesKey(address));
    const all = box?.messages ?? [];
    const from = Math.max(0, Math.floor(afterSeq));
    const n = Math.max(1, Math.min(limit, MAX_PAGE_MESSAGES));
    const messages: MailboxMessage[] = all
      .slice(from, from + n)
      .map((message, i) => ({ seq: from + i + 1, message: message.slice() }));
    return { messages, lastSeq: all.length };
  }

  /** @internal */
  attach(address: Uint8Array, sub: MemorySubscription): Uint8Array[] {
    const box = this.box(address);
    box.subs.add(sub);
    return box.messages;
  }

  /** @internal */
  detach(address: Uint8Array, sub: MemorySubscription): void {
    this.boxes.get(bytesKey(address))?.subs.delete(sub);
  }

  /** @internal */
  findOps(opIds: readonly Uint8Array[]): Uint8Array[] {
    if (this.misbehave.fetch !== undefined) return this.misbehave.fetch(opIds);
    const out: Uint8Array[] = [];
    for (const id of opIds) {
      const op = this.ops.get(bytesKey(id));
      if (op !== undefined) out.push(op.slice());
    }
    return out;
  }

  /** @internal */
  putBlob(hash: Uint8Array, chunk: Uint8Array): void {
    if (chunk.length > MAX_BLOB_CHUNK_BYTES)
      throw new NetworkError('refused', 'blob chunk too large', 'tooLarge');
    if (!equalBytes(sha256(chunk), hash)) {
      throw new NetworkError('refused', 'chunk does not hash to its address', 'hashMismatch');
    }
    this.blobs.set(bytesKey(hash), chunk.slice());
  }

  /** @internal */
  getBlob(hash: Uint8Array): Uint8Array | undefined {
    if (this.misbehave.getBlob !== undefined) return this.misbehave.getBlob(hash);
    return this.blobs.get(bytesKey(hash))?.slice();
  }
}

/** @internal A subscription at a `MemoryRelay`: backlog, then live, one handler call at a time. */
class MemorySubscription implements Subscription {
  private readonly log: Uint8Array[];
  /** The seq of the next message to hand to the handler. */
  private next: number;
  private running = false;
  private live = false;
  private ended = false;

  constructor(
    private readonly relay: MemoryRelay,
    private readonly link: MemoryLink,
    private readonly address: Uint8Array,
    afterSeq: number,
    private readonly handler: SubscriptionHandler,
  ) {
    this.next = Math.max(0, Math.floor(afterSeq)) + 1;
    this.log = relay.attach(address, this);
    // Never call the handler from inside `subscribe`.
    queueMicrotask(() => {
      this.wake();
    });
  }

  close(): void {
    this.end(new NetworkError('closed', 'subscription closed'));
  }

  end(error: NetworkError): void {
    if (this.ended) return;
    this.ended = true;
    this.relay.detach(this.address, this);
    this.link.subs.delete(this);
    this.handler.onEnd?.(error);
  }

  wake(): void {
    if (this.ended) return;
    if (this.live && this.log.length - (this.next - 1) > this.relay.slowSubscriberLimit) {
      this.end(new NetworkError('refused', 'subscriber too slow', 'slowSubscriber'));
      return;
    }
    if (this.running) return;
    this.running = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      while (!this.ended) {
        const message = this.log[this.next - 1];
        if (message === undefined) {
          if (!this.live) {
            this.live = true;
            // The relay's last seq, as a real relay reports it (below the cursor after a reset).
            this.handler.onLive?.(this.log.length);
          }
          return;
        }
        const seq = this.next++;
        this.relay.pushCount++;
        await this.handler.onMessage(seq, message.slice());
      }
    } catch (e) {
      this.end(new NetworkError('closed', 'subscription handler failed', undefined, { cause: e }));
    } finally {
      this.running = false;
    }
  }
}

/** @internal A session with a `MemoryRelay`, as `RelayLink` documents it. */
class MemoryLink implements RelayLink {
  readonly relay: string;
  readonly subs = new Set<MemorySubscription>();
  private readonly pending = new Set<(error: NetworkError) => void>();
  private failure: NetworkError | undefined;

  constructor(private readonly host: MemoryRelay) {
    this.relay = host.peerId;
  }

  get open(): boolean {
    return this.failure === undefined;
  }

  /** The connection is gone: pending requests reject and subscriptions end with `error`. */
  die(error: NetworkError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.host.forget(this);
    for (const reject of [...this.pending]) reject(error);
    this.pending.clear();
    for (const sub of [...this.subs]) sub.end(error);
  }

  close(): Promise<void> {
    this.die(new NetworkError('closed', 'link closed'));
    return Promise.resolve();
  }

  /** Runs `f` as one request: it rejects with the link's failure if the link dies first. */
  private request<T>(f: () => T | Promise<T>): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const fail = (error: NetworkError): void => {
        reject(error);
      };
      this.pending.add(fail);
      void (async () => {
        try {
          const value = await f();
          if (this.pending.delete(fail)) resolve(value);
        } catch (e) {
          if (this.pending.delete(fail)) reject(e instanceof Error ? e : new Error(String(e)));
        }
      })();
    });
  }

  append(
    address: Uint8Array,
    message: Uint8Array,
    options: { commitEpoch?: number } = {},
  ): Promise<AppendResult> {
    return this.request(async () => {
      this.host.appendCalls++;
      const refused = this.host.refuseAppends;
      if (refused !== undefined) throw new NetworkError('refused', `append refused: ${refused}`, refused);
      if (message.length > MAX_MAILBOX_MESSAGE_BYTES) {
        throw new NetworkError('refused', 'message too large', 'tooLarge');
      }
      const bytes = message.slice();
      const at = address.slice();
      await this.host.delay();
      // The link may have died while the append waited: then nothing is stored.
      if (this.failure !== undefined) throw this.failure;
      const result = this.host.store(at, bytes, options.commitEpoch);
      if (this.host.dropAcks > 0) {
        this.host.dropAcks--;
        throw new NetworkError('timeout', 'append acknowledgement lost');
      }
      return result;
    });
  }

  read(address: Uint8Array, afterSeq: number, limit = MAX_PAGE_MESSAGES): Promise<ReadPage> {
    return this.request(() => this.host.page(address, afterSeq, limit));
  }

  subscribe(address: Uint8Array, afterSeq: number, handler: SubscriptionHandler): Subscription {
    if (this.failure !== undefined) {
      const error = this.failure;
      let closed = false;
      queueMicrotask(() => {
        if (!closed) handler.onEnd?.(error);
      });
      return {
        close: () => {
          closed = true;
        },
      };
    }
    const sub = new MemorySubscription(this.host, this, address.slice(), afterSeq, handler);
    this.subs.add(sub);
    return sub;
  }

  fetch(opIds: readonly Uint8Array[]): Promise<Uint8Array[]> {
    return this.request(() => this.host.findOps(opIds));
  }

  putBlob(hash: Uint8Array, chunk: Uint8Array): Promise<void> {
    return this.request(() => {
      this.host.putBlob(hash, chunk);
    });
  }

  getBlob(hash: Uint8Array): Promise<Uint8Array | undefined> {
    return this.request(() => this.host.getBlob(hash));
  }
}

/** A `RelayConnector` over `MemoryRelay`s, by multiaddr. */
export class MemoryConnector implements RelayConnector {
  private readonly relays = new Map<string, MemoryRelay>();
  private readonly made = new Set<RelayLink>();
  private stopped = false;
  /** Connection attempts made, successful or not. */
  connectCalls = 0;

  /** Knows each relay by its `address` (`memoryAddress(peerId)`). */
  constructor(relays: Iterable<MemoryRelay> = []) {
    for (const relay of relays) this.add(relay.address, relay);
  }

  add(address: string, relay: MemoryRelay): void {
    this.relays.set(address, relay);
  }

  connect(relayAddress: string): Promise<RelayLink> {
    this.connectCalls++;
    if (this.stopped) return Promise.reject(new NetworkError('unreachable', 'connector stopped'));
    const relay = this.relays.get(relayAddress);
    if (relay === undefined)
      return Promise.reject(new NetworkError('unreachable', `no relay at ${relayAddress}`));
    try {
      const link = relay.openLink();
      this.made.add(link);
      return Promise.resolve(link);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.made].map((link) => link.close()));
    this.made.clear();
  }
}
