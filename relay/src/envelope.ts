/**
 * The one check a relay makes of a mailbox message's contents, the same at every door (a
 * client's append, another relay's replica, backbone gossip): a message whose length is a
 * padding bucket's must be a well-formed sealed op of its own address. Other lengths are MLS
 * handshakes and relay records, opaque here. A relay that took from a client what its peers
 * refuse on the backbone would be penalised by them for passing it on, so any client could cut
 * relays off from one another.
 */
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { SEAL_BUCKETS } from '../../shared/src/protocol/limits.js';
import { decodeSealed } from '../../shared/src/protocol/seal.js';

/** Why `message` cannot be stored under `address`, or undefined when it can. */
export function envelopeProblem(address: Uint8Array, message: Uint8Array): string | undefined {
  if (!SEAL_BUCKETS.includes(message.length)) return undefined;
  try {
    return equalBytes(decodeSealed(message).topic, address) ? undefined : 'sealed op of another topic';
  } catch {
    return 'malformed sealed op';
  }
}
