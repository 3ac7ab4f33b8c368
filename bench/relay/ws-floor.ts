/**
 * Floor 1: a plain `ws` WebSocket fan-out server. No crypto, no persistence, no framing beyond one
 * type byte: the least a relay could do per message, so the ceiling any real relay stays under.
 *
 * Frames (binary WebSocket messages):
 *   client → server  [0x01][topic 32]             subscribe (server answers with the same frame)
 *   client → server  [0x02][topic 32][payload]    publish
 *   server → client  [0x02][topic 32][payload]    delivery, the publish frame forwarded as is
 * The server forwards each publish to every subscriber of the topic except its sender.
 *
 * Write batching (default on): the server corks a subscriber's TCP socket at its first send in an
 * event-loop turn and uncorks every corked socket on `setImmediate`, so the frames a subscriber
 * gets in one turn leave in one writev instead of one syscall each (on this machine a syscall per
 * 1 KiB frame, ~20 µs, is most of the server's time). Frames and their order are unchanged.
 * `--no-cork` (child argument; `startWsFloor({ cork: false })`) gives the naive one-write-per-frame
 * server.
 *
 * As a module: `startWsFloor()` spawns the server in a child process and returns its LoadTarget.
 * As a script (the child): node … bench/relay/ws-floor.ts  → serves on 127.0.0.1, random port.
 */
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import {
  type LoadPeer,
  type LoadTarget,
  TOPIC_BYTES,
  isMainModule,
  serveChild,
  spawnServer,
} from './driver.js';

const SUBSCRIBE = 0x01;
const PUBLISH = 0x02;

function topicKey(frame: Buffer): string {
  return frame.toString('latin1', 1, 1 + TOPIC_BYTES);
}

/** The TCP socket under a `ws` WebSocket (a private field of `ws`), if there is one. */
function rawSocket(socket: WebSocket): Socket | null {
  const raw: unknown = Reflect.get(socket, '_socket');
  return raw instanceof Socket ? raw : null;
}

/** The server itself (runs in the child process). */
async function startServer(
  cork: boolean,
): Promise<{ info: { port: number; cork: boolean }; close(): Promise<void> }> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 1 << 20,
  });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const subscribers = new Map<string, Set<WebSocket>>();
  const sockets = new WeakMap<WebSocket, Socket | null>();
  const corked = new Set<Socket>();
  let flushScheduled = false;
  const flush = (): void => {
    flushScheduled = false;
    for (const raw of corked) raw.uncork();
    corked.clear();
  };
  const send = (socket: WebSocket, data: Buffer): void => {
    if (cork) {
      const raw = sockets.get(socket);
      if (raw != null && !corked.has(raw)) {
        raw.cork();
        corked.add(raw);
        if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(flush);
        }
      }
    }
    socket.send(data);
  };
  wss.on('connection', (socket) => {
    sockets.set(socket, rawSocket(socket));
    const mine = new Set<string>();
    socket.on('message', (data, isBinary) => {
      if (!isBinary || !Buffer.isBuffer(data) || data.length < 1 + TOPIC_BYTES) return;
      const key = topicKey(data);
      if (data[0] === PUBLISH) {
        const set = subscribers.get(key);
        if (set === undefined) return;
        for (const other of set) {
          if (other !== socket && other.readyState === WebSocket.OPEN) send(other, data);
        }
      } else if (data[0] === SUBSCRIBE) {
        let set = subscribers.get(key);
        if (set === undefined) {
          set = new Set();
          subscribers.set(key, set);
        }
        set.add(socket);
        mine.add(key);
        socket.send(data.subarray(0, 1 + TOPIC_BYTES));
      }
    });
    socket.on('close', () => {
      for (const key of mine) subscribers.get(key)?.delete(socket);
    });
    socket.on('error', () => {
      socket.terminate();
    });
  });
  const address = wss.address();
  if (address === null || typeof address === 'string') throw new Error('ws floor: no TCP address');
  return {
    info: { port: address.port, cork },
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => {
          resolve();
        });
      }),
  };
}

/** One simulated peer: a `ws` client connection. */
async function connectPeer(url: string): Promise<LoadPeer> {
  // Load generator only: an all-zero mask lets `ws` skip XOR-ing each payload on the driver side
  // (RFC 6455 wants unpredictable masks against proxy cache poisoning, moot on loopback); the
  // server still unmasks every frame as usual.
  const socket = new WebSocket(url, { perMessageDeflate: false, generateMask: (mask) => mask.fill(0) });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => {
      resolve();
    });
    socket.once('error', reject);
  });
  const handlers = new Map<string, (payload: Uint8Array) => void>();
  const pendingSubs = new Map<string, () => void>();
  socket.on('message', (data, isBinary) => {
    if (!isBinary || !Buffer.isBuffer(data) || data.length < 1 + TOPIC_BYTES) return;
    const key = topicKey(data);
    if (data[0] === PUBLISH) {
      handlers.get(key)?.(data.subarray(1 + TOPIC_BYTES));
    } else if (data[0] === SUBSCRIBE) {
      pendingSubs.get(key)?.();
      pendingSubs.delete(key);
    }
  });
  socket.on('error', () => undefined);
  return {
    subscribe(topic, onMessage) {
      const frame = Buffer.allocUnsafe(1 + TOPIC_BYTES);
      frame[0] = SUBSCRIBE;
      frame.set(topic, 1);
      const key = topicKey(frame);
      handlers.set(key, onMessage);
      return new Promise<void>((resolve, reject) => {
        pendingSubs.set(key, resolve);
        socket.send(frame, (err) => {
          if (err) reject(err);
        });
      });
    },
    publish(topic, payload) {
      const frame = Buffer.allocUnsafe(1 + TOPIC_BYTES + payload.byteLength);
      frame[0] = PUBLISH;
      frame.set(topic, 1);
      frame.set(payload, 1 + TOPIC_BYTES);
      return new Promise<void>((resolve, reject) => {
        socket.send(frame, (err) => {
          if (!err) resolve();
          else reject(err);
        });
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        if (socket.readyState === WebSocket.CLOSED) {
          resolve();
          return;
        }
        socket.once('close', () => {
          resolve();
        });
        socket.terminate();
      });
    },
  };
}

export interface WsFloorOptions {
  /** Batch a subscriber's frames of one event-loop turn into one write (default true). */
  cork?: boolean;
}

/** Spawns the ws fan-out server in a child process; peers connect from this process. */
export async function startWsFloor(options: WsFloorOptions = {}): Promise<LoadTarget> {
  const cork = options.cork ?? true;
  const server = await spawnServer(fileURLToPath(import.meta.url), cork ? [] : ['--no-cork'], (raw) => {
    const port = (raw as { port?: unknown }).port;
    if (typeof port !== 'number') throw new Error('ws floor: no port in ready line');
    return { port };
  });
  const url = `ws://127.0.0.1:${server.info.port}`;
  return {
    name: cork ? 'ws-floor' : 'ws-floor(no cork)',
    serverPid: server.pid,
    connect: () => connectPeer(url),
    close: () => server.stop(),
  };
}

if (isMainModule(import.meta.url)) serveChild(() => startServer(!process.argv.includes('--no-cork')));
