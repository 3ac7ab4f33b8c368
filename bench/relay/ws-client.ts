/**
 * The simulated peers' WebSocket client. A real client runs in a browser, whose WebSocket is
 * native code; in Node, `--experimental-websocket` gives libp2p undici's WebSocket, written in
 * JavaScript, which cost the driver about a sixth of its CPU per delivery (frame parsing, a copy
 * of every message into a fresh ArrayBuffer, a MessageEvent each). Importing this module makes
 * every libp2p node of the bench process dial with the `ws` package's client instead, the same
 * library the relays' listener uses. The peers stay libp2p clients with Noise and yamux over
 * WebSockets; only the WebSocket implementation under them changes.
 * `BENCH_RELAY_UNDICI=1` keeps undici's, for comparison.
 */
import { WebSocket as WsWebSocket } from 'ws';

/** `ws`'s client with the browser API's defaults: no permessage-deflate offer. */
class BrowserLikeWebSocket extends WsWebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols, { perMessageDeflate: false });
  }
}

if (process.env.BENCH_RELAY_UNDICI !== '1') {
  (globalThis as { WebSocket?: unknown }).WebSocket = BrowserLikeWebSocket;
}

export const wsClient = process.env.BENCH_RELAY_UNDICI === '1' ? 'undici' : 'ws';
