/**
 * Floor 3: a bare js-libp2p stream fan-out hub — the least work a relay built on this stack can
 * do per delivery. The hub (child process) is libp2p with the relays' transport stack and
 * nothing else: WebSockets on 127.0.0.1, noise, yamux, identify, and one protocol handler. It
 * stores nothing, acknowledges nothing, checks nothing and keeps no backlog: each peer opens one
 * stream, names its topic in a first frame, and every frame it publishes is written as it is to
 * the streams of the topic's other subscribers. Writes of one event-loop turn to one stream
 * leave together (one yamux frame, one noise encryption, one WebSocket message), as the Conclave
 * relay sends them.
 *
 * Each simulated peer is a libp2p client node in the driver process (WebSockets through
 * ws-client.ts, noise, yamux, identify), as in the Conclave and gossipsub runs. So the Conclave
 * relay's figures can be read against what the transport alone costs on the same machine under
 * the same load: whatever a relay adds (durable storage, acknowledgements, the backbone, flow
 * control) comes on top of this.
 *
 * Frames both ways: a 4-byte big-endian length, then the body. From a peer: 0x01 + topic
 * (subscribe) or 0x02 + topic + payload (publish). From the hub: the payload.
 *
 * With `hubs: 2`, the floor of the Conclave relays' layout: two hub processes, each topic's
 * subscribers alternating between them, and one stream between the hubs (the second dials the
 * first and opens it with 0x03). A hub writes each publish of its own peers to its local
 * subscribers and, as 0x02 + topic + payload, to the other hub, which writes it to its own. So
 * half of every message's deliveries cross the link, as they cross the relays' backbone; the
 * relays' storage, acknowledgements, gossipsub and checks are what such a floor leaves out.
 *
 * As a module: `startStreamsFloor()` spawns the hub(s) and returns the LoadTarget.
 * As a script (the child): node … bench/relay/streams-floor.ts [--link <multiaddr>] → prints the
 * hub's multiaddr.
 */
import { fileURLToPath } from 'node:url';
import { identify } from '@libp2p/identify';
import type { Stream } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { Uint8ArrayList } from 'uint8arraylist';
import {
  type ChildServer,
  type LoadPeer,
  type LoadTarget,
  TOPIC_BYTES,
  isMainModule,
  serveChild,
  spawnServer,
} from './driver.js';
import { floorClientOptions, floorHubOptions, hubInfo, hubServer } from './floor-node.js';

const PROTOCOL = '/conclave-bench/fanout/1';
const SUBSCRIBE = 1;
const PUBLISH = 2;
/** Opens the stream between two hubs. */
const LINK = 3;
/** A frame larger than this ends the stream (a bench peer never sends one). */
const MAX_FRAME = 64 * 1024;

function lengthPrefix(n: number): Uint8Array {
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, n);
  return head;
}

/**
 * One side of a framed stream: `send` queues a frame, and what one turn of the event loop
 * queued leaves in one stream write; `onFrame` gets each whole frame received.
 */
function framed(
  stream: Stream,
  onFrame: (frame: Uint8Array) => void,
): { send(...parts: Uint8Array[]): void } {
  const inbox = new Uint8ArrayList();
  stream.addEventListener('message', (evt) => {
    inbox.append(evt.data);
    while (inbox.byteLength >= 4) {
      const length = inbox.getUint32(0);
      if (length > MAX_FRAME) {
        stream.abort(new Error('frame too large'));
        return;
      }
      if (inbox.byteLength < 4 + length) return;
      const frame = inbox.subarray(4, 4 + length);
      inbox.consume(4 + length);
      onFrame(frame);
    }
  });
  let pending: Uint8ArrayList | undefined;
  const flush = (): void => {
    const list = pending;
    pending = undefined;
    if (list !== undefined && stream.writeStatus === 'writable') stream.send(list);
  };
  return {
    send(...parts) {
      if (pending === undefined) {
        pending = new Uint8ArrayList();
        setImmediate(flush);
      }
      let length = 0;
      for (const p of parts) length += p.byteLength;
      pending.append(lengthPrefix(length), ...parts);
    },
  };
}

const topicKey = (topic: Uint8Array): string => Buffer.from(topic).toString('latin1');

interface HubStatus {
  connections: number;
  subscribers: number[];
}

