/**
 * A loopback TCP proxy in front of a relay, to cut a browser's network the way a phone losing
 * signal or suspending an app does: every open connection dies at once and new ones fail until
 * `restore`. It also counts the bytes the relay sent through it (what the browser downloaded,
 * WebSocket framing and libp2p's encryption and multiplexing included), for bench:resume.
 */
import { type Server, type Socket, connect, createServer } from 'node:net';

export interface NetCut {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** Bytes sent from the relay to clients through the proxy so far. */
  readonly bytesDown: number;
  /** Kills every connection through the proxy and refuses new ones. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function netCut(targetPort: number): Promise<NetCut> {
  const sockets = new Set<Socket>();
  let down = 0;
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    upstream.on('data', (chunk: Buffer) => {
      down += chunk.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  const cut = (): void => {
    open = false;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port: address.port,
    get bytesDown() {
      return down;
    },
    cut,
    restore() {
      open = true;
    },
    async close() {
      cut();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}

/** `multiaddr` (a relay's `/ip4/127.0.0.1/tcp/<port>/ws/p2p/<id>`) through the proxy at `port`. */
export function viaProxy(multiaddr: string, port: number): string {
  return multiaddr.replace(/\/tcp\/\d+\//, `/tcp/${port}/`);
}
