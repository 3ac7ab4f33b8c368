/**
 * The relay's side of the three protocols: one `ServerSession` per inbound stream, answering
 * requests by id (shared/src/protocol/wire.ts). Subscriptions are cursors over the on-disk
 * mailbox with credit from the subscriber: the relay reads a page from disk only when the
 * subscriber can take it, so a slow reader costs a cursor, not a growing buffer.
 */
import type { Stream } from '@libp2p/interface';
import type { Logger } from 'pino';
import { frameChannel, type FrameChannel } from '../../shared/src/net/frames.js';
import { bytesKey, toHex } from '../../shared/src/protocol/ids.js';
import {
  MAX_FRAME_BYTES,
  MAX_PAGE_BYTES,
  MAX_PENDING_REQUESTS,
  MAX_SUBSCRIPTION_CREDIT,
  MAX_SUBSCRIPTIONS_PER_SESSION,
} from '../../shared/src/protocol/limits.js';
import {
  type Answer,
  type Request,
  type RequestId,
  Status,
  type StatusName,
  WireError,
  decodeRequest,
  encodeAnswer,
  encodeMessageHead,
  protocolOf,
  statusName,
} from '../../shared/src/protocol/wire.js';
import { envelopeProblem } from './envelope.js';
import type { PeerLimiter } from './limiter.js';
import type { RelayMetrics } from './relay-metrics.js';
import type { AppendOptions, RelayStore, StoredMessage } from './store.js';

/** Messages read from disk per page while pushing to a subscriber. */
const PUSH_PAGE_MESSAGES = 64;
/** Bytes read from disk per page while pushing. */
const PUSH_PAGE_BYTES = 256 * 1024;
/** Milliseconds a subscriber's connection may refuse more bytes before it is dropped. */
export const SLOW_SUBSCRIBER_MS = 30_000;

export interface ServiceContext {
  readonly store: RelayStore;
  readonly limiter: PeerLimiter;
  readonly metrics: RelayMetrics;
  readonly log: Logger;
  readonly hub: Hub;
  /**
   * A new message from `from` was committed here, not yet durable: pass it on now, so the other
   * relays' storing overlaps this one's sync to disk. `replica` says whether it is another relay's
   * copy (`from` is then that relay) or a client's append. (A copy that outlives a crash losing it
   * here does no harm: the client re-sends until acknowledged, and relays drop duplicates by hash.)
   */
  committed(
    address: Uint8Array,
    message: Uint8Array,
    commitEpoch: number | undefined,
    from: { peer: string; replica: boolean },
  ): void;
  /** Whether `peer` is another relay (its copies count against no client's rate limit). */
  isRelay(peer: string): boolean;
  /** After a new message (a client's or a replica) was made durable here: follow and announce its address. */
  appended(address: Uint8Array): void;
  /** A chunk this relay lacks, from the relays that provide it; undefined if none has it. */
  blobElsewhere(hash: Uint8Array): Promise<Uint8Array | undefined>;
  /** A new blob chunk was stored from `peer`: announce it and copy it to the replica relays. */
  blobStored(hash: Uint8Array, chunk: Uint8Array, peer: string): void;
  /** A client subscribed to `address` here: follow it on the backbone and pull what others hold. */
  interested(address: Uint8Array): void;
  /** A peer was penalised: close its connections. */
  penalise(peer: string): void;
  readonly stopping: boolean;
}

/**
 * Messages of one subscribed address kept in memory for its live subscribers: the contiguous
 * range `firstSeq..lastSeq` of what is on disk (most recent last; empty when `firstSeq` is
 * `lastSeq + 1`), where `lastSeq` is the store's last seq of the address.
 */
interface Recent {
  firstSeq: number;
  lastSeq: number;
  readonly messages: Uint8Array[];
  bytes: number;
}

/** Messages and bytes of recent appends kept per followed address (memory bound; older reads go to disk). */
const RECENT_MESSAGES = 1024;
const RECENT_BYTES = 4 * 1024 * 1024;

/**
 * Subscribers by address, so an append wakes the subscriptions of its mailbox, and the latest
 * messages of each subscribed address in memory: a live append is pushed to every subscriber
 * from here instead of one disk read per subscriber, and a subscriber that has everything is
 * told so without asking the disk.
 *
 * The store tells the hub of every new message synchronously right after the sync that made it
 * durable, and its reads by seq stop below what it has not told yet, so for a subscribed address
 * the hub's `lastSeq` is the store's.
 */
export class Hub {
  private readonly subs = new Map<string, Set<ServerSubscription>>();
  private readonly recent = new Map<string, Recent>();

