/**
 * What the two libp2p floors share (gossipsub-floor.ts, streams-floor.ts): the relays' transport
 * stack, WebSockets on 127.0.0.1 with noise and yamux, and the hub's child-process side. Each
 * floor adds its own services.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { webSockets } from '@libp2p/websockets';
import type { Libp2p } from '@libp2p/interface';
import type { Libp2pOptions } from 'libp2p';
import type { ChildServer } from './driver.js';

/** The hub: listens on 127.0.0.1, with connection limits raised so 200 local dials are accepted. */
export function floorHubOptions() {
  return {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      maxConnections: 2000,
      inboundConnectionThreshold: 100_000,
      maxIncomingPendingConnections: 1000,
    },
  } satisfies Libp2pOptions;
}

/**
 * A simulated peer's node. Load generator side: no pings of its own, so a client whose event loop
 * lags under load does not abort its own connection (the hub keeps libp2p's connection monitor).
 */
export function floorClientOptions() {
  return {
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
  } satisfies Libp2pOptions;
}

/** Reads the hub's multiaddr from its child process's ready line. */
export function hubInfo(floor: string): (raw: unknown) => { multiaddr: string } {
  return (raw) => {
    const addr = (raw as { multiaddr?: unknown }).multiaddr;
    if (typeof addr !== 'string') throw new Error(`${floor}: no multiaddr in ready line`);
    return { multiaddr: addr };
  };
}

/** The hub's side of its child process: its multiaddr for the ready line, stop, and its status. */
export function hubServer(node: Libp2p, floor: string, status: () => unknown): ChildServer {
  const addr = node.getMultiaddrs()[0];
  if (addr === undefined) throw new Error(`${floor}: no listen address`);
  return {
    info: { multiaddr: addr.toString() },
    close: async () => {
      await node.stop();
    },
    status,
  };
}
