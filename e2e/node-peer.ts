/**
 * A second person as a Node peer (the peer core the CLI runs, in memory), for tests and
 * benchmarks that need someone else to post a lot quickly: it joins by an invite link made in
 * the app, straight to the relay (not through a proxy the test cuts).
 */
import { nodeAead } from '../shared/src/crypto/aead.node.js';
import { nodeEd25519 } from '../shared/src/crypto/ed25519.node.js';
import { nodeSha256 } from '../shared/src/crypto/sha256.node.js';
import { parseInviteLink } from '../shared/src/mls/invite.js';
import { libp2pConnector } from '../shared/src/net/libp2p.js';
import { systemClock, webRng } from '../shared/src/ports/env.js';
import { memoryStorage } from '../shared/src/ports/storage.memory.js';
import { createSecrets } from '../shared/src/peer/identity.js';
import { Peer } from '../shared/src/peer/peer.js';
import type { Storage } from '../shared/src/ports/storage.js';
import type { ChannelId, SpaceId } from '../shared/src/protocol/index.js';

export interface NodePerson {
  readonly peer: Peer;
  /** Its ops, as stored (sealed bytes included). */
  readonly storage: Storage;
  readonly space: SpaceId;
  /** The Space's first channel. */
  readonly channel: ChannelId;
  /** Texts of the channel's posts, in display order. */
  texts(): string[];
  /** Resolves once the outbox is empty (every post is at the relay). */
  sent(): Promise<void>;
  close(): Promise<void>;
}

/** Joins by `link` through `relay` (a multiaddr) as `name`; waits until admitted. */
export async function joinAsNodePerson(link: string, relay: string, name: string): Promise<NodePerson> {
  const parsed = parseInviteLink(link);
  if (!parsed.ok) throw new Error(parsed.message);
  const secrets = await createSecrets({ ed25519: nodeEd25519(), clock: systemClock, rng: webRng }, name);
  const connector = await libp2pConnector();
  const storage = memoryStorage();
  const peer = await Peer.open({
    secrets,
    storage,
    connector,
    relays: [relay],
    ed25519: nodeEd25519(),
    aead: nodeAead(),
    clock: systemClock,
    rng: webRng,
    sha256: nodeSha256,
  });
  await peer.goOnline();
  const joined = await peer.join({ ...parsed.link, relays: [relay] }, 60_000);
  if (joined.status !== 'joined') throw new Error(`${name} was not admitted`);
  const space = joined.spaceId;
  await peer.catchUp(space);
  const channel = peer.state(space).channels()[0]?.channelId as ChannelId | undefined;
  if (channel === undefined) throw new Error('the Space has no channel');
  return {
    peer,
    storage,
    space,
    channel,
    texts: () =>
      peer
        .state(space)
        .postsIn(channel, null)
        .map((p) => p.text),
    async sent() {
      while (peer.network.outbox > 0) await new Promise((r) => setTimeout(r, 50));
    },
    async close() {
      await peer.close();
      await connector.stop();
    },
  };
}