  constructor(private readonly store: RelayStore) {
    store.onAppended((address, seq, message) => {
      this.appended(address, seq, message);
    });
  }

  add(s: ServerSubscription): void {
    let set = this.subs.get(s.key);
    if (set === undefined) {
      this.subs.set(s.key, (set = new Set()));
      const lastSeq = this.store.lastSeq(s.address);
      this.recent.set(s.key, { firstSeq: lastSeq + 1, lastSeq, messages: [], bytes: 0 });
    }
    set.add(s);
  }

  remove(s: ServerSubscription): void {
    const set = this.subs.get(s.key);
    if (set === undefined) return;
    set.delete(s);
    if (set.size === 0) {
      this.subs.delete(s.key);
      this.recent.delete(s.key);
    }
  }

  /** A new message is durable at `seq` (from the store's commit): remember it and wake subscribers. */
  private appended(address: Uint8Array, seq: number, message: Uint8Array): void {
    const key = bytesKey(address);
    const set = this.subs.get(key);
    const r = this.recent.get(key);
    if (set === undefined || r === undefined || seq <= r.lastSeq) return;
    if (seq !== r.lastSeq + 1) {
      // Not expected (every commit is announced); the gap is then read from disk.
      r.messages.length = 0;
      r.bytes = 0;
      r.firstSeq = seq;
    }
    r.lastSeq = seq;
    // A copy: `message` may be a view into a larger network buffer that should not stay alive.
    r.messages.push(message.slice());
    r.bytes += message.length;
    while (r.messages.length > RECENT_MESSAGES || (r.bytes > RECENT_BYTES && r.messages.length > 1)) {
      r.bytes -= r.messages.shift()?.length ?? 0;
      r.firstSeq++;
    }
    for (const s of set) s.pump();
  }

  /**
   * Messages after `cursor`: none when the cursor is at the last seq, from memory when they are
   * all there, else from disk.
   */
  readAfter(
    address: Uint8Array,
    key: string,
    cursor: number,
    limit: number,
    maxBytes: number,
  ): StoredMessage[] {
    const r = this.recent.get(key);
    if (r !== undefined && cursor >= r.firstSeq - 1) {
      const out: StoredMessage[] = [];
      let size = 0;
      for (let i = cursor + 1 - r.firstSeq; i < r.messages.length && out.length < limit; i++) {
        const message = r.messages[i] as Uint8Array;
        if (out.length > 0 && size + message.length > maxBytes) break;
        out.push({ seq: r.firstSeq + i, message });
        size += message.length;
      }
      return out;
    }
    if (r !== undefined && cursor >= r.lastSeq) return [];
    return this.store.readAfter(address, cursor, limit, maxBytes);
  }

  /** The last seq of a subscribed address (from memory), else the store's. */
  lastSeq(address: Uint8Array, key: string): number {
    return this.recent.get(key)?.lastSeq ?? this.store.lastSeq(address);
  }

  get count(): number {
    let n = 0;
    for (const set of this.subs.values()) n += set.size;
    return n;
  }

  get topics(): number {
    return this.subs.size;
  }
}

export class ServerSubscription {
  readonly key: string;
  private pumping = false;
  private again = false;
  private liveSent = false;
  ended = false;

  constructor(
    readonly id: RequestId,
    readonly address: Uint8Array,
    private cursor: number,
    private credit: number,
    private readonly session: ServerSession,
  ) {
    this.key = bytesKey(address);
  }

  /** Read through a method: `pump` sets it while `run` awaits. */
  private wokenAgain(): boolean {
    return this.again;
  }

  /** Read through a method: `ended` changes while `run` awaits. */
  isEnded(): boolean {
    return this.ended;
  }

  addCredit(n: number): void {
    this.credit = Math.min(MAX_SUBSCRIPTION_CREDIT, this.credit + n);
    this.pump();
  }

  /** Sends what the subscriber can take, from disk; re-runs if woken meanwhile. */
  pump(): void {
    if (this.ended) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.run().finally(() => {
      this.pumping = false;
      // A wake-up after `run` last looked (its promise settles a microtask after it returned, and
      // one commit announces many messages in a row): run again, or that message waits for the next.
      if (this.wokenAgain()) this.pump();
    });
  }

