/**
 * Floor 2: a bare js-libp2p gossipsub hub. The hub (child process) is libp2p with a WebSockets
 * listener on 127.0.0.1, noise, yamux, identify and gossipsub; it stores nothing and runs no
 * application code. It joins every topic a peer subscribes to (so it is in the topic's mesh and
 * forwards), which is all a hub-and-spoke gossipsub relay does.
 *
 * Each simulated peer is a libp2p client node in the driver process (webSockets, noise, yamux,
 * identify, gossipsub) that dials the hub, subscribes its topic and publishes through gossipsub.
 * Clients do not dial each other: every message goes publisher → hub → subscribers.
 *
 * Client nodes run without libp2p's connection monitor (floor-node.ts); the hub keeps it.
 *
 * Gossipsub settings, hub and clients alike: StrictNoSign, content-addressed message id
 * (SHA-256 of the data), D=6 / Dlo=4 / Dhi=12, floodPublish off, allowPublishToZeroTopicPeers,
 * emitSelf off (so the publisher gets no copy), IP-colocation penalty off (every peer is on
 * 127.0.0.1). Connection limits on the hub are raised so 200 local dials are accepted.
 *
 * Note what these settings mean in a hub-and-spoke layout: the hub keeps at most Dhi=12 peers in
 * a topic's mesh (it refuses further inbound GRAFTs with a PRUNE), so of a topic's 20 subscribers
 * about 12 get each message pushed at once and the others only learn of it from IHAVE gossip at
 * the hub's next heartbeat (1 s) and fetch it with IWANT — seconds, not milliseconds, and not
 * every heartbeat reaches every non-mesh peer (Dlazy=6). That is the floor measured here.
 *
 * Per delivery the stack's defaults also send extra frames: the hub sends IDONTWANT (gossipsub
 * 1.2, data ≥ 512 B) to its mesh peers besides the message, and yamux 8 answers each data frame
 * with a WINDOW_UPDATE, so a delivery is about four noise-encrypted WebSocket frames.
 *
 * `peersPerNode` > 1 runs fewer client nodes, each hosting that many simulated peers: peer i
 * lives on node ⌊i / peersPerNode⌋, and since the driver puts peer i on topic i mod T, a node's
 * peers are on distinct topics as long as peersPerNode ≤ T. So every topic still has 20
 * subscriber nodes and the hub still sends a copy per subscriber; only the connection count drops.
 *
 * As a module: `startGossipsubFloor()` spawns the hub and returns its LoadTarget.
 * As a script (the child): node … bench/relay/gossipsub-floor.ts → prints the hub's multiaddr.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { type GossipsubOpts, StrictNoSign, gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import {
  type ChildServer,
  type LoadPeer,
  type LoadTarget,
  isMainModule,
  serveChild,
  spawnServer,
} from './driver.js';
import { floorClientOptions, floorHubOptions, hubInfo, hubServer } from './floor-node.js';

/** The gossipsub options of the floor, hub and clients alike. */
export const FLOOR_GOSSIPSUB_OPTIONS: Readonly<Partial<GossipsubOpts>> = {
  globalSignaturePolicy: StrictNoSign,
  msgIdFn: (msg) => new Uint8Array(createHash('sha256').update(msg.data).digest()),
  D: 6,
  Dlo: 4,
  Dhi: 12,
  floodPublish: false,
  allowPublishToZeroTopicPeers: true,
  emitSelf: false,
  scoreParams: { IPColocationFactorWeight: 0 },
};

const topicString = (topic: Uint8Array): string => Buffer.from(topic).toString('hex');

/** Mesh degree of the floor (the defaults) or of a diagnostic variant. */
export interface MeshDegree {
  D: number;
  Dlo: number;
  Dhi: number;
}

function gossipsubOptions(mesh: MeshDegree | undefined): Partial<GossipsubOpts> {
  return mesh === undefined ? { ...FLOOR_GOSSIPSUB_OPTIONS } : { ...FLOOR_GOSSIPSUB_OPTIONS, ...mesh };
}

/** Parses "D,Dlo,Dhi". */
function parseMesh(text: string): MeshDegree {
  const [D, Dlo, Dhi] = text.split(',').map(Number);
  if (D === undefined || Dlo === undefined || Dhi === undefined || ![D, Dlo, Dhi].every(Number.isInteger)) {
    throw new Error(`bad mesh degree "${text}" (want D,Dlo,Dhi)`);
  }
  return { D, Dlo, Dhi };
}

/** Mesh size of a topic: `getMeshPeers` exists on the implementation, not on the exported interface. */
function meshSize(pubsub: object, topic: string): number | null {
  const fn: unknown = Reflect.get(pubsub, 'getMeshPeers');
  if (typeof fn !== 'function') return null;
  const peers: unknown = Reflect.apply(fn, pubsub, [topic]);
  return Array.isArray(peers) ? peers.length : null;
}

export interface HubStatus {
  connections: number;
  /** Per topic the hub joined: subscribers it knows of, and how many of them are in its mesh. */
  topics: { subscribers: number; mesh: number | null }[];
}

