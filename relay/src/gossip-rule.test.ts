/**
 * The rule that decides whether a new message goes out on the gossipsub backbone: only when a
 * backbone subscriber of its topic gets no direct copy (relay/README.md, "Many relays").
 */
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { beforeAll, describe, expect, it } from 'vitest';
import { gossipNeededFor } from './relay.js';

describe('when a relay gossips a new message', () => {
  let a: PeerId;
  let b: PeerId;
  let c: PeerId;
  let stock: PeerId;
  beforeAll(async () => {
    const peer = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'));
    a = await peer();
    b = await peer();
    c = await peer();
    stock = await peer();
  });

  it('does not when every relay following the topic is a replica: the direct copies reach them', () => {
    // Relay A took a client's append; relays A and B are the replicas; B follows the topic.
    expect(gossipNeededFor([b], [a, b], undefined)).toBe(false);
    // Relay B stored A's copy; A follows the topic and sent it.
    expect(gossipNeededFor([a], [a, b], a.toString())).toBe(false);
    expect(gossipNeededFor([], [a, b], undefined)).toBe(false);
  });

  it('does not send back to the relay that sent the copy, replica or not', () => {
    // Relay A took the append but is no replica: it copied to B and C. B follows the topic, knows
    // A and C, and C got its own copy from A.
    expect(gossipNeededFor([a, c], [b, c], a.toString())).toBe(false);
  });

  it('does when a relay beyond the replicas follows the topic', () => {
    expect(gossipNeededFor([b, c], [a, b], undefined)).toBe(true);
    // Relay A keeps the address alone (one replica): B follows it and gets no copy.
    expect(gossipNeededFor([b], [a], undefined)).toBe(true);
  });

  it('does at a replica that knows a follower the sending relay may not', () => {
    // Relay B stored A's copy and knows relay C, which follows the topic: B passes it on.
    expect(gossipNeededFor([a, c], [a, b], a.toString())).toBe(true);
  });

  it('does for a backbone subscriber that is no relay at all', () => {
    expect(gossipNeededFor([b, stock], [a, b], undefined)).toBe(true);
  });
});
