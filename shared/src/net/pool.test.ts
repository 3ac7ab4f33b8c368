import { describe, expect, it } from 'vitest';
import { sha256 } from '../crypto/sha256.js';
import { MailboxError } from '../ports/mailbox.js';
import { NetworkError } from '../ports/network.js';
import type { Storage } from '../ports/storage.js';
import { memoryStorage } from '../ports/storage.memory.js';
import { toHex } from '../protocol/ids.js';
import { MemoryConnector, MemoryRelay } from './memory.js';
import { Outbox, OutboxError } from './outbox.js';
import { RECONNECT_INITIAL_MS, RECONNECT_MAX_MS, RelayPool } from './pool.js';
import type { FollowHandler, PoolState, RelayPoolOptions, Schedule } from './pool.js';

const TOPIC = new Uint8Array(32).fill(7);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array | undefined): string => (b === undefined ? '<none>' : new TextDecoder().decode(b));

/** Lets every pending promise chain run (the memory relay works in microtasks). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Timers that move only when the test says so. */
class ManualTimers {
  now = 0;
  private nextId = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  readonly schedule: Schedule = (fn, ms) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + Math.max(0, ms), fn });
    return () => {
      this.timers.delete(id);
    };
  };

  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await settle();
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) {
        if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
      }
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
    await settle();
  }
}

function setup(relayCount = 2) {
  const timers = new ManualTimers();
  const relays = Array.from(
    { length: relayCount },
    (_, i) => new MemoryRelay(`relay${i + 1}`, { schedule: timers.schedule }),
  );
  const connector = new MemoryConnector(relays);
  const pools: RelayPool[] = [];
  const makePool = async (
    storage: Storage = memoryStorage(),
    extra: Partial<RelayPoolOptions> = {},
  ): Promise<RelayPool> => {
    const pool = new RelayPool({
      connector,
      relays: relays.map((r) => r.address),
      storage,
      schedule: timers.schedule,
      random: () => 0.5,
      ...extra,
    });
    pools.push(pool);
    await pool.start();
    return pool;
  };
  return { timers, relays, connector, makePool };
}

function relayAt<T>(list: readonly T[], i: number): T {
  const x = list[i];
  if (x === undefined) throw new Error(`no item ${i}`);
  return x;
}

/** A follow that records what its handler got. */
function collect(pool: RelayPool, address = TOPIC, extra: Partial<FollowHandler> = {}) {
  const got: string[] = [];
  const from: { relay: string; seq: number }[] = [];
  let caughtUp = 0;
  const follow = pool.follow(address, {
    onMessage: (m, f) => {
      got.push(str(m));
      from.push({ ...f });
    },
    onCaughtUp: () => {
      caughtUp++;
    },
    ...extra,
  });
  return {
    got,
    from,
    follow,
    get caughtUp() {
      return caughtUp;
    },
  };
}

const statuses = (pool: RelayPool): string[] => pool.state.relays.map((r) => r.status);
const log = (relay: MemoryRelay): string[] => relay.messages(TOPIC).map(str);

