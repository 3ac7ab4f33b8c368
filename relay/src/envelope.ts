/**
 * The one check a relay makes of a mailbox message's contents, the same at every door (a
 * client's append, another relay's replica, backbone gossip): a message that presents itself as
 * a sealed op (a padding bucket's length and a sealed op's head, what peers take for one) must
 * be a well-formed sealed op of its own address. Anything else (MLS handshakes, relay records,
 * invite messages) is opaque here, whatever its length: a handshake of 1,024 bytes is stored like
 * one of 1,023. A relay that took from a client what its peers refuse on the backbone would be
 * penalised by them for passing it on, so any client could cut relays off from one another.
 */
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { decodeSealed, looksSealed } from '../../shared/src/protocol/seal.js';

/** Why `message` cannot be stored under `address`, or undefined when it can. */
export function envelopeProblem(address: Uint8Array, message: Uint8Array): string | undefined {
  if (!looksSealed(message)) return undefined;
  try {
    return equalBytes(decodeSealed(message).topic, address) ? undefined : 'sealed op of another topic';
  } catch {
    return 'malformed sealed op';
  }
}
