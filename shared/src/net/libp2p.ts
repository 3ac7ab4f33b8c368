/**
 * The libp2p implementation of the network port, for every host: a client node that dials
 * relays over WebSockets (relay-only: no listener, so peers never learn each other's
 * addresses; ARCHITECTURE.md section 9) and opens `RelaySession`s on them. The same code runs in
 * Node (CLI, tests; Node 20 needs `--experimental-websocket` and the `Promise.withResolvers`
 * polyfill) and in the browser worker.
 */
import { type ICryptoInterface, noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import type { Libp2p } from '@libp2p/interface';
import { ping } from '@libp2p/ping';
import { webSockets } from '@libp2p/websockets';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { NetworkError, type RelayConnector, type RelayLink } from '../ports/network.js';
import { RelaySession, type SessionOptions } from './session.js';

export interface ClientNodeOptions extends SessionOptions {
  /** Milliseconds to wait for a relay to answer a dial. */
  readonly dialTimeoutMs?: number;
  /**
   * Noise's cipher implementation, or a function that loads it when the node starts; Node hosts
   * pass `loadNodeNoiseCrypto` (noise-crypto.node.ts).
   */
  readonly noiseCrypto?: ICryptoInterface | (() => Promise<ICryptoInterface>);
}

/** A started libp2p client node and the connector over it. */
export async function libp2pConnector(
  options: ClientNodeOptions = {},
): Promise<RelayConnector & { node: Libp2p }> {
  const crypto =
    typeof options.noiseCrypto === 'function' ? await options.noiseCrypto() : options.noiseCrypto;
  const node = await createLibp2p({
    addresses: { listen: [] },
    transports: [webSockets()],
    connectionEncrypters: [noise(crypto === undefined ? {} : { crypto })],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping() },
    connectionManager: { dialTimeout: options.dialTimeoutMs ?? 10_000 },
    // In browsers libp2p refuses private addresses by default; this node dials only the relays
    // it is configured with (a local relay on 127.0.0.1 among them), never addresses it learns.
    connectionGater: { denyDialMultiaddr: () => false },
  });
  return connectorOver(node, options);
}

/** A connector over an existing node (a host that runs more services on it). */
export function connectorOver(node: Libp2p, options: SessionOptions = {}): RelayConnector & { node: Libp2p } {
  return {
    node,
    async connect(relayAddress: string): Promise<RelayLink> {
      let ma;
      try {
        ma = multiaddr(relayAddress);
      } catch (e) {
        throw new NetworkError('unreachable', `not a multiaddr: ${relayAddress}`, undefined, { cause: e });
      }
      const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value;
      if (peer === undefined) {
        throw new NetworkError('unreachable', `relay address needs /p2p/<peer id>: ${relayAddress}`);
      }
      const session = new RelaySession(
        peer,
        (protocol) => node.dialProtocol(ma, protocol, { runOnLimitedConnection: false }),
        options,
      );
      await session.start();
      return session;
    },
    async stop() {
      await node.stop();
    },
  };
}

/**
 * A connector that starts the libp2p client only when a relay is first dialled: a host that
 * never goes online (an offline command, a first run) never starts a node.
 */
export function lazyLibp2pConnector(options: ClientNodeOptions = {}): RelayConnector {
  let node: Promise<RelayConnector> | undefined;
  return {
    async connect(address: string): Promise<RelayLink> {
      node ??= libp2pConnector(options);
      return (await node).connect(address);
    },
    async stop() {
      if (node !== undefined) await (await node).stop();
    },
  };
}

/** Characters of a relay multiaddr, at most. */
const MAX_RELAY_ADDRESS = 256;

/**
 * Whether `text` is a relay address a client can dial: WebSockets over an IP or DNS name, with
 * the relay's peer id (`/ip4/127.0.0.1/tcp/9090/ws/p2p/<peer id>`). For checking configuration.
 */
export function isRelayAddress(text: string): boolean {
  return (
    text.length <= MAX_RELAY_ADDRESS &&
    /^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d+\/(ws|wss|tls\/ws)\/p2p\/\w+$/.test(text)
  );
}
