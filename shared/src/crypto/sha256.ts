import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import type { SpaceId, TopicId } from '../protocol/ids.js';
import { concatBytes } from '../protocol/ids.js';

const TOPIC_DOMAIN = new TextEncoder().encode('conclave/topic');

/** SHA-256 of `data`: 32 bytes. Synchronous (pure JS), so usable inside pure transitions. */
export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

/**
 * The relay-visible name of a Space (ARCHITECTURE.md section 2):
 * SHA-256(utf8("conclave/topic") ‖ space), 32 bytes.
 */
export function topicId(space: SpaceId): TopicId {
  return sha256(concatBytes(TOPIC_DOMAIN, space)) as TopicId;
}

const HANDSHAKE_DOMAIN = new TextEncoder().encode('conclave/handshakes');

/**
 * Where a Space's MLS commits and proposals go: SHA-256(utf8("conclave/handshakes") ‖ space),
 * apart from its ops, so a member catching up on membership reads only handshakes (and the
 * relays' first-commit-per-epoch rule sees only them).
 */
export function handshakeTopicId(space: SpaceId): TopicId {
  return sha256(concatBytes(HANDSHAKE_DOMAIN, space)) as TopicId;
}
