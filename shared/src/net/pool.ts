/**
 * `RelayPool`: the client's side of sections 8 and 9 of ARCHITECTURE.md over several relays. It
 * keeps a link to every configured relay (reconnecting with backoff), fails over between them,
 * keeps the outbox, follows mailboxes on every relay from persisted cursors and hands each
 * distinct message to its handler once.
 *
 * Meta keys it writes on the `Storage` port: the outbox's (`outbox/…`, see outbox.ts) and
 * `cursor/<relay peer id>/<hex address>`: the last seq at that relay whose handler completed.
 */
import { sha256 as jsSha256 } from '../crypto/sha256.js';
import { MailboxError } from '../ports/mailbox.js';
import type { AppendResult, Mailbox, MailboxMessage } from '../ports/mailbox.js';
import { NetworkError } from '../ports/network.js';
import type { RelayConnector, RelayLink, Subscription, SubscriptionHandler } from '../ports/network.js';
import type { Storage } from '../ports/storage.js';
import { bytesKey, equalBytes, toHex } from '../protocol/ids.js';
import { MAX_SYNC_IDS } from '../protocol/limits.js';
import { Outbox } from './outbox.js';
import type { OutboxEntry, OutboxLimits } from './outbox.js';

/** Milliseconds. The first reconnect waits between half of this and this (jitter). */
export const RECONNECT_INITIAL_MS = 500;

/**
 * Milliseconds. Reconnect delays double up to this: a relay back after an outage is found within
 * 30 s, while a thousand clients of a dead relay retry at most about 35 times a second together.
 */
export const RECONNECT_MAX_MS = 30_000;

/**
 * Message hashes. How many recent messages each followed address remembers to drop the copy a
 * second relay delivers. Relays push the same message within moments of each other (both are
 * live), and after a reconnect the backlog from the cursor is what went by while offline; a copy
 * arriving after its hash was forgotten reaches the handler twice, which is safe because the
 * pipeline treats an `OpId` it already has as a no-op (section 4, step 7). The bound only keeps
 * memory flat; 4096 hashes are about 0.5 MiB.
 */
export const MAX_RECENT_HASHES = 4096;

/** Runs `fn` after `ms` milliseconds; the returned function cancels it. */
export type Schedule = (fn: () => void, ms: number) => () => void;

/** `Schedule` on the environment's timers. */
export const realSchedule: Schedule = (fn, ms) => {
  const t = setTimeout(fn, ms);
  return () => {
    clearTimeout(t);
  };
};

export type RelayStatus = 'connecting' | 'connected' | 'offline';

export interface RelayInfo {
  /** The configured multiaddr. */
  readonly address: string;
  /** The relay's peer id, once a link told it. */
  readonly peer: string | undefined;
  readonly status: RelayStatus;
}

/** What the UI shows about the network. */
export interface PoolState {
  /** One per configured relay, in configured order. */
  readonly relays: readonly RelayInfo[];
  /** Messages waiting in the outbox for a relay's acknowledgement. */
  readonly outbox: number;
}

export interface FollowHandler {
  /**
   * One distinct message, in seq order of the relay it came from; called one at a time. The
   * relay's cursor moves past it only once this resolves. When it throws, `onError` gets the
   * error and the message comes again later (after a backoff).
   */
  onMessage(
    message: Uint8Array,
    from: { readonly relay: string; readonly seq: number },
  ): void | Promise<void>;
  /** Every connected relay has delivered its backlog: from now on messages are live. Again after each reconnect. */
  onCaughtUp?(): void;
  onError?(error: unknown): void;
  /**
   * Messages. A handler that resolves before its message is durable (it pipelines, keeping up
   * to this many in flight) sets this: the first subscription to each relay after the pool
   * starts goes back this many seqs before the saved cursor, so a crash loses nothing that
   * was still in flight. Those messages come again; the handler must ignore duplicates.
   */
  readonly replay?: number;
}

export interface Follow {
  /** True while every connected relay is live for this address. */
  readonly live: boolean;
  /** Stops following; resolves once the cursors are saved. */
  close(): Promise<void>;
}