/** The hub (runs in the child process); `link` is the other hub's multiaddr, dialed once. */
async function startHub(link: string | undefined): Promise<ChildServer> {
  const node = await createLibp2p({
    ...floorHubOptions(),
    services: { identify: identify() },
  });
  type Out = ReturnType<typeof framed>;
  const topics = new Map<string, Set<Out>>();
  /** Streams to the other hub (at most one in a bench run). */
  const links = new Set<Out>();
  const forward = (from: Out, topic: string, frame: Uint8Array): void => {
    const payload = frame.subarray(1 + TOPIC_BYTES);
    for (const s of topics.get(topic) ?? []) if (s !== from) s.send(payload);
    if (!links.has(from)) for (const l of links) l.send(frame);
  };
  const serve = (stream: Stream, isLink: boolean): Out => {
    let joined: Set<Out> | undefined;
    const out: Out = framed(stream, (frame) => {
      const kind = frame[0];
      if (kind === LINK) {
        links.add(out);
        return;
      }
      const topic = topicKey(frame.subarray(1, 1 + TOPIC_BYTES));
      if (kind === SUBSCRIBE && joined === undefined) {
        joined = topics.get(topic) ?? new Set();
        topics.set(topic, joined);
        joined.add(out);
      } else if (kind === PUBLISH) forward(out, topic, frame);
    });
    if (isLink) links.add(out);
    stream.addEventListener(
      'close',
      () => {
        joined?.delete(out);
        links.delete(out);
      },
      { once: true },
    );
    return out;
  };
  await node.handle(
    PROTOCOL,
    (stream) => {
      serve(stream, false);
    },
    { maxInboundStreams: 8, runOnLimitedConnection: false },
  );
  if (link !== undefined) {
    const stream = await node.dialProtocol(multiaddr(link), PROTOCOL);
    serve(stream, true).send(Uint8Array.of(LINK));
  }
  return hubServer(node, 'streams hub', (): HubStatus => ({
    connections: node.getConnections().length,
    subscribers: [...topics.values()].map((s) => s.size),
  }));
}

/**
 * Spawns the hub(s) in child processes; each simulated peer is a libp2p client node in this one,
 * connected to hub `rank mod hubs` (so each topic's subscribers alternate between the hubs).
 */
export async function startStreamsFloor(options: { hubs?: 1 | 2 } = {}): Promise<LoadTarget> {
  const entry = fileURLToPath(import.meta.url);
  const first = await spawnServer(entry, [], hubInfo('streams floor'));
  const servers = [first];
  if (options.hubs === 2) {
    servers.push(await spawnServer(entry, ['--link', first.info.multiaddr], hubInfo('streams floor')));
  }
  const hubs = servers.map((s) => multiaddr(s.info.multiaddr));
  return {
    name: servers.length === 1 ? 'libp2p-streams-floor' : 'libp2p-streams-floor-2hubs',
    serverPid: first.pid,
    serverPids: servers.map((s) => s.pid),
    async connect(i: number, rank?: number): Promise<LoadPeer> {
      const node = await createLibp2p({ ...floorClientOptions(), services: { identify: identify() } });
      const hub = hubs[(rank ?? i) % hubs.length];
      if (hub === undefined) throw new Error('streams floor: no hub');
      const stream = await node.dialProtocol(hub, PROTOCOL);
      let handler: ((payload: Uint8Array) => void) | undefined;
      const channel = framed(stream, (frame) => handler?.(frame));
      let closed = false;
      return {
        subscribe(topic, onMessage) {
          handler = onMessage;
          channel.send(Uint8Array.of(SUBSCRIBE), topic);
          return Promise.resolve();
        },
        publish(topic, payload) {
          channel.send(Uint8Array.of(PUBLISH), topic, payload);
          return Promise.resolve();
        },
        async close() {
          if (closed) return;
          closed = true;
          await node.stop();
        },
      };
    },
    async describe() {
      const lines: string[] = [];
      for (const [k, server] of servers.entries()) {
        const raw = (await server.status()) as HubStatus | null;
        lines.push(
          raw === null
            ? `hub ${k}: status unavailable`
            : `hub ${k}: ${raw.connections} connections; subscribers per topic: ${raw.subscribers.join(' ')}`,
        );
      }
      return lines.join('; ');
    },
    async close() {
      for (const server of servers.reverse()) await server.stop();
    },
  };
}

if (isMainModule(import.meta.url)) {
  const at = process.argv.indexOf('--link');
  const link = at === -1 ? undefined : process.argv[at + 1];
  serveChild(() => startHub(link));
}