  private async run(): Promise<void> {
    const { hub } = this.session.ctx;
    do {
      this.again = false;
      while (!this.ended && this.credit > 0) {
        if (!this.session.canWrite() && !(await this.session.writable())) {
          this.session.endSubscription(this, 'slowSubscriber');
          return;
        }
        if (this.isEnded()) return;
        const page = hub.readAfter(
          this.address,
          this.key,
          this.cursor,
          Math.min(this.credit, PUSH_PAGE_MESSAGES),
          PUSH_PAGE_BYTES,
        );
        if (page.length === 0) {
          if (!this.liveSent) {
            this.liveSent = true;
            this.session.answer({ kind: 'live', id: this.id, lastSeq: hub.lastSeq(this.address, this.key) });
          }
          break;
        }
        for (const m of page) {
          this.session.push(this.id, m.seq, m.message);
          this.cursor = m.seq;
          this.credit--;
        }
        this.session.ctx.metrics.pushes.inc({}, page.length);
      }
    } while (this.wokenAgain() && !this.isEnded());
  }
}

function isRelayProtocol(p: string): boolean {
  return p.startsWith('/conclave/');
}

export class ServerSession {
  private readonly channel: FrameChannel;
  private readonly subs = new Map<RequestId, ServerSubscription>();
  private pending = 0;
  private closed = false;

  constructor(
    stream: Stream,
    readonly peer: string,
    readonly protocol: string,
    readonly ctx: ServiceContext,
  ) {
    this.channel = frameChannel(stream, MAX_FRAME_BYTES, {
      onFrame: (frame) => {
        this.onFrame(frame);
      },
      onClose: (reason) => {
        this.onClose(reason);
      },
    });
    if (!isRelayProtocol(protocol)) this.channel.abort('unknown protocol');
  }

  answer(a: Answer): void {
    if (this.closed) return;
    this.channel.send(encodeAnswer(a));
  }

  /** Pushes a subscription's message: the same bytes as `answer`, without copying `message`. */
  push(id: RequestId, seq: number, message: Uint8Array): void {
    if (this.closed) return;
    this.channel.sendParts(encodeMessageHead(id, seq, message.length), message);
  }

  /** True when a push can be written now (the common case: no promise, no timer). */
  canWrite(): boolean {
    return !this.closed && this.channel.writable;
  }

  /** Waits until the connection takes more bytes; false if it stayed full too long or closed. */
  async writable(): Promise<boolean> {
    if (this.closed) return false;
    if (this.channel.writable) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.channel.drained().then(
          () => !this.closed,
          () => false,
        ),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => {
            resolve(false);
          }, SLOW_SUBSCRIBER_MS);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private refuse(id: RequestId, status: StatusName): void {
    this.ctx.metrics.refusals.inc({ reason: status });
    this.answer({ kind: 'refused', id, status: Status[status] });
  }

  endSubscription(s: ServerSubscription, status: StatusName): void {
    if (s.ended) return;
    s.ended = true;
    this.subs.delete(s.id);
    this.ctx.hub.remove(s);
    this.ctx.metrics.refusals.inc({ reason: status });
    this.answer({ kind: 'ended', id: s.id, status: Status[status] });
  }

  private onFrame(frame: Uint8Array): void {
    const { ctx } = this;
    let r: Request;
    try {
      r = decodeRequest(frame);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      ctx.log.debug({ peer: this.peer, code: e.code }, 'refused a malformed frame');
      if (e.id !== undefined) this.refuse(e.id, e.code === 'too-large' ? 'tooLarge' : 'malformed');
      else ctx.metrics.refusals.inc({ reason: 'malformed' });
      // Too large is an honest client's mistake as often as not: refused, not penalised.
      if (e.code !== 'too-large' && ctx.limiter.malformed(this.peer)) {
        ctx.log.warn({ peer: this.peer }, 'penalised a peer for malformed frames');
        ctx.penalise(this.peer);
      }
      return;
    }
    if (protocolOf(r) !== this.protocol) {
      this.refuse(r.id, 'malformed');
      if (ctx.limiter.malformed(this.peer)) ctx.penalise(this.peer);
      return;
    }
    if (r.kind === 'credit' || r.kind === 'unsubscribe') {
      this.control(r);
      return;
    }
    if (ctx.stopping) {
      this.refuse(r.id, 'shuttingDown');
      return;
    }
    // A relay's copies carry the appends of all its clients, each already limited there.
    const relayCopy = r.kind === 'replicate' && ctx.isRelay(this.peer);
    if (!relayCopy && ctx.limiter.admit(this.peer, frame.length) === 'rate-limited') {
      this.refuse(r.id, 'rateLimited');
      return;
    }
    if (this.pending >= MAX_PENDING_REQUESTS) {
      this.refuse(r.id, 'tooMany');
      return;
    }
    this.pending++;
    void this.handle(r)
      .catch((e: unknown) => {
        ctx.log.error(
          { peer: this.peer, kind: r.kind, err: e instanceof Error ? e.message : String(e) },
          'request failed',
        );
        this.refuse(r.id, 'internal');
      })
      .finally(() => {
        this.pending--;
      });
  }

