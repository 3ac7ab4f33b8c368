/**
 * The libp2p settings the two libp2p floors share (gossipsub-floor.ts, streams-floor.ts): the
 * relays' transport stack, WebSockets on 127.0.0.1 with noise and yamux. Each floor adds its own
 * services.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { webSockets } from '@libp2p/websockets';
import type { Libp2pOptions } from 'libp2p';

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
