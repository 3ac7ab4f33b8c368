/**
 * Per-peer rate limits and penalties. A token bucket per peer for requests and one for bytes
 * (sustained rate, bursts up to twice it); peers that keep sending malformed frames are
 * penalised: their connections are closed and refused for a while.
 */

/** Malformed frames a peer may send before it is cut off. */
export const MALFORMED_FRAMES_ALLOWED = 16;
/** Milliseconds a penalised peer is refused. */
export const PENALTY_MS = 60_000;
/** Peers whose buckets are kept at most; idle ones are dropped first (memory bound). */
const MAX_TRACKED_PEERS = 100_000;

interface Bucket {
  requests: number;
  bytes: number;
  at: number;
  malformed: number;
}

export type Admission = 'ok' | 'rate-limited';

export class PeerLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly penalised = new Map<string, number>();

  constructor(
    private readonly requestsPerSec: number,
    private readonly bytesPerSec: number,
    private readonly now: () => number = Date.now,
  ) {}

  private bucket(peer: string): Bucket {
    const now = this.now();
    let b = this.buckets.get(peer);
    if (b === undefined) {
      if (this.buckets.size >= MAX_TRACKED_PEERS) {
        const oldest = this.buckets.keys().next();
        if (oldest.done !== true) this.buckets.delete(oldest.value);
      }
      b = { requests: this.requestsPerSec * 2, bytes: this.bytesPerSec * 2, at: now, malformed: 0 };
      this.buckets.set(peer, b);
      return b;
    }
    const dt = Math.max(0, now - b.at) / 1000;
    b.requests = Math.min(this.requestsPerSec * 2, b.requests + dt * this.requestsPerSec);
    b.bytes = Math.min(this.bytesPerSec * 2, b.bytes + dt * this.bytesPerSec);
    b.at = now;
    return b;
  }

  /** Takes one request of `bytes` payload from the peer's buckets, or says it is over its rate. */
  admit(peer: string, bytes: number): Admission {
    const b = this.bucket(peer);
    if (b.requests < 1 || b.bytes < bytes) return 'rate-limited';
    b.requests -= 1;
    b.bytes -= bytes;
    return 'ok';
  }

  /** Counts a malformed frame; true when the peer is now penalised. */
  malformed(peer: string): boolean {
    const b = this.bucket(peer);
    b.malformed++;
    if (b.malformed > MALFORMED_FRAMES_ALLOWED) {
      this.penalise(peer);
      return true;
    }
    return false;
  }

  penalise(peer: string): void {
    this.penalised.set(peer, this.now() + PENALTY_MS);
    const b = this.buckets.get(peer);
    if (b !== undefined) b.malformed = 0;
  }

  isPenalised(peer: string): boolean {
    const until = this.penalised.get(peer);
    if (until === undefined) return false;
    if (until <= this.now()) {
      this.penalised.delete(peer);
      return false;
    }
    return true;
  }
}