describe('RelayPool: failover', () => {
  it('works through relay 2 when relay 1 is down, and fails only when no relay is left', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    r1.down();
    const pool = await makePool();
    expect(statuses(pool)).toEqual(['offline', 'connected']);

    expect(await pool.append(TOPIC, text('a'))).toEqual({ kind: 'appended', seq: 1 });
    expect(await pool.send(TOPIC, text('b'))).toBe('sent');
    expect((await pool.read(TOPIC, 0)).map((m) => str(m.message))).toEqual(['a', 'b']);
    expect(log(r2)).toEqual(['a', 'b']);
    expect(log(r1)).toEqual([]);

    r2.down();
    await expect(pool.append(TOPIC, text('c'))).rejects.toBeInstanceOf(MailboxError);
    await expect(pool.read(TOPIC, 0)).rejects.toBeInstanceOf(MailboxError);
    expect(statuses(pool)).toEqual(['offline', 'offline']);
    await pool.close();
  });

  it('fails over when a connected relay dies or refuses, and treats epoch-taken as an answer', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    const pool = await makePool();
    expect(statuses(pool)).toEqual(['connected', 'connected']);

    r1.refuseAppends = 'rateLimited';
    expect(await pool.append(TOPIC, text('x'))).toEqual({ kind: 'appended', seq: 1 });
    expect(log(r2)).toEqual(['x']);
    r1.refuseAppends = undefined;

    r1.down(); // the pool learns it on its next request
    expect(await pool.append(TOPIC, text('y'))).toEqual({ kind: 'appended', seq: 2 });
    expect(log(r2)).toEqual(['x', 'y']);
    expect(statuses(pool)).toEqual(['offline', 'connected']);

    await pool.close();
  });

  it('fails over when relay 1 goes down while an append waits there; nothing is stored at relay 1', async () => {
    const { timers, relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    const pool = await makePool();
    r1.appendDelayMs = 1000;
    const appended = pool.append(TOPIC, text('slow'));
    await timers.advance(500);
    r1.down();
    expect(await appended).toEqual({ kind: 'appended', seq: 1 });
    await timers.advance(1000);
    expect(log(r1)).toEqual([]);
    expect(log(r2)).toEqual(['slow']);
    await pool.close();
  });

  it('returns epoch-taken from the first relay as its answer, without trying the next', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    r1.inject(TOPIC, text('commit by someone else'), 3);
    const pool = await makePool();
    expect(await pool.append(TOPIC, text('my commit'), { commitEpoch: 3 })).toEqual({
      kind: 'refused',
      reason: 'epoch-taken',
    });
    expect(r2.appendCalls).toBe(0);
    expect(log(r1)).toEqual(['commit by someone else']);
    expect(await pool.append(TOPIC, text('my next commit'), { commitEpoch: 4 })).toEqual({
      kind: 'appended',
      seq: 2,
    });
    await pool.close();
  });

  it('reconnects with doubling delays capped at the maximum, and reports each state', async () => {
    const { timers, relays, makePool } = setup();
    const r1 = relayAt(relays, 0);
    r1.down();
    const seen: { at: number; state: string }[] = [];
    const pool = await makePool(memoryStorage(), { random: () => 1 });
    pool.onState((s: PoolState) => {
      const status = s.relays[0]?.status ?? 'none';
      if (seen.at(-1)?.state !== status) seen.push({ at: timers.now, state: status });
    });
    await timers.advance(92_000);
    const attempts = seen.filter((s) => s.state === 'connecting').map((s) => s.at);
    const gaps = attempts.map((t, i) => t - (i === 0 ? 0 : (attempts[i - 1] ?? 0)));
    expect(gaps).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(statuses(pool)).toEqual(['offline', 'connected']);

    r1.up();
    await timers.advance(RECONNECT_MAX_MS);
    expect(statuses(pool)).toEqual(['connected', 'connected']);
    expect(seen.at(-1)?.state).toBe('connected');
    await pool.close();
  });
});

describe('RelayPool: reconnect now', () => {
  it('dials a relay whose backoff reached the maximum at once, and starts its backoff over if it is still down', async () => {
    const { timers, relays, makePool } = setup(1);
    const r1 = relayAt(relays, 0);
    r1.down();
    const pool = await makePool(memoryStorage(), { random: () => 1 });
    await timers.advance(60_000);
    expect(statuses(pool)).toEqual(['offline']);
    // Back: without waiting out the next 30 s delay.
    r1.up();
    await pool.reconnectNow();
    expect(statuses(pool)).toEqual(['connected']);
    // Down again and tried at once: unreachable, so the next try comes after the first delay.
    r1.down();
    await settle();
    await pool.reconnectNow();
    expect(statuses(pool)).toEqual(['offline']);
    r1.up();
    await timers.advance(RECONNECT_INITIAL_MS);
    expect(statuses(pool)).toEqual(['connected']);
    await pool.close();
  });
});