export interface RelayPoolOptions {
  readonly connector: RelayConnector;
  /** Multiaddrs (with `/p2p/<peer id>`), in order of preference. */
  readonly relays: readonly string[];
  /** Holds the outbox and the cursors. */
  readonly storage: Storage;
  /** Timers; `realSchedule` by default. */
  readonly schedule?: Schedule;
  /** Uniform in [0, 1), for jitter; `Math.random` by default. */
  readonly random?: () => number;
  /** SHA-256 for deduplication and hash checks: pure JS unless the host has a faster one. */
  readonly sha256?: (data: Uint8Array) => Uint8Array;
  readonly reconnect?: { readonly initialMs?: number; readonly maxMs?: number };
  readonly outbox?: OutboxLimits;
}

interface Relay {
  readonly address: string;
  link: RelayLink | undefined;
  peer: string | undefined;
  status: RelayStatus;
  /** Failed connection attempts since the last success. */
  attempt: number;
  cancelRetry: (() => void) | undefined;
  flushing: Promise<void> | undefined;
  /** Counts flush requests, so a flush asked for during a pass runs another pass. */
  flushRequests: number;
}

interface Cursor {
  readonly key: string;
  /** The last seq whose handler completed. */
  value: number;
  saved: number;
  saving: Promise<void> | undefined;
}

/** One subscription of a followed address on one link. */
interface Feed {
  readonly relay: Relay;
  readonly link: RelayLink;
  readonly cursor: Cursor;
  sub: Subscription | undefined;
  /** The delivery in progress (never rejects). */
  busy: Promise<void>;
  live: boolean;
  ended: boolean;
  /** We are closing it ourselves: its end needs no resubscription. */
  closing: boolean;
}

interface Followed {
  readonly address: Uint8Array;
  readonly handler: FollowHandler;
  /** `bytesKey(sha256(message))` → whether its handler completed; pending while it runs. */
  readonly recent: Map<string, Promise<boolean>>;
  readonly feeds: Map<Relay, Feed>;
  /** Resubscriptions after a handler failure or an ended subscription, per relay. */
  readonly retries: Map<Relay, number>;
  readonly timers: Set<() => void>;
  /** Relays this follow subscribed to before (the replay applies once per relay). */
  readonly replayed: Set<string>;
  /** The handler's calls, one at a time. */
  queue: Promise<unknown>;
  live: boolean;
  closed: boolean;
}

/** Whether deliveries on `feed` are over (a function, so it is not narrowed across an `await`). */
function stale(f: Followed, feed: Feed): boolean {
  return feed.ended || f.closed;
}

function cursorBytes(seq: number): Uint8Array {
  return new TextEncoder().encode(String(seq));
}

/** A stored cursor, or 0 when it is absent or does not decode (the handler then sees old messages again, harmlessly). */
function parseCursor(bytes: Uint8Array | undefined): number {
  if (bytes === undefined || bytes.length === 0 || bytes.length > 16) return 0;
  const text = new TextDecoder().decode(bytes);
  if (!/^[0-9]+$/.test(text)) return 0;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : 0;
}

/**
 * Calls a listener of the application. One that throws is a bug there: it is reported as an
 * uncaught error (as `EventTarget` does) instead of breaking the pool's own work.
 */
