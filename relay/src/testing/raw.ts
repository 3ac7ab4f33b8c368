/**
 * A raw client of the relay protocols for hostile-input tests: a stock libp2p node (WebSockets,
 * noise, yamux, identify, like shared/src/net/libp2p.ts) and streams on which the test writes
 * whatever bytes it likes. Answers are parsed with an independent varint-frame reader, so a test
 * does not rely on the framing code it is testing.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import type { Libp2p, Stream } from '@libp2p/interface';
import { webSockets } from '@libp2p/websockets';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { Uint8ArrayList } from 'uint8arraylist';
import { type Answer, decodeAnswer } from '../../../shared/src/protocol/wire.js';

/** A started client node with no listener. */
export async function rawNode(): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: [] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionManager: { dialTimeout: 5_000 },
  });
}

/** An unsigned LEB128 varint, the length prefix of every relay-protocol frame. */
export function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

export interface RawStream {
  readonly stream: Stream;
  /** Every answer received so far, in order. */
  readonly answers: readonly Answer[];
  /** Sends `payload` as one frame: its varint length, then the bytes. */
  frame(payload: Uint8Array): void;
  /** Sends `bytes` as they are, with no framing. */
  raw(bytes: Uint8Array): void;
  /** The first answer carrying request id `id` (already received or still to come). */
  answer(id: number, timeoutMs?: number): Promise<Answer>;
  /** Resolves when the stream is gone: with the error's message if it was reset, else undefined. */
  readonly closed: Promise<string | undefined>;
  readonly isClosed: boolean;
}

/** Opens `protocol` to the relay at `address` (a multiaddr with /p2p/). */
export async function openRaw(node: Libp2p, address: string, protocol: string): Promise<RawStream> {
  const stream = await node.dialProtocol(multiaddr(address), protocol);
  const answers: Answer[] = [];
  const waiters = new Set<() => void>();
  const buffer = new Uint8ArrayList();
  let isClosed = false;
  let parseError: Error | undefined;

  const closed = new Promise<string | undefined>((resolve) => {
    stream.addEventListener(
      'close',
      (evt) => {
        isClosed = true;
        resolve(evt.error?.message);
        for (const w of waiters) w();
      },
      { once: true },
    );
  });

  stream.addEventListener('message', (evt) => {
    buffer.append(evt.data);
    for (;;) {
      let length = 0;
      let mul = 1;
      let size = 0;
      for (let i = 0; i < buffer.byteLength; i++) {
        const b = buffer.get(i);
        length += (b & 0x7f) * mul;
        mul *= 0x80;
        if ((b & 0x80) === 0) {
          size = i + 1;
          break;
        }
      }
      if (size === 0 || buffer.byteLength < size + length) break;
      const bytes = buffer.subarray(size, size + length);
      buffer.consume(size + length);
      try {
        answers.push(decodeAnswer(bytes));
      } catch (e) {
        parseError = e instanceof Error ? e : new Error(String(e));
      }
    }
    for (const w of waiters) w();
  });

  return {
    stream,
    answers,
    frame(payload) {
      stream.send(new Uint8ArrayList(varint(payload.length), payload));
    },
    raw(bytes) {
      stream.send(bytes);
    },
    answer(id, timeoutMs = 10_000) {
      return new Promise<Answer>((resolve, reject) => {
        const check = (): void => {
          if (parseError !== undefined) {
            done();
            reject(new Error(`the relay sent an undecodable answer: ${parseError.message}`));
            return;
          }
          const a = answers.find((x) => x.id === id);
          if (a !== undefined) {
            done();
            resolve(a);
          } else if (isClosed) {
            done();
            reject(new Error(`the stream closed before an answer to request ${id}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no answer to request ${id} within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    closed,
    get isClosed() {
      return isClosed;
    },
  };
}