describe('RelayPool: outbox', () => {
  it('queues while every relay is down, then delivers once when they come back', async () => {
    const { timers, relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    r1.down();
    r2.down();
    const pool = await makePool();
    const outboxSizes: number[] = [];
    pool.onState((s) => {
      if (outboxSizes.at(-1) !== s.outbox) outboxSizes.push(s.outbox);
    });
    expect(await pool.send(TOPIC, text('hello'))).toBe('queued');
    expect(pool.state.outbox).toBe(1);

    r1.up();
    r2.up();
    await timers.advance(RECONNECT_INITIAL_MS);
    expect(statuses(pool)).toEqual(['connected', 'connected']);
    expect(pool.state.outbox).toBe(0);
    expect(outboxSizes).toEqual([0, 1, 0]);
    expect(log(r1).length + log(r2).length).toBeGreaterThanOrEqual(1);
    for (const relay of [r1, r2])
      expect(log(relay).filter((m) => m === 'hello').length).toBeLessThanOrEqual(1);

    const receiver = collect(await makePool());
    await settle();
    expect(receiver.got).toEqual(['hello']);
  });

  it('retries when the ack was lost; the relay dedupes and the receiver gets the message once', async () => {
    const { timers, relays, makePool } = setup(1);
    const r1 = relayAt(relays, 0);
    const receiver = collect(await makePool());
    const pool = await makePool();
    r1.dropAcks = 1;
    expect(await pool.send(TOPIC, text('once'))).toBe('queued');
    expect(log(r1)).toEqual(['once']); // stored, but the sender does not know
    expect(pool.state.outbox).toBe(1);

    await timers.advance(RECONNECT_INITIAL_MS);
    expect(r1.appendCalls).toBe(2);
    expect(pool.state.outbox).toBe(0);
    expect(log(r1)).toEqual(['once']);
    expect(receiver.got).toEqual(['once']);
    expect(r1.pushCount).toBe(1);
  });

  it('sends to every connected relay; one ack is enough, and the receiver gets one copy', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    const receiver = collect(await makePool());
    const pool = await makePool();
    r1.dropAcks = 1;
    expect(await pool.send(TOPIC, text('both'))).toBe('sent');
    await settle();
    expect(log(r1)).toEqual(['both']);
    expect(log(r2)).toEqual(['both']);
    expect(pool.state.outbox).toBe(0);
    expect(receiver.got).toEqual(['both']);
  });

  it('sends what a crashed pool had queued when a new pool opens over the same storage', async () => {
    const { relays, connector } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    const storage = memoryStorage();
    const options = (timers: ManualTimers): RelayPoolOptions => ({
      connector,
      relays: relays.map((r) => r.address),
      storage,
      schedule: timers.schedule,
    });
    r1.down();
    r2.down();
    const crashed = new RelayPool(options(new ManualTimers()));
    await crashed.start();
    expect(await crashed.send(TOPIC, text('one'))).toBe('queued');
    expect(await crashed.send(TOPIC, text('two'))).toBe('queued');
    // No close(): the process is gone, its timers with it.

    r1.up();
    r2.up();
    const reopened = new RelayPool(options(new ManualTimers()));
    await reopened.start();
    expect(reopened.state.outbox).toBe(2);
    expect(await reopened.flush()).toBe(0);
    const everywhere = new Set([...log(r1), ...log(r2)]);
    expect([...everywhere].sort()).toEqual(['one', 'two']);
    for (const relay of [r1, r2]) {
      expect(log(relay)).toEqual(['one', 'two'].filter((m) => log(relay).includes(m)));
    }
    expect((await Outbox.open(storage)).length).toBe(0);
    await reopened.close();
  });

  it('refuses a send past the outbox bound with OutboxError, changing nothing', async () => {
    const { timers, relays, makePool } = setup();
    for (const r of relays) r.down();
    const storage = memoryStorage();
    const pool = await makePool(storage, { outbox: { maxEntries: 2 } });
    await pool.send(TOPIC, text('a'));
    await pool.send(TOPIC, text('b'));
    const refused = await pool.send(TOPIC, text('c')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OutboxError);
    expect(refused).toMatchObject({ code: 'full' });
    expect(pool.state.outbox).toBe(2);

    for (const r of relays) r.up();
    await timers.advance(RECONNECT_INITIAL_MS);
    expect(pool.state.outbox).toBe(0);
    const everywhere = new Set(relays.flatMap(log));
    expect([...everywhere].sort()).toEqual(['a', 'b']);
  });
});

