/**
 * The Conclave relays under the driver's load: two relay processes on one backbone, the peers
 * split across them (each topic's subscribers alternate between the two, all on 127.0.0.1),
 * each peer a libp2p client node with a `RelaySession`. A driver payload travels as a 1 KiB
 * sealed op: the envelope's ciphertext carries the payload's first bytes (its header), so the
 * relays check and store exactly what a peer's op would be.
 */
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import { loadNodeNoiseCrypto } from '../../shared/src/net/noise-crypto.node.js';
import type { RelayConnector, RelayLink } from '../../shared/src/ports/network.js';
import type { TopicId } from '../../shared/src/protocol/ids.js';
import { NONCE_BYTES, decodeSealed, encodeSealed } from '../../shared/src/protocol/seal.js';
import { type SpawnedRelay, spawnRelay, tempDir } from '../../relay/src/testing/spawn.js';
import { HEADER_BYTES, type LoadPeer, type LoadTarget } from './driver.js';

const SEALED_BYTES = 1024;

/** The ciphertext length that makes an epoch-1 envelope exactly `SEALED_BYTES` long. */
function ciphertextLength(topic: Uint8Array): number {
  for (let n = SEALED_BYTES; n > 0; n--) {
    const bytes = encodeSealed({
      topic: topic as TopicId,
      epoch: { epoch: 1, commitHash: new Uint8Array(32) },
      nonce: new Uint8Array(NONCE_BYTES),
      ciphertext: new Uint8Array(n),
    });
    if (bytes.length === SEALED_BYTES) return n;
  }
  throw new Error('no ciphertext length fits the bucket');
}

/** Sealed ops made by this process: a distinct nonce for each. */
let sealedCount = 0;

/**
 * Wraps a driver payload as a sealed op of `topic` (1 KiB, a padding bucket). The nonce is a
 * counter, not random: the op's bytes only need to be distinct (the payload header already makes
 * them so), and a random nonce per publish took 1.3–2.5 % of the driver's busy time at
 * 1,000 ops/s (CPU profiles), work a real peer does on its own machine.
 */
export function sealPayload(topic: Uint8Array, payload: Uint8Array, ctLength: number): Uint8Array {
  const ciphertext = new Uint8Array(ctLength);
  ciphertext.set(payload.subarray(0, Math.min(ctLength, payload.length)));
  const nonce = new Uint8Array(NONCE_BYTES);
  new DataView(nonce.buffer).setFloat64(0, ++sealedCount, true);
  return encodeSealed({
    topic: topic as TopicId,
    epoch: { epoch: 1, commitHash: new Uint8Array(32) },
    nonce,
    ciphertext,
  });
}

/**
 * The payload's header from a delivered sealed op (all the driver reads of a payload), as a view:
 * copying it into a fresh 1 KiB payload cost the driver 9 % of its CPU at 2,000 ops/s, work the
 * floors' clients do not do.
 */
function unsealPayload(sealed: Uint8Array): Uint8Array {
  return decodeSealed(sealed).ciphertext.subarray(0, HEADER_BYTES);
}

export interface ConclaveTarget extends LoadTarget {
  readonly relays: readonly SpawnedRelay[];
  /** Summed VmRSS of the relay processes, bytes. */
  relayRss(): Promise<number>;
}

export async function startConclaveRelays(
  options: { relays?: number; args?: readonly string[] } = {},
): Promise<ConclaveTarget> {
  const dirs = Array.from({ length: options.relays ?? 2 }, () => tempDir('conclave-bench-relay-'));
  const relays: SpawnedRelay[] = [];
  for (const d of dirs) {
    relays.push(
      await spawnRelay({
        dataDir: d.dir,
        bootstrap: relays.map((r) => r.multiaddr),
        args: options.args ?? [],
        // BENCH_RELAY_PROFILE=DIR writes each relay's CPU profile there when it stops.
        // BENCH_RELAY_NODE_ARGS adds Node flags to the relays (experiments: heap sizes, tracing).
        nodeArgs: [
          ...(process.env.BENCH_RELAY_PROFILE === undefined
            ? []
            : ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_RELAY_PROFILE}`]),
          ...(process.env.BENCH_RELAY_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
        ],
        env: { CONCLAVE_RELAY_LOG_LEVEL: 'warn' },
      }),
    );
  }
  const ctLengths = new Map<string, number>();
  const ctLength = (topic: Uint8Array): number => {
    const k = topic.join(',');
    let n = ctLengths.get(k);
    if (n === undefined) ctLengths.set(k, (n = ciphertextLength(topic)));
    return n;
  };
  const first = relays[0];
  if (first === undefined) throw new Error('no relay');
  return {
    name: 'conclave',
    relays,
    serverPid: first.process.pid ?? 0,
    serverPids: relays.map((r) => r.process.pid ?? 0),
    async relayRss() {
      let sum = 0;
      for (const r of relays) sum += await r.rss();
      return sum;
    },
    async describe() {
      const rss = await Promise.all(relays.map((r) => r.rss()));
      return `relay RSS ${rss.map((b) => `${Math.round(b / 2 ** 20)} MiB`).join(', ')}`;
    },
    async connect(i: number, rank?: number): Promise<LoadPeer> {
      const connector: RelayConnector = await libp2pConnector({ noiseCrypto: loadNodeNoiseCrypto });
      // Each topic's subscribers alternate between the relays, so half of every op's deliveries
      // go through the backbone to the other relay. (By peer index alone, with 2 relays and 10
      // topics, a topic's subscribers would all share one relay.)
      const relay = relays[(rank ?? i) % relays.length] ?? first;
      const link: RelayLink = await connector.connect(relay.multiaddr);
      return {
        async subscribe(topic, onMessage) {
          const { lastSeq } = await link.read(topic, 0, 1);
          await new Promise<void>((resolve, reject) => {
            link.subscribe(topic, lastSeq, {
              onMessage(_seq, message) {
                onMessage(unsealPayload(message));
              },
              onLive() {
                resolve();
              },
              onEnd(e) {
                reject(e);
              },
            });
          });
        },
        async publish(topic, payload) {
          const r = await link.append(topic, sealPayload(topic, payload, ctLength(topic)));
          if (r.kind !== 'appended') throw new Error('append refused');
        },
        async close() {
          await link.close();
          await connector.stop();
        },
      };
    },
    async close() {
      for (const r of relays) await r.stop();
      for (const d of dirs) d.cleanup();
    },
  };
}
