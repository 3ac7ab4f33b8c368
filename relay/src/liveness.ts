/**
 * The relay's check that its connections are alive, paced over time.
 *
 * libp2p's own connection monitor pings every connection in the same event-loop turn every
 * 10 s: a new stream, a protocol negotiation and a ping per connection, all at once. On a relay
 * that is a burst of hundreds of streams every 10 s, and it showed in bench:relay as latency
 * spikes (alternated probe runs at 500 ops/s: p99 142–202 ms with it, 15–72 ms without). This
 * check pings each connection once per `periodMs` instead, each at its own time: a connection
 * first seen gets a random place in the period, so a relay's pings arrive spread evenly however
 * its connections came. A connection that does not answer within `timeoutMs` is aborted (its
 * peer vanished without closing, e.g. a phone that lost its network); a peer that does not speak
 * the ping protocol answered all the same (its refusal came back), as in libp2p's monitor.
 */
import { randomBytes } from 'node:crypto';
import type { Connection } from '@libp2p/interface';
import { byteStream } from '@libp2p/utils';

/** The ping protocol libp2p's ping service answers. */
export const PING_PROTOCOL = '/ipfs/ping/1.0.0';
const PING_BYTES = 32;

/** The part of a connection the schedule needs (a plain object in unit tests). */
export interface Scheduled {
  readonly id: string;
}

/**
 * Which connections are due for a ping: each once per `periodMs`, the first time at a random
 * point of its first period. `random` returns a number in [0, 1) (injectable for tests).
 */
export class PingSchedule<C extends Scheduled> {
  private readonly next = new Map<string, number>();

  constructor(
    private readonly periodMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The connections of `open` whose ping is due at `now`; forgets connections no longer open. */
  due(open: readonly C[], now: number): C[] {
    const out: C[] = [];
    const seen = new Set<string>();
    for (const c of open) {
      seen.add(c.id);
      const at = this.next.get(c.id);
      if (at === undefined) this.next.set(c.id, now + this.random() * this.periodMs);
      else if (at <= now) {
        out.push(c);
        this.next.set(c.id, now + this.periodMs);
      }
    }
    if (this.next.size > seen.size)
      for (const id of this.next.keys()) if (!seen.has(id)) this.next.delete(id);
    return out;
  }
}

/** Pings `conn` once: true if the peer answered (or refused the protocol), false otherwise. */
export async function pingConnection(conn: Connection, timeoutMs: number): Promise<boolean> {
  const signal = AbortSignal.timeout(timeoutMs);
  let stream: Awaited<ReturnType<Connection['newStream']>> | undefined;
  try {
    stream = await conn.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true });
    const bytes = byteStream(stream);
    const sent = randomBytes(PING_BYTES);
    await bytes.write(sent, { signal });
    const echo = (await bytes.read({ bytes: PING_BYTES, signal })).subarray();
    await stream.close({ signal });
    return Buffer.compare(echo, sent) === 0;
  } catch (e) {
    stream?.abort(e instanceof Error ? e : new Error(String(e)));
    return e instanceof Error && e.name === 'UnsupportedProtocolError';
  }
}

export interface LivenessOptions {
  /** The connections to watch, read at every tick. */
  connections: () => readonly Connection[];
  /** Milliseconds between two pings of one connection. */
  periodMs: number;
  /** Milliseconds a ping may take before its connection is aborted. */
  timeoutMs: number;
  /** Told of each connection aborted for not answering. */
  onDead?: (conn: Connection) => void;
}

/** Starts the paced pings (a tick per second, or ten per period if shorter); returns `stop`. */
export function startLiveness(options: LivenessOptions): () => void {
  const schedule = new PingSchedule<Connection>(options.periodMs);
  const pending = new Set<string>();
  const tick = (): void => {
    for (const conn of schedule.due(options.connections(), Date.now())) {
      if (pending.has(conn.id) || conn.status !== 'open') continue;
      pending.add(conn.id);
      void pingConnection(conn, options.timeoutMs).then((alive) => {
        pending.delete(conn.id);
        if (alive || conn.status !== 'open') return;
        conn.abort(new Error('the peer did not answer a ping'));
        options.onDead?.(conn);
      });
    }
  };
  const timer = setInterval(tick, Math.min(1000, Math.max(10, options.periodMs / 10)));
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}