describe('RelayPool: follow', () => {
  it('hands a message two relays deliver to the handler once, in each relay’s seq order', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    r1.inject(TOPIC, text('a'));
    r1.inject(TOPIC, text('b'));
    r2.inject(TOPIC, text('x'));
    r2.inject(TOPIC, text('b'));
    r2.inject(TOPIC, text('a'));
    const storage = memoryStorage();
    const pool = await makePool(storage);
    const c = collect(pool);
    await settle();
    expect([...c.got].sort()).toEqual(['a', 'b', 'x']);
    expect(c.caughtUp).toBe(1);
    expect(c.follow.live).toBe(true);
    for (const relay of ['relay1', 'relay2']) {
      const seqs = c.from.filter((f) => f.relay === relay).map((f) => f.seq);
      expect(seqs).toEqual([...seqs].sort((p, q) => p - q));
    }

    r1.inject(TOPIC, text('live'));
    r2.inject(TOPIC, text('live'));
    await settle();
    expect(c.got.filter((m) => m === 'live')).toEqual(['live']);
    expect(c.got).toHaveLength(4);
    await c.follow.close();
    expect(str(await storage.getMeta(`cursor/relay1/${toHex(TOPIC)}`))).toBe('3');
    expect(str(await storage.getMeta(`cursor/relay2/${toHex(TOPIC)}`))).toBe('4');
  });

  it('after a restart, follows from the persisted cursors and gets only newer messages', async () => {
    const { relays, connector, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    for (const m of ['m1', 'm2']) {
      r1.inject(TOPIC, text(m));
      r2.inject(TOPIC, text(m));
    }
    const storage = memoryStorage();
    const first = collect(await makePool(storage));
    await settle();
    expect([...first.got].sort()).toEqual(['m1', 'm2']);
    // Saved while running, without close().
    expect(str(await storage.getMeta(`cursor/relay1/${toHex(TOPIC)}`))).toBe('2');
    expect(str(await storage.getMeta(`cursor/relay2/${toHex(TOPIC)}`))).toBe('2');

    // Crash: the connections die with the process.
    for (const r of relays) r.down();
    for (const r of relays) r.up();
    r1.inject(TOPIC, text('m3'));
    r2.inject(TOPIC, text('m3'));
    const restarted = new RelayPool({
      connector,
      relays: relays.map((r) => r.address),
      storage,
      schedule: new ManualTimers().schedule,
    });
    await restarted.start();
    const second = collect(restarted);
    await settle();
    expect(second.got).toEqual(['m3']);
    expect(second.caughtUp).toBe(1);
  });

  it('starts over at a relay whose mailbox is shorter than the saved cursor (its data was lost)', async () => {
    const { timers, relays, connector, makePool } = setup(1);
    const r1 = relayAt(relays, 0);
    for (const m of ['m1', 'm2', 'm3']) r1.inject(TOPIC, text(m));
    const storage = memoryStorage();
    const first = collect(await makePool(storage));
    await settle();
    expect(first.got).toEqual(['m1', 'm2', 'm3']);
    expect(str(await storage.getMeta(`cursor/relay1/${toHex(TOPIC)}`))).toBe('3');
    // The operator wiped the relay: a new one answers at the same address, with one message.
    r1.down();
    const wiped = new MemoryRelay('relay1', { schedule: timers.schedule });
    connector.add(r1.address, wiped);
    wiped.inject(TOPIC, text('n1'));
    await timers.advance(RECONNECT_MAX_MS);
    expect(first.got).toEqual(['m1', 'm2', 'm3', 'n1']);
    expect(str(await storage.getMeta(`cursor/relay1/${toHex(TOPIC)}`))).toBe('1');
  });

  it('resubscribes from the cursor after a relay dropped it as slow: nothing missed, nothing twice', async () => {
    const { relays, makePool } = setup(1);
    const r1 = relayAt(relays, 0);
    r1.slowSubscriberLimit = 2;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const pool = await makePool();
    const got: string[] = [];
    pool.follow(TOPIC, {
      onMessage: async (m) => {
        if (str(m) === 'm1') await gate;
        got.push(str(m));
      },
    });
    await settle();
    for (const m of ['m1', 'm2', 'm3', 'm4']) r1.inject(TOPIC, text(m));
    await settle();
    expect(r1.subscriberCount(TOPIC)).toBe(0); // dropped while the handler sat on m1

    release();
    await settle();
    expect(got).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(r1.subscriberCount(TOPIC)).toBe(1);
    expect(r1.pushCount).toBe(4); // resumed after m1, not from the start
    r1.inject(TOPIC, text('m5'));
    await settle();
    expect(got).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
  });

  it('resubscribes after a reconnect and delivers what arrived while offline', async () => {
    const { timers, relays, makePool } = setup(1);
    const r1 = relayAt(relays, 0);
    const c = collect(await makePool());
    r1.inject(TOPIC, text('before'));
    await settle();
    expect(c.caughtUp).toBe(1);
    r1.down();
    r1.inject(TOPIC, text('while offline'));
    r1.up();
    await timers.advance(RECONNECT_INITIAL_MS);
    expect(c.got).toEqual(['before', 'while offline']);
    expect(r1.pushCount).toBe(2);
    expect(c.caughtUp).toBe(2);
  });

  it('does not move the cursor past a message whose handler failed; it comes again later', async () => {
    const { timers, relays, makePool } = setup(1);
    const r1 = relayAt(relays, 0);
    const storage = memoryStorage();
    const pool = await makePool(storage);
    let failures = 0;
    const got: string[] = [];
    const errors: unknown[] = [];
    pool.follow(TOPIC, {
      onMessage: (m) => {
        if (str(m) === 'b' && failures++ === 0) throw new Error('disk full');
        got.push(str(m));
      },
      onError: (e) => errors.push(e),
    });
    r1.inject(TOPIC, text('a'));
    r1.inject(TOPIC, text('b'));
    r1.inject(TOPIC, text('c'));
    await settle();
    expect(got).toEqual(['a']);
    expect(errors).toHaveLength(1);
    expect(str(await storage.getMeta(`cursor/relay1/${toHex(TOPIC)}`))).toBe('1');

    await timers.advance(RECONNECT_INITIAL_MS);
    expect(got).toEqual(['a', 'b', 'c']);
    expect(str(await storage.getMeta(`cursor/relay1/${toHex(TOPIC)}`))).toBe('3');
  });
});

