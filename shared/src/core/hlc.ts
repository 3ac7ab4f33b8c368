import type { Hlc } from '../protocol/op.js';
import type { Clock } from '../ports/env.js';

/** Orders HLC stamps: wall time, then counter. */
export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wallMs !== b.wallMs ? a.wallMs - b.wallMs : a.counter - b.counter;
}

/**
 * A hybrid logical clock: stamps that follow wall time but never go backwards and are
 * always after every stamp this device has seen, so causal order implies HLC order.
 */
export class HybridClock {
  private last: Hlc = { wallMs: 0, counter: 0 };

  constructor(private readonly clock: Clock) {}

  /** A new stamp, after every stamp issued or observed so far. */
  tick(): Hlc {
    const now = this.clock.now();
    this.last =
      now > this.last.wallMs
        ? { wallMs: now, counter: 0 }
        : { wallMs: this.last.wallMs, counter: this.last.counter + 1 };
    return this.last;
  }

  /** Takes note of a stamp from an accepted op, so the next tick is after it. */
  observe(seen: Hlc): void {
    if (compareHlc(seen, this.last) > 0) this.last = seen;
  }

  peek(): Hlc {
    return this.last;
  }
}
