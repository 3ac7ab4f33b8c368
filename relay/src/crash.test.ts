/**
 * Crash safety of a real relay process (ARCHITECTURE.md section 10): an acknowledged append is
 * on disk, so a relay killed with SIGKILL in the middle of a burst and restarted on the same data
 * folder serves every message it acknowledged, at the seq it acknowledged, with no gap, no
 * duplicate and nothing that no client sent; and it comes back with the same identity.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector, RelayLink } from '../../shared/src/ports/network.js';
import { bytesKey, equalBytes } from '../../shared/src/protocol/ids.js';
import { MAX_PAGE_MESSAGES } from '../../shared/src/protocol/limits.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, collect } from './testing/util.js';

/** Appends each writer attempts: far more than get acknowledged before the kill. */
const PER_WRITER = 3000;
/** Appends in flight per writer. */
const IN_FLIGHT = 64;
/** Acknowledged appends (all writers) after which the relay is killed. */
const KILL_AT = 1500;

/** A message naming its writer and index, of varying size, with content derived from both. */
function payload(tag: number, i: number): Uint8Array {
  const size = 64 + ((i * 37 + tag * 101) % 1900);
  const m = new Uint8Array(size);
  const v = new DataView(m.buffer);
  v.setUint32(0, tag);
  v.setUint32(4, i);
  for (let j = 8; j < size; j++) m[j] = (j * 13 + i * 7 + tag * 29) & 0xff;
  return m;
}

function identify(m: Uint8Array): string {
  const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
  return m.length < 8 ? 'short' : `${v.getUint32(0)}/${v.getUint32(4)}`;
}

interface Writer {
  readonly tag: number;
  readonly addr: Uint8Array;
  readonly link: RelayLink;
}

/** Reads a whole mailbox by pages from the start. */
async function readAll(link: RelayLink, addr: Uint8Array): Promise<{ seq: number; message: Uint8Array }[]> {
  const out: { seq: number; message: Uint8Array }[] = [];
  for (;;) {
    const page = await link.read(addr, out.at(-1)?.seq ?? 0, MAX_PAGE_MESSAGES);
    out.push(...page.messages);
    if (page.messages.length === 0 || (out.at(-1)?.seq ?? 0) >= page.lastSeq) return out;
  }
}

describe('a relay killed with SIGKILL in the middle of a burst', () => {
  const dir = tempDir();
  const connectors: RelayConnector[] = [];
  const relays: SpawnedRelay[] = [];
  afterAll(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    for (const r of relays) await r.kill9();
    dir.cleanup();
  });

  async function connect(relay: SpawnedRelay): Promise<RelayLink> {
    const c = await libp2pConnector({ requestTimeoutMs: 10_000 });
    connectors.push(c);
    return c.connect(relay.multiaddr);
  }

  it('serves every acknowledged message at its acknowledged seq after restarting on the same data, as the same peer', async () => {
    const first = await spawnRelay({ dataDir: dir.dir });
    relays.push(first);
    const a = address(1, 0xc1);
    const b = address(2, 0xc1);
    // Two writers share mailbox `a` (their appends interleave), a third writes `b`.
    const writers: Writer[] = [
      { tag: 1, addr: a, link: await connect(first) },
      { tag: 2, addr: a, link: await connect(first) },
      { tag: 3, addr: b, link: await connect(first) },
    ];
    /** Per mailbox: acknowledged seq → the message acknowledged there. */
    const acked = new Map<string, Map<number, Uint8Array>>([
      [bytesKey(a), new Map()],
      [bytesKey(b), new Map()],
    ]);
    let ackCount = 0;
    let attempted = 0;
    let killed: Promise<void> | undefined;
    const doubleAcks: string[] = [];

    const run = async (w: Writer): Promise<void> => {
      let next = 0;
      let broken = false;
      const worker = async (): Promise<void> => {
        while (!broken && next < PER_WRITER) {
          const i = next++;
          const m = payload(w.tag, i);
          attempted++;
          try {
            const r = await w.link.append(w.addr, m);
            if (r.kind !== 'appended') throw new Error(`append ${w.tag}/${i} refused: ${r.reason}`);
            const seen = acked.get(bytesKey(w.addr));
            if (seen?.has(r.seq) === true) doubleAcks.push(`${w.tag}/${i} at ${r.seq}`);
            seen?.set(r.seq, m);
            if (++ackCount >= KILL_AT) killed ??= first.kill9();
          } catch (e) {
            // Only the kill may end the burst: anything else before it is a failure of its own.
            if (killed === undefined) throw e;
            broken = true;
          }
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    };
    await Promise.all(writers.map(run));
    await killed;

    // The kill came in the middle of the burst.
    expect(killed).toBeDefined();
    expect(ackCount).toBeGreaterThanOrEqual(KILL_AT);
    expect(ackCount).toBeLessThan(writers.length * PER_WRITER);
    expect(doubleAcks).toEqual([]);

    const second = await spawnRelay({ dataDir: dir.dir });
    relays.push(second);
    // Same identity: same peer id in its address and on its health endpoint.
    expect(second.peerId).toBe(first.peerId);
    expect(second.peerId).not.toBe('');
    const health = (await (await fetch(`${second.httpUrl}/healthz`)).json()) as { peerId: string };
    expect(health.peerId).toBe(first.peerId);

    const sent = new Map<string, Uint8Array>();
    for (const w of writers)
      for (let i = 0; i < PER_WRITER; i++) sent.set(`${w.tag}/${i}`, payload(w.tag, i));

    const reader = await connect(second);
    for (const addr of [a, b]) {
      const served = await readAll(reader, addr);
      const ack = acked.get(bytesKey(addr)) ?? new Map<number, Uint8Array>();
      const maxAcked = Math.max(0, ...ack.keys());
      // Dense seqs from 1, covering every acknowledged one.
      expect(served.map((s) => s.seq)).toEqual(Array.from({ length: served.length }, (_, i) => i + 1));
      expect(served.length).toBeGreaterThanOrEqual(maxAcked);
      // Every acknowledged message is served at its acknowledged seq, byte for byte.
      const lost: string[] = [];
      for (const [seq, m] of ack) {
        const s = served[seq - 1];
        if (s === undefined || !equalBytes(s.message, m)) lost.push(`${identify(m)} at ${seq}`);
      }
      expect(lost).toEqual([]);
      // Anything else served is a message a client sent (in flight at the kill), intact, once.
      const names = served.map((s) => identify(s.message));
      expect(new Set(names).size).toBe(names.length);
      const foreign = served.filter((s) => {
        const original = sent.get(identify(s.message));
        return original === undefined || !equalBytes(original, s.message);
      });
      expect(foreign.map((s) => s.seq)).toEqual([]);
      // The restarted relay continues the log: a new append gets the next seq, none is reused.
      expect(await reader.append(addr, payload(9, served.length))).toEqual({
        kind: 'appended',
        seq: served.length + 1,
      });
    }
    expect(acked.get(bytesKey(a))?.size).toBeGreaterThan(0);
    expect(acked.get(bytesKey(b))?.size).toBeGreaterThan(0);

    // A subscription from 0 delivers the same log as the pages.
    const pages = await readAll(reader, a);
    const pushed = await collect(reader, a, pages.length, { timeoutMs: 30_000 });
    expect(pushed.seqs).toEqual(pages.map((p) => p.seq));
    expect(pushed.messages.map(identify)).toEqual(pages.map((p) => identify(p.message)));
    expect(attempted).toBeGreaterThan(ackCount);

    expect(await second.stop()).toBe(0);
  });
});
