/**
 * The network port's browser adapter in a real browser: Chromium runs the Conclave peer in a
 * dedicated Worker (where no RTCPeerConnection exists: WebSockets to the relay only) against a
 * real relay process, and exchanges live messages with a Node peer through it.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { toHex } from '../../shared/src/protocol/ids.js';
import { CHROMIUM, launchChromium } from '../../scripts/chromium.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { address, collect, message } from './testing/util.js';

describe('the browser adapter in a Chromium worker', () => {
  const dir = tempDir();
  let relay: SpawnedRelay;
  let node: RelayConnector;
  let server: http.Server;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
    relay = await spawnRelay({ dataDir: dir.dir });
    node = await libp2pConnector();
    const { build } = await import('esbuild');
    const bundle = await build({
      entryPoints: [fileURLToPath(new URL('./testing/browser-peer.ts', import.meta.url))],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      write: false,
      logLevel: 'error',
    });
    const js = bundle.outputFiles[0]?.text ?? '';
    server = http.createServer((req, res) => {
      const isJs = req.url === '/peer.js';
      res.setHeader('content-type', isJs ? 'text/javascript' : 'text/html');
      res.end(isJs ? js : '<!doctype html><title>Conclave browser peer</title>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await node.stop();
    await relay.stop();
    await new Promise((r) => server.close(r));
    dir.cleanup();
  });

  it('sends and receives live through the relay, from a dedicated worker', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();

      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      const addr = address(40);
      const fromBrowser = [message(40, 0, 300), message(40, 1, 300)];
      const fromNode = [message(41, 0, 300), message(41, 1, 300), message(41, 2, 300)];
      const link = await node.connect(relay.multiaddr);
      // The Node peer hears the worker's two messages; the worker hears all five.
      const nodeHears = collect(link, addr, 2);
      const workerResult = page.evaluate(
        (order) =>
          new Promise((resolve) => {
            const w = new Worker('/peer.js', { type: 'module' });
            w.onmessage = (e: MessageEvent) => {
              resolve(e.data);
            };
            w.onerror = (e) => {
              resolve({ error: e.message });
            };
            w.postMessage(order);
          }),
        { relay: relay.multiaddr, address: toHex(addr), send: fromBrowser.map(toHex), expect: 5 },
      );
      const heard = await nodeHears;
      expect(heard.messages.map(toHex)).toEqual(fromBrowser.map(toHex));
      for (const m of fromNode) expect((await link.append(addr, m)).kind).toBe('appended');
      const result = (await workerResult) as { sent?: string[]; received?: string[]; error?: string };
      expect(result.error).toBeUndefined();
      expect(result.sent).toEqual(['sent', 'sent']);
      expect(result.received).toEqual([...fromBrowser, ...fromNode].map(toHex));
    } finally {
      await browser.close();
    }
  });
});