describe('RelayPool: fetch and blobs', () => {
  it('fetch keeps only ops that hash to an id asked for, and asks the next relay for the rest', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    const [a, b, c] = [text('op a'), text('op b'), text('op c')];
    r2.inject(TOPIC, a);
    r2.inject(TOPIC, b);
    r2.inject(TOPIC, c);
    // Relay 1 answers with a forgery and an op nobody asked for, and has neither real one.
    r1.misbehave.fetch = () => [text('forged op a'), c];
    const pool = await makePool();
    const found = await pool.fetch([sha256(a), sha256(b), sha256(text('op nobody has'))]);
    expect(found.map(str).sort()).toEqual(['op a', 'op b']);
    expect(await pool.fetch([])).toEqual([]);
  });

  it('putBlob checks the hash and fails over; getBlob skips a chunk that does not match', async () => {
    const { relays, makePool } = setup();
    const [r1, r2] = [relayAt(relays, 0), relayAt(relays, 1)];
    const chunk = text('chunk bytes');
    const hash = sha256(chunk);
    const pool = await makePool();

    await expect(pool.putBlob(hash, text('other bytes'))).rejects.toMatchObject({
      name: 'NetworkError',
      code: 'refused',
      status: 'hashMismatch',
    });
    r1.down();
    await pool.putBlob(hash, chunk);
    r1.up();
    const reader = await makePool();
    r1.misbehave.getBlob = () => text('garbage');
    expect(str(await reader.getBlob(hash))).toBe('chunk bytes'); // from relay 2
    expect(await reader.getBlob(sha256(text('absent')))).toBeUndefined();
    r2.misbehave.getBlob = () => text('more garbage');
    expect(await reader.getBlob(hash)).toBeUndefined();
    for (const r of relays) r.down();
    const error = await reader.getBlob(hash).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect(error).toMatchObject({ code: 'unreachable' });
  });
});

