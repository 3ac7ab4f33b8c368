/**
 * One Space on the network (ARCHITECTURE.md section 8): follows the Space's mailbox on every
 * relay of the pool and feeds each sealed op to the acceptance pipeline, many in flight; asks
 * the relays for missing deps by `OpId` (repair); sends written ops through the outbox. MLS
 * handshakes share the mailbox and go to their own handler.
 */
import type { AcceptOutcome, SpaceReplica } from '../core/replica.js';
import type { OpId, TopicId } from '../protocol/ids.js';
import { bytesKey } from '../protocol/ids.js';
import { MAX_SYNC_IDS } from '../protocol/limits.js';
import { looksSealed } from '../protocol/seal.js';
import type { Follow, RelayPool } from './pool.js';

/** Ops. Accepts in flight at once: verification runs in parallel, application in order. */
export const ACCEPT_WINDOW = 256;

export interface SpaceSyncOptions {
  readonly pool: RelayPool;
  readonly topic: TopicId;
  /** Every pipeline outcome of a received op (for status and tests). */
  readonly onOutcome?: (outcome: AcceptOutcome) => void;
  /** Every connected relay delivered its backlog of the Space's mailbox (again after each reconnect). */
  readonly onCaughtUp?: () => void;
  /** Errors of the repair path (the relays could not be asked). */
  readonly onError?: (error: unknown) => void;
}

/**
 * Whether `message` is a sealed op of `topic`: a padding bucket's length and the envelope's
 * head (`[topic, …]` of four items) naming the topic. A cheap look, not a decode: the
 * pipeline decodes and checks every op fully, and an MLS handshake (an array of five) or
 * anything else on the mailbox goes to the handshake handler.
 */
export function isSealedOp(message: Uint8Array, topic: TopicId): boolean {
  if (!looksSealed(message)) return false;
  for (let i = 0; i < 32; i++) if (message[3 + i] !== topic[i]) return false;
  return true;
}

export class SpaceSync {
  private replica: SpaceReplica | undefined;
  private readonly inFlight: Promise<unknown>[] = [];
  private readonly wanted = new Set<string>();
  private readonly wantedIds: OpId[] = [];
  private fetching = false;
  private following: Follow | undefined;

  constructor(private readonly o: SpaceSyncOptions) {}

  /** For `ReplicaOptions.fetchMissing`: collects missing ids and asks the relays for them. */
  readonly fetchMissing = (ids: readonly OpId[]): void => {
    for (const id of ids) {
      const k = bytesKey(id);
      if (this.wanted.has(k)) continue;
      this.wanted.add(k);
      this.wantedIds.push(id);
    }
    void this.fetchLoop();
  };

  /** Starts following the Space's mailbox into `replica`. */
  start(replica: SpaceReplica): Follow {
    this.replica = replica;
    this.following = this.o.pool.follow(this.o.topic, {
      replay: ACCEPT_WINDOW,
      onMessage: async (message) => {
        // Anything else on the topic is no op of this Space (handshakes have their own address).
        if (!isSealedOp(message, this.o.topic)) return;
        this.inFlight.push(this.accept(message));
        if (this.inFlight.length >= ACCEPT_WINDOW) await this.inFlight.shift();
      },
      onError: (e) => this.o.onError?.(e),
      ...(this.o.onCaughtUp === undefined ? {} : { onCaughtUp: this.o.onCaughtUp }),
    });
    return this.following;
  }

  private async accept(sealed: Uint8Array): Promise<void> {
    const replica = this.replica;
    if (replica === undefined) return;
    const outcome = await replica.accept(sealed);
    this.o.onOutcome?.(outcome);
  }

  /** Resolves when every op handed to the pipeline so far went through it. */
  async idle(): Promise<void> {
    while (this.inFlight.length > 0) await Promise.all(this.inFlight.splice(0));
  }

  private async fetchLoop(): Promise<void> {
    if (this.fetching) return;
    this.fetching = true;
    try {
      while (this.wantedIds.length > 0) {
        const batch = this.wantedIds.splice(0, MAX_SYNC_IDS);
        let found: Uint8Array[] = [];
        try {
          found = await this.o.pool.fetch(batch);
        } catch (e) {
          this.o.onError?.(e);
        }
        for (const id of batch) this.wanted.delete(bytesKey(id));
        await Promise.all(found.filter((s) => isSealedOp(s, this.o.topic)).map((s) => this.accept(s)));
      }
    } finally {
      this.fetching = false;
    }
  }

  /** Sends an op this device wrote (already accepted locally): persisted in the outbox first. */
  send(sealed: Uint8Array): Promise<'sent' | 'queued'> {
    return this.o.pool.send(this.o.topic, sealed);
  }

  async stop(): Promise<void> {
    await this.following?.close();
    await this.idle();
  }
}