/** The hub (runs in the child process). */
async function startHub(mesh: MeshDegree | undefined): Promise<ChildServer> {
  const node = await createLibp2p({
    ...floorHubOptions(),
    services: { identify: identify(), pubsub: gossipsub(gossipsubOptions(mesh)) },
  });
  const pubsub = node.services.pubsub;
  // Join every topic a peer subscribes to, so the hub is in that topic's mesh and forwards.
  pubsub.addEventListener('subscription-change', (evt) => {
    for (const sub of evt.detail.subscriptions) {
      if (sub.subscribe && !pubsub.getTopics().includes(sub.topic)) pubsub.subscribe(sub.topic);
    }
  });
  return hubServer(node, 'gossipsub hub', (): HubStatus => ({
    connections: node.getConnections().length,
    topics: pubsub
      .getTopics()
      .sort()
      .map((topic) => ({
        subscribers: pubsub.getSubscribers(topic).length,
        mesh: meshSize(pubsub, topic),
      })),
  }));
}

type ClientNode = Awaited<ReturnType<typeof createClientNode>>;

async function createClientNode(hub: string, mesh: MeshDegree | undefined) {
  const node = await createLibp2p({
    ...floorClientOptions(),
    services: { identify: identify(), pubsub: gossipsub(gossipsubOptions(mesh)) },
  });
  await node.dial(multiaddr(hub));
  return node;
}

export interface GossipsubFloorOptions {
  /** Simulated peers per client libp2p node (default 1: one node per peer). */
  peersPerNode?: number;
  /**
   * Diagnostic only: another mesh degree for hub and clients (the floor is D=6, Dlo=4, Dhi=12).
   * With Dhi ≥ subscribers per topic the hub pushes every message to every subscriber.
   */
  mesh?: MeshDegree;
}

/** Spawns the gossipsub hub in a child process; client nodes live in this process. */
export async function startGossipsubFloor(options: GossipsubFloorOptions = {}): Promise<LoadTarget> {
  const perNode = Math.max(1, options.peersPerNode ?? 1);
  const mesh = options.mesh;
  const args = mesh === undefined ? [] : ['--mesh', `${mesh.D},${mesh.Dlo},${mesh.Dhi}`];
  const server = await spawnServer(fileURLToPath(import.meta.url), args, hubInfo('gossipsub floor'));
  interface NodeEntry {
    node: Promise<ClientNode>;
    /** topic → handlers of the simulated peers on this node subscribed to it */
    handlers: Map<string, ((payload: Uint8Array) => void)[]>;
    open: number;
  }
  const nodes = new Map<number, NodeEntry>();
  const nodeFor = (index: number): NodeEntry => {
    let entry = nodes.get(index);
    if (entry === undefined) {
      const handlers = new Map<string, ((payload: Uint8Array) => void)[]>();
      const node = createClientNode(server.info.multiaddr, mesh).then((n) => {
        n.services.pubsub.addEventListener('message', (evt) => {
          const list = handlers.get(evt.detail.topic);
          if (list !== undefined) for (const handler of list) handler(evt.detail.data);
        });
        return n;
      });
      entry = { node, handlers, open: 0 };
      nodes.set(index, entry);
    }
    return entry;
  };
  return {
    name:
      'gossipsub-floor' +
      (perNode === 1 ? '' : `(${perNode} peers/node)`) +
      (mesh === undefined ? '' : `(D=${mesh.D},Dlo=${mesh.Dlo},Dhi=${mesh.Dhi})`),
    serverPid: server.pid,
    async connect(peerIndex): Promise<LoadPeer> {
      const entry = nodeFor(Math.floor(peerIndex / perNode));
      entry.open++;
      const node = await entry.node;
      const pubsub = node.services.pubsub;
      let closed = false;
      return {
        subscribe(topic, onMessage) {
          const key = topicString(topic);
          const list = entry.handlers.get(key) ?? [];
          list.push(onMessage);
          entry.handlers.set(key, list);
          if (!pubsub.getTopics().includes(key)) pubsub.subscribe(key);
          return Promise.resolve();
        },
        async publish(topic, payload) {
          await pubsub.publish(topicString(topic), payload);
        },
        async close() {
          if (closed) return;
          closed = true;
          if (--entry.open === 0) await node.stop();
        },
      };
    },
    async describe() {
      const raw = (await server.status()) as HubStatus | null;
      if (raw === null) return 'hub status unavailable';
      const mesh = raw.topics.map((t) => `${t.mesh ?? '?'}/${t.subscribers}`).join(' ');
      return `hub: ${raw.connections} connections; per topic, subscribers in the hub's mesh: ${mesh}`;
    },
    close: () => server.stop(),
  };
}

if (isMainModule(import.meta.url)) {
  const i = process.argv.indexOf('--mesh');
  const meshArg = i < 0 ? undefined : process.argv[i + 1];
  serveChild(() => startHub(meshArg === undefined ? undefined : parseMesh(meshArg)));
}
