/**
 * A Conclave peer in a browser worker, for browser.test.ts: bundled by esbuild and started as
 * a dedicated Worker in Chromium. It runs the same network code as every host (the libp2p
 * client over WebSockets, the relay pool, the outbox) and talks to the page by messages:
 *   → {relay, address, send: [hex…], expect: n}
 *   ← {sent: [...'sent'|'queued'], received: [hex…]} once `expect` messages arrived
 */
import { libp2pConnector } from '../../../shared/src/net/libp2p.js';
import { RelayPool } from '../../../shared/src/net/pool.js';
import { memoryStorage } from '../../../shared/src/ports/storage.memory.js';
import { fromHex, toHex } from '../../../shared/src/protocol/ids.js';

interface Order {
  readonly relay: string;
  readonly address: string;
  readonly send: readonly string[];
  readonly expect: number;
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<Order>) => void) | null;
  postMessage(m: unknown): void;
};

scope.onmessage = (e) => {
  void run(e.data).then(
    (r) => {
      scope.postMessage(r);
    },
    (err: unknown) => {
      scope.postMessage({ error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    },
  );
};

async function run(order: Order): Promise<unknown> {
  const connector = await libp2pConnector();
  const pool = new RelayPool({ connector, relays: [order.relay], storage: memoryStorage() });
  await pool.start();
  const address = fromHex(order.address) ?? new Uint8Array(32);
  const received: string[] = [];
  const done = new Promise<void>((resolve) => {
    pool.follow(address, {
      onMessage(message) {
        received.push(toHex(message));
        if (received.length >= order.expect) resolve();
      },
    });
  });
  const sent: string[] = [];
  for (const m of order.send) sent.push(await pool.send(address, fromHex(m) ?? new Uint8Array(0)));
  await done;
  await pool.close();
  await connector.stop();
  return { sent, received, userAgent: navigator.userAgent };
}