  private control(r: Request): void {
    const s = this.subs.get(r.id);
    if (s === undefined) return;
    if (r.kind === 'credit') s.addCredit(r.n);
    else if (r.kind === 'unsubscribe') {
      s.ended = true;
      this.subs.delete(r.id);
      this.ctx.hub.remove(s);
    }
  }

  private async handle(r: Request): Promise<void> {
    const { ctx } = this;
    switch (r.kind) {
      case 'append':
      case 'replicate': {
        const replica = r.kind === 'replicate';
        if (envelopeProblem(r.address, r.message) !== undefined) {
          this.refuse(r.id, 'malformed');
          return;
        }
        const { address, message, commitEpoch } = r;
        const from = { peer: this.peer, replica };
        const committed = (): void => {
          ctx.committed(address, message, commitEpoch, from);
        };
        const options: AppendOptions = { committed };
        if (commitEpoch !== undefined) options.commitEpoch = commitEpoch;
        let out = await ctx.store.append(address, message, options);
        if (out.kind === 'refused' && replica) {
          // A replica keeps every commit: soft sequencing is for what this relay acknowledges
          // to committers, and members must see a competing commit to settle a fork (section 6.3).
          out = await ctx.store.append(address, message, { committed });
        }
        if (out.kind === 'refused') {
          this.refuse(r.id, 'epochTaken');
          return;
        }
        ctx.metrics.appends.inc({ kind: r.kind });
        this.answer({ kind: 'ack', id: r.id, seq: out.seq });
        if (!out.duplicate) {
          ctx.metrics.appendBytes.inc({}, r.message.length);
          ctx.appended(r.address);
        }
        return;
      }
      case 'subscribe': {
        if (this.subs.size >= MAX_SUBSCRIPTIONS_PER_SESSION || this.subs.has(r.id)) {
          this.refuse(r.id, this.subs.has(r.id) ? 'duplicateId' : 'tooMany');
          return;
        }
        const s = new ServerSubscription(r.id, r.address, r.afterSeq, r.credit, this);
        this.subs.set(r.id, s);
        ctx.hub.add(s);
        ctx.interested(r.address);
        s.pump();
        return;
      }
      case 'read': {
        const messages = ctx.store.readAfter(r.address, r.afterSeq, r.limit, MAX_PAGE_BYTES);
        this.answer({ kind: 'page', id: r.id, messages, lastSeq: ctx.store.lastSeq(r.address) });
        return;
      }
      case 'blobPut': {
        const out = await ctx.store.putBlob(r.hash, r.chunk, this.peer);
        if (out.kind === 'refused') {
          this.refuse(r.id, out.reason === 'hash-mismatch' ? 'hashMismatch' : 'quota');
          return;
        }
        if (out.kind === 'stored') {
          ctx.metrics.blobBytes.inc({ direction: 'in' }, r.chunk.length);
          ctx.blobStored(r.hash, r.chunk, this.peer);
        }
        this.answer({ kind: 'ok', id: r.id });
        return;
      }
      case 'blobGet': {
        const bytes = ctx.store.getBlob(r.hash) ?? (await ctx.blobElsewhere(r.hash));
        if (bytes === undefined) {
          this.refuse(r.id, 'notFound');
          return;
        }
        ctx.metrics.blobBytes.inc({ direction: 'out' }, bytes.length);
        this.answer({ kind: 'chunk', id: r.id, bytes });
        return;
      }
      case 'fetch': {
        const sealed: Uint8Array[] = [];
        let size = 0;
        for (const id of r.opIds) {
          const m = ctx.store.getByHash(id);
          if (m === undefined) continue;
          if (size + m.length > MAX_PAGE_BYTES && sealed.length > 0) break;
          sealed.push(m);
          size += m.length;
        }
        this.answer({ kind: 'ops', id: r.id, sealed });
        return;
      }
      case 'credit':
      case 'unsubscribe':
        this.control(r);
        return;
    }
  }

  private onClose(reason: string | undefined): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.subs.values()) {
      s.ended = true;
      this.ctx.hub.remove(s);
    }
    this.subs.clear();
    if (reason !== undefined)
      this.ctx.log.debug({ peer: this.peer, protocol: this.protocol, reason }, 'stream closed');
  }

  close(): void {
    void this.channel.close();
  }
}

/** For logs: a short, payload-free name of an address. */
export function addressTag(address: Uint8Array): string {
  return toHex(address.subarray(0, 6));
}

export { statusName };
