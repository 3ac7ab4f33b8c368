/** Small helpers shared by the relay's integration tests and the relay benchmark. */
import type { RelayLink } from '../../../shared/src/ports/network.js';
import type { TopicId } from '../../../shared/src/protocol/index.js';
import { NONCE_BYTES, encodeSealed } from '../../../shared/src/protocol/seal.js';
import type { SpawnedRelay } from './spawn.js';

/** A 32-byte mailbox address whose first byte is `n`. */
export function address(n: number, salt = 0x5a): Uint8Array {
  const a = new Uint8Array(32);
  a[0] = n;
  a[31] = salt;
  return a;
}

/**
 * A message of `size` bytes carrying `tag` and index `i` in its first 8 bytes. Opaque to a relay
 * (like an MLS handshake) at any length: it does not begin like a sealed op.
 */
export function message(tag: number, i: number, size = 1000): Uint8Array {
  const m = new Uint8Array(size);
  const v = new DataView(m.buffer);
  v.setUint32(0, tag);
  v.setUint32(4, i);
  return m;
}

/** A well-formed sealed op of `address` exactly `size` bytes long (a padding bucket's length). */
export function sealedMessage(address: Uint8Array, tag: number, size = 1024): Uint8Array {
  for (let n = size; n > 0; n--) {
    const ciphertext = new Uint8Array(n);
    new DataView(ciphertext.buffer).setUint32(0, tag);
    const bytes = encodeSealed({
      topic: address as TopicId,
      epoch: { epoch: 1, commitHash: new Uint8Array(32) },
      nonce: new Uint8Array(NONCE_BYTES),
      ciphertext,
    });
    if (bytes.length === size) return bytes;
  }
  throw new Error(`no sealed op is ${size} bytes long`);
}

/**
 * `size` bytes that present themselves as a sealed op of `address` (a sealed op's head: a
 * four-item array, then the 32-byte topic) and are none: the CBOR breaks off after the topic.
 */
export function fakeSealed(address: Uint8Array, size = 1024): Uint8Array {
  const m = new Uint8Array(size).fill(0xff);
  m.set([0x84, 0x58, 0x20]);
  m.set(address, 3);
  return m;
}

export function indexOf(m: Uint8Array): number {
  return new DataView(m.buffer, m.byteOffset, m.byteLength).getUint32(4);
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Subscribes and resolves with the first `n` messages (and their seqs), then closes. */
export function collect(
  link: RelayLink,
  addr: Uint8Array,
  n: number,
  options: { after?: number; timeoutMs?: number; onEach?: (seq: number) => Promise<void> | void } = {},
): Promise<{ messages: Uint8Array[]; seqs: number[] }> {
  const messages: Uint8Array[] = [];
  const seqs: number[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`only ${messages.length} of ${n} arrived`));
    }, options.timeoutMs ?? 60_000);
    const sub = link.subscribe(addr, options.after ?? 0, {
      async onMessage(seq, m) {
        messages.push(m);
        seqs.push(seq);
        await options.onEach?.(seq);
        if (messages.length === n) {
          clearTimeout(timer);
          sub.close();
          resolve({ messages, seqs });
        }
      },
      onEnd(e) {
        if (messages.length < n) {
          clearTimeout(timer);
          reject(e);
        }
      },
    });
  });
}

export async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  ms = 30_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The sum of a Prometheus metric's samples whose line starts with `prefix`. */
export async function metric(relay: SpawnedRelay, prefix: string): Promise<number> {
  const text = await (await fetch(`${relay.httpUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

/** Appends `count` messages with up to `concurrency` in flight; resolves with their seqs in order. */
export async function appendMany(
  link: RelayLink,
  addr: Uint8Array,
  count: number,
  make: (i: number) => Uint8Array,
  concurrency = 64,
): Promise<number[]> {
  const seqs = new Array<number>(count).fill(0);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const r = await link.append(addr, make(i));
      if (r.kind !== 'appended') throw new Error(`append ${i} refused`);
      seqs[i] = r.seq;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return seqs;
}