function notify(call: () => void): void {
  try {
    call();
  } catch (e) {
    queueMicrotask(() => {
      throw asError(e);
    });
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** True as soon as one of `attempts` resolves true; false once all resolved false. */
function anyTrue(attempts: readonly Promise<boolean>[]): Promise<boolean> {
  return new Promise((resolve) => {
    let left = attempts.length;
    if (left === 0) resolve(false);
    for (const attempt of attempts) {
      void attempt.then((ok) => {
        left--;
        if (ok) resolve(true);
        else if (left === 0) resolve(false);
      });
    }
  });
}

/**
 * The client's relays as one `Mailbox`, plus the outbox (`send`, `flush`), followed mailboxes
 * (`follow`), op repair (`fetch`) and blobs. Call `start()` before anything else and `close()` at
 * the end; `close()` leaves the connector running (the host owns it).
 *
 * Seqs are per relay. `read` answers from the first relay that answers, in configured order, so
 * a caller keeping a cursor over `read` should expect seqs of another relay after a failover;
 * `follow` keeps a cursor per relay and has no such issue.
 */
export class RelayPool implements Mailbox {
  private readonly connector: RelayConnector;
  private readonly storage: Storage;
  private readonly schedule: Schedule;
  private readonly random: () => number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly outboxLimits: OutboxLimits;
  private readonly relays: Relay[];
  private readonly follows = new Map<string, Followed>();
  private readonly cursors = new Map<string, Promise<Cursor>>();
  private readonly sha256: (data: Uint8Array) => Uint8Array;
  private readonly listeners = new Set<(state: PoolState) => void>();
  /** `<entry id>/<relay address>` → the append in progress. */
  private readonly inflight = new Map<string, Promise<boolean>>();
  private outbox: Outbox | undefined;
  private outboxAttempt = 0;
  private cancelOutboxRetry: (() => void) | undefined;
  private closed = false;

  constructor(options: RelayPoolOptions) {
    this.connector = options.connector;
    this.storage = options.storage;
    this.schedule = options.schedule ?? realSchedule;
    this.random = options.random ?? Math.random;
    this.sha256 = options.sha256 ?? jsSha256;
    this.initialMs = options.reconnect?.initialMs ?? RECONNECT_INITIAL_MS;
    this.maxMs = options.reconnect?.maxMs ?? RECONNECT_MAX_MS;
    this.outboxLimits = options.outbox ?? {};
    this.relays = options.relays.map((address) => ({
      address,
      link: undefined,
      peer: undefined,
      status: 'offline',
      attempt: 0,
      cancelRetry: undefined,
      flushing: undefined,
      flushRequests: 0,
    }));
  }

  /**
   * Opens the outbox and tries every relay once; resolves when each attempt succeeded or
   * failed (failed ones are retried in the background). Queued entries are then flushed.
   *
   * @throws OutboxError `corrupt`, StorageError: the outbox could not be opened.
   */
  async start(): Promise<void> {
    if (this.outbox !== undefined) return;
    const outbox = await Outbox.open(this.storage, this.outboxLimits);
    this.outbox = outbox;
    outbox.onChange(() => {
      this.emitState();
    });
    await Promise.all(this.relays.map((r) => this.connect(r)));
  }

  /** The current state. */
  get state(): PoolState {
    return {
      relays: this.relays.map((r) => ({ address: r.address, peer: r.peer, status: r.status })),
      outbox: this.outbox?.length ?? 0,
    };
  }

  /** Calls `listener` now and after every change of `state`; returns the function that stops it. */
  onState(listener: (state: PoolState) => void): () => void {
    this.listeners.add(listener);
    listener(this.state);
    return () => {
      this.listeners.delete(listener);
    };
  }

  // --- Mailbox ---

  /**
   * Appends at the first connected relay that takes it, in configured order. `epoch-taken` is
   * that relay's answer and is returned as is.
   *
   * @throws MailboxError when no relay took it.
   */
  async append(
    address: Uint8Array,
    message: Uint8Array,
    options: { commitEpoch?: number } = {},
  ): Promise<AppendResult> {
    for (const { relay, link } of this.connected()) {
      try {
        return await link.append(address, message, options);
      } catch (e) {
        this.failed(relay, link, e);
      }
    }
    throw new MailboxError('no relay could take the message');
  }

  /**
   * Every message after `afterSeq` at the first relay that answers (seqs are that relay's).
   *
   * @throws MailboxError when no relay answered.
   */
  async read(address: Uint8Array, afterSeq: number): Promise<MailboxMessage[]> {
    for (const { relay, link } of this.connected()) {
      try {
        const out: MailboxMessage[] = [];
        let after = afterSeq;
        for (;;) {
          const page = await link.read(address, after);
          out.push(...page.messages);
          const last = page.messages.at(-1);
          if (last === undefined || last.seq >= page.lastSeq || last.seq <= after) break;
          after = last.seq;
        }
        return out;
      } catch (e) {
        this.failed(relay, link, e);
      }
    }
    throw new MailboxError('no relay could be read');
  }

  // --- Outbox ---

  /**
   * The path for user ops: persists `message` in the outbox, then appends it at every connected
   * relay. `'sent'` once one relay acknowledged it (it left the outbox); `'queued'` when none did
   * now: it stays in the outbox and goes out on reconnect, on a retry timer or on `flush()`.
   *
   * @throws OutboxError `full` | `tooLarge` (nothing was queued), StorageError, NetworkError `closed` after `close()`.
   */
  async send(address: Uint8Array, message: Uint8Array): Promise<'sent' | 'queued'> {
    const outbox = this.box();
    const entry = await outbox.enqueue(address, message);
    const acked = await anyTrue(
      this.connected().map(({ relay, link }) => this.appendEntry(relay, link, entry)),
    );
    if (!acked) this.retryOutboxLater();
    return acked && !outbox.has(entry.id) ? 'sent' : 'queued';
  }

  /**
   * Offers every queued entry, oldest first, to every connected relay until one acknowledges it.
   * Resolves with the number of entries still queued.
   */
  async flush(): Promise<number> {
    const outbox = this.box();
    await Promise.all(this.connected().map(({ relay }) => this.flushRelay(relay)));
    return outbox.length;
  }

  // --- Follow ---

  /**
   * Follows `address` on every relay, from each relay's persisted cursor, now and after every
   * reconnect. One follow per address at a time.
   */
  follow(address: Uint8Array, handler: FollowHandler): Follow {
    this.box();
    const key = bytesKey(address);
    if (this.follows.has(key)) throw new Error('this address is followed already');
    const f: Followed = {
      address: address.slice(),
      handler,
      recent: new Map(),
      feeds: new Map(),
      retries: new Map(),
      timers: new Set(),
      replayed: new Set(),
      queue: Promise.resolve(),
      live: false,
      closed: false,
    };
    this.follows.set(key, f);
    for (const { relay } of this.connected()) void this.subscribe(f, relay);
    return {
      get live() {
        return f.live;
      },
      close: () => this.unfollow(f),
    };
  }

  // --- Sync and blobs ---

  /**
   * The sealed ops among `opIds` that the relays hold, asking them in turn until all are found
   * or every relay was asked. An answer that does not hash to an id asked for is dropped.
   */
  async fetch(opIds: readonly Uint8Array[]): Promise<Uint8Array[]> {
    const wanted = new Map<string, Uint8Array>();
    for (const id of opIds) wanted.set(bytesKey(id), id);
    const found: Uint8Array[] = [];
    for (const { relay, link } of this.connected()) {
      if (wanted.size === 0) break;
      try {
        const ask = [...wanted.values()];
        for (let i = 0; i < ask.length; i += MAX_SYNC_IDS) {
          for (const op of await link.fetch(ask.slice(i, i + MAX_SYNC_IDS))) {
            if (wanted.delete(bytesKey(this.sha256(op)))) found.push(op);
          }
        }
      } catch (e) {
        this.failed(relay, link, e);
      }
    }
    return found;
  }

  /**
   * Stores a blob chunk at the first relay that takes it.
   *
   * @throws NetworkError `refused`/`hashMismatch` when `chunk` does not hash to `hash` (no relay is
   *   asked); otherwise the last relay's error, or `unreachable` when none is connected.
   */
  async putBlob(hash: Uint8Array, chunk: Uint8Array): Promise<void> {
    if (!equalBytes(this.sha256(chunk), hash)) {
      throw new NetworkError('refused', 'chunk does not hash to its address', 'hashMismatch');
    }
    let last: unknown = new NetworkError('unreachable', 'no relay is connected');
    for (const { relay, link } of this.connected()) {
      try {
        await link.putBlob(hash, chunk);
        return;
      } catch (e) {
        last = e;
        this.failed(relay, link, e);
      }
    }
    throw asError(last);
  }

  /**
   * The chunk at `hash` from the first relay that has one whose bytes hash to `hash`; undefined
   * when every relay that answered has none.
   *
   * @throws NetworkError `unreachable` when no relay answered.
   */
  async getBlob(hash: Uint8Array): Promise<Uint8Array | undefined> {
    let answered = false;
    for (const { relay, link } of this.connected()) {
      try {
        const chunk = await link.getBlob(hash);
        answered = true;
        if (chunk !== undefined && equalBytes(this.sha256(chunk), hash)) return chunk;
      } catch (e) {
        this.failed(relay, link, e);
      }
    }
    if (!answered) throw new NetworkError('unreachable', 'no relay answered');
    return undefined;
  }

  /**
   * Stops reconnecting and following, waits for handlers in progress, saves the cursors and
   * closes the links. The outbox keeps what was not acknowledged.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelOutboxRetry?.();
    this.cancelOutboxRetry = undefined;
    for (const r of this.relays) {
      r.cancelRetry?.();
      r.cancelRetry = undefined;
    }
    await Promise.all([...this.follows.values()].map((f) => this.unfollow(f)));
    await Promise.all(
      this.relays.map(async (r) => {
        const link = r.link;
        r.link = undefined;
        r.status = 'offline';
        await link?.close().catch(() => undefined);
      }),
    );
    this.emitState();
    this.listeners.clear();
  }

  // --- Connections ---

  /** Not narrowed across an `await` as `this.closed` would be. */
  private isClosed(): boolean {
    return this.closed;
  }

  private box(): Outbox {
    if (this.closed) throw new NetworkError('closed', 'the relay pool is closed');
    if (this.outbox === undefined) throw new Error('RelayPool.start() was not called');
    return this.outbox;
  }

  /** The relays with an open link, in configured order; links found dead are dropped on the way. */
  private connected(): { relay: Relay; link: RelayLink }[] {
    const out: { relay: Relay; link: RelayLink }[] = [];
    for (const relay of this.relays) {
      const link = relay.link;
      if (link === undefined) continue;
      if (link.open) out.push({ relay, link });
      else this.lost(relay, link);
    }
    return out;
  }

  private delay(attempt: number): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(attempt, 30));
    return base / 2 + (this.random() * base) / 2;
  }

  private async connect(r: Relay): Promise<void> {
    r.cancelRetry = undefined;
    if (this.closed || r.link !== undefined) return;
    r.status = 'connecting';
    this.emitState();
    let link: RelayLink;
    try {
      link = await this.connector.connect(r.address);
    } catch {
      if (!this.isClosed()) this.reconnectLater(r);
      return;
    }
    if (this.isClosed()) {
      await link.close().catch(() => undefined);
      return;
    }
    r.link = link;
    r.peer = link.relay;
    r.status = 'connected';
    r.attempt = 0;
    this.emitState();
    for (const f of this.follows.values()) {
      this.updateLive(f);
      void this.subscribe(f, r);
    }
    void this.flushRelay(r);
  }

  /**
   * Dials every relay that has no link now, instead of when its backoff says (the app is back
   * in the foreground, the network is back: the timers may have backed off to
   * {@link RECONNECT_MAX_MS}). Resolves once each was tried; a relay still unreachable goes
   * back to its backoff, starting over from the first delay.
   */
  async reconnectNow(): Promise<void> {
    if (this.closed) return;
    this.connected(); // drops the links found dead
    const tries: Promise<void>[] = [];
    for (const r of this.relays) {
      if (r.link !== undefined || r.status === 'connecting') continue;
      r.cancelRetry?.();
      r.attempt = 0;
      tries.push(this.connect(r));
    }
    await Promise.all(tries);
  }

  private reconnectLater(r: Relay): void {
    r.status = 'offline';
    r.cancelRetry?.();
    r.cancelRetry = this.schedule(() => {
      void this.connect(r);
    }, this.delay(r.attempt++));
    this.emitState();
  }

  /** A request on `link` failed: when the link is gone, drop it and reconnect. */
  private failed(r: Relay, link: RelayLink, error: unknown): void {
    if (!link.open || (error instanceof NetworkError && error.code === 'unreachable')) this.lost(r, link);
  }

  private lost(r: Relay, link: RelayLink): void {
    if (r.link !== link) return;
    r.link = undefined;
    void link.close().catch(() => undefined);
    for (const f of this.follows.values()) this.updateLive(f);
    if (this.closed) return;
    this.reconnectLater(r);
  }

  private emitState(): void {
    if (this.listeners.size === 0) return;
    const state = this.state;
    for (const listener of [...this.listeners]) {
      notify(() => {
        listener(state);
      });
    }
  }

  // --- Outbox delivery ---

  /** Appends an outbox entry at one relay; true when the relay answered (and the entry is settled). */
  private appendEntry(r: Relay, link: RelayLink, entry: OutboxEntry): Promise<boolean> {
    const key = `${entry.id}/${r.address}`;
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const outbox = this.box();
    const options = entry.commitEpoch === undefined ? {} : { commitEpoch: entry.commitEpoch };
    const attempt = (async () => {
      let result: AppendResult;
      try {
        result = await link.append(entry.address, entry.message, options);
      } catch (e) {
        this.failed(r, link, e);
        return false;
      }
      this.outboxAttempt = 0;
      try {
        if (result.kind === 'appended') await outbox.markSent(entry.id, link.relay, result.seq);
        else await outbox.remove(entry.id); // epoch-taken: the relay's answer, nothing to resend
      } catch {
        // The entry stays queued and goes out again; the relay answers a repeat with its first seq.
      }
      return true;
    })().finally(() => {
      this.inflight.delete(key);
    });
    this.inflight.set(key, attempt);
    return attempt;
  }

  private flushRelay(r: Relay): Promise<void> {
    r.flushRequests++;
    if (r.flushing !== undefined) return r.flushing;
    r.flushing = (async () => {
      let seen: number;
      do {
        seen = r.flushRequests;
        await this.flushOnce(r);
      } while (r.flushRequests !== seen && !this.isClosed());
    })().finally(() => {
      r.flushing = undefined;
      this.retryOutboxLater();
    });
    return r.flushing;
  }

  /** One pass over the outbox for `r`; stops at the first failure so entries stay in order. */
  private async flushOnce(r: Relay): Promise<void> {
    const outbox = this.outbox;
    if (outbox === undefined) return;
    for (const entry of outbox.pending()) {
      const link = r.link;
      if (link === undefined || !link.open || this.closed) return;
      if (!outbox.has(entry.id)) continue;
      if (!(await this.appendEntry(r, link, entry))) return;
    }
  }

  /** Entries are waiting and a relay is connected, yet nothing took them: try again after a backoff. */
  private retryOutboxLater(): void {
    const outbox = this.outbox;
    if (this.closed || this.cancelOutboxRetry !== undefined || outbox === undefined || outbox.length === 0)
      return;
    if (this.connected().length === 0) return;
    this.cancelOutboxRetry = this.schedule(() => {
      this.cancelOutboxRetry = undefined;
      if (!this.closed) void this.flush().catch(() => undefined);
    }, this.delay(this.outboxAttempt++));
  }

  // --- Following ---

  private cursor(peer: string, address: Uint8Array): Promise<Cursor> {
    const key = `cursor/${peer}/${toHex(address)}`;
    let loading = this.cursors.get(key);
    if (loading === undefined) {
      loading = this.storage.getMeta(key).then(
        (bytes): Cursor => {
          const value = parseCursor(bytes);
          return { key, value, saved: value, saving: undefined };
        },
        (e: unknown) => {
          this.cursors.delete(key);
          throw asError(e);
        },
      );
      this.cursors.set(key, loading);
    }
    return loading;
  }

  /** Writes the cursor's value unless a write is running; that write writes again when it is done. */
  private saveCursor(c: Cursor): Promise<void> {
    if (c.saving !== undefined) return c.saving;
    // Any change is written (a cursor moves back when a relay lost its data).
    if (c.value === c.saved) return Promise.resolve();
    const value = c.value;
    c.saving = this.storage.putMeta(c.key, cursorBytes(value)).then(
      () => {
        c.saved = value;
        c.saving = undefined;
        return this.saveCursor(c);
      },
      () => {
        // Kept in memory; the next message or `close()` writes it again.
        c.saving = undefined;
      },
    );
    return c.saving;
  }

  /** Whether `f` needs a new subscription on `link`; a feed left on a dead link is closed. */
  private needsFeed(f: Followed, r: Relay, link: RelayLink | undefined): link is RelayLink {
    if (link === undefined || !link.open || r.link !== link || f.closed || this.closed) return false;
    const existing = f.feeds.get(r);
    if (existing === undefined) return true;
    if (!existing.ended && existing.link === link) return false;
    existing.closing = true;
    existing.sub?.close();
    f.feeds.delete(r);
    return true;
  }

  private async subscribe(f: Followed, r: Relay): Promise<void> {
    const link = r.link;
    if (!this.needsFeed(f, r, link)) return;
    let cursor: Cursor;
    try {
      cursor = await this.cursor(link.relay, f.address);
    } catch (e) {
      notify(() => f.handler.onError?.(e));
      this.resubscribeLater(f, r);
      return;
    }
    if (!this.needsFeed(f, r, link)) return;
    const replay = f.handler.replay ?? 0;
    if (replay > 0 && !f.replayed.has(link.relay)) {
      f.replayed.add(link.relay);
      cursor.value = Math.max(0, cursor.value - replay);
    }
    const feed: Feed = {
      relay: r,
      link,
      cursor,
      sub: undefined,
      busy: Promise.resolve(),
      live: false,
      ended: false,
      closing: false,
    };
    f.feeds.set(r, feed);
    this.updateLive(f);
    const handler: SubscriptionHandler = {
      onMessage: (seq, message) => {
        const delivery = this.deliver(f, feed, seq, message);
        feed.busy = delivery;
        return delivery;
      },
      onLive: (lastSeq) => {
        if (feed.ended) return;
        if (lastSeq < feed.cursor.value) {
          // The relay's mailbox is shorter than the cursor: its data was lost or replaced.
          // Start over from its beginning; what comes again is deduplicated.
          feed.cursor.value = 0;
          void this.saveCursor(feed.cursor);
          feed.closing = true;
          feed.sub?.close();
          this.resubscribeLater(f, r);
          return;
        }
        feed.live = true;
        f.retries.delete(r);
        this.updateLive(f);
      },
      onEnd: (error) => {
        void this.ended(f, feed, error);
      },
    };
    try {
      feed.sub = link.subscribe(f.address, cursor.value, handler);
    } catch (e) {
      // Not documented to throw; a link that does is treated like one that ended the subscription.
      void this.ended(f, feed, e instanceof NetworkError ? e : new NetworkError('protocol', String(e)));
    }
  }

  private async deliver(f: Followed, feed: Feed, seq: number, message: Uint8Array): Promise<void> {
    if (stale(f, feed) || seq <= feed.cursor.value) return;
    const key = bytesKey(this.sha256(message));
    let handled = f.recent.get(key);
    if (handled === undefined) {
      const from = { relay: feed.link.relay, seq };
      handled = f.queue.then(async () => {
        if (f.closed) return false;
        try {
          await f.handler.onMessage(message, from);
          return true;
        } catch (e) {
          notify(() => f.handler.onError?.(e));
          return false;
        }
      });
      f.queue = handled;
      f.recent.set(key, handled);
      if (f.recent.size > MAX_RECENT_HASHES) {
        const oldest = f.recent.keys().next();
        if (oldest.done !== true) f.recent.delete(oldest.value);
      }
    }
    // A copy from a second relay waits for the first copy's handler: this relay's cursor must
    // not pass a message whose handler has not completed.
    if (!(await handled)) {
      if (f.recent.get(key) === handled) f.recent.delete(key);
      if (!stale(f, feed)) {
        feed.closing = true;
        feed.sub?.close();
        this.resubscribeLater(f, feed.relay);
      }
      return;
    }
    if (seq > feed.cursor.value) feed.cursor.value = seq;
    void this.saveCursor(feed.cursor);
  }

  private async ended(f: Followed, feed: Feed, error: NetworkError): Promise<void> {
    if (feed.ended) return;
    feed.ended = true;
    // The handler in progress completes first, so the new subscription starts after it.
    await feed.busy;
    if (f.feeds.get(feed.relay) === feed) f.feeds.delete(feed.relay);
    this.updateLive(f);
    if (feed.closing || f.closed || this.closed) return;
    if (!feed.link.open || error.code === 'unreachable') {
      // The reconnect resubscribes.
      this.lost(feed.relay, feed.link);
      return;
    }
    // Dropped as a slow subscriber, or another refusal: pick up from the cursor.
    const tries = f.retries.get(feed.relay) ?? 0;
    if (tries === 0) {
      f.retries.set(feed.relay, 1);
      void this.subscribe(f, feed.relay);
    } else {
      this.resubscribeLater(f, feed.relay);
    }
  }

  private resubscribeLater(f: Followed, r: Relay): void {
    if (f.closed || this.closed) return;
    const tries = f.retries.get(r) ?? 0;
    f.retries.set(r, tries + 1);
    const cancel = this.schedule(() => {
      f.timers.delete(cancel);
      void this.subscribe(f, r);
    }, this.delay(tries));
    f.timers.add(cancel);
  }

  /** Recomputes `f.live`; tells the handler when every connected relay became live. */
  private updateLive(f: Followed): void {
    const relays = this.relays.filter((r) => r.link?.open === true);
    const live = !f.closed && relays.length > 0 && relays.every((r) => f.feeds.get(r)?.live === true);
    const was = f.live;
    f.live = live;
    if (live && !was) notify(() => f.handler.onCaughtUp?.());
  }

  private async unfollow(f: Followed): Promise<void> {
    if (f.closed) return;
    f.closed = true;
    f.live = false;
    for (const cancel of f.timers) cancel();
    f.timers.clear();
    const feeds = [...f.feeds.values()];
    for (const feed of feeds) {
      feed.closing = true;
      feed.sub?.close();
    }
    await Promise.all(feeds.map((feed) => feed.busy));
    await Promise.all(feeds.map((feed) => this.saveCursor(feed.cursor)));
    if (this.follows.get(bytesKey(f.address)) === f) this.follows.delete(bytesKey(f.address));
  }
}