describe('MemoryRelay', () => {
  it('behaves as RelayLink documents: dense seqs, idempotent append, soft sequencing, backlog then live', async () => {
    const relay = new MemoryRelay('r');
    const connector = new MemoryConnector([relay]);
    const link = await connector.connect(relay.address);
    expect(link.relay).toBe('r');
    expect(await link.append(TOPIC, text('a'))).toEqual({ kind: 'appended', seq: 1 });
    expect(await link.append(TOPIC, text('c1'), { commitEpoch: 1 })).toEqual({ kind: 'appended', seq: 2 });
    expect(await link.append(TOPIC, text('a'))).toEqual({ kind: 'appended', seq: 1 });
    expect(await link.append(TOPIC, text('c1'), { commitEpoch: 1 })).toEqual({ kind: 'appended', seq: 2 });
    expect(await link.append(TOPIC, text('c2'), { commitEpoch: 1 })).toEqual({
      kind: 'refused',
      reason: 'epoch-taken',
    });
    const page = await link.read(TOPIC, 1);
    expect(page.lastSeq).toBe(2);
    expect(page.messages.map((m) => [m.seq, str(m.message)])).toEqual([[2, 'c1']]);

    const events: string[] = [];
    const sub = link.subscribe(TOPIC, 1, {
      onMessage: (seq, m) => {
        events.push(`${seq}:${str(m)}`);
      },
      onLive: (last) => events.push(`live@${last}`),
      onEnd: (e) => events.push(`end:${e.code}`),
    });
    await settle();
    await link.append(TOPIC, text('b'));
    await settle();
    sub.close();
    expect(events).toEqual(['2:c1', 'live@2', '3:b', 'end:closed']);

    await expect(link.putBlob(sha256(text('x')), text('y'))).rejects.toMatchObject({
      status: 'hashMismatch',
    });
    expect(await link.fetch([sha256(text('b')), sha256(text('zzz'))])).toEqual([text('b')]);

    const ended: string[] = [];
    link.subscribe(TOPIC, 0, { onMessage: () => undefined, onEnd: (e) => ended.push(e.code) });
    await settle();
    relay.down();
    expect(link.open).toBe(false);
    expect(ended).toEqual(['unreachable']);
    await expect(link.read(TOPIC, 0)).rejects.toMatchObject({ code: 'unreachable' });
    await expect(connector.connect(relay.address)).rejects.toMatchObject({ code: 'unreachable' });
    relay.up();
    const again = await connector.connect(relay.address);
    expect((await again.read(TOPIC, 0)).lastSeq).toBe(3);
    await again.close();
    await expect(again.read(TOPIC, 0)).rejects.toMatchObject({ code: 'closed' });
  });
});
