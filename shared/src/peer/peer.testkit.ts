/**
 * People and their Peers over in-memory relays and storage, for the Peer's tests. Every Peer
 * opened here is closed by {@link closeAll} (call it in `afterEach`).
 */
import { testEd25519 } from '../core/testkit.js';
import { MemoryConnector, type MemoryRelay } from '../net/memory.js';
import { webCryptoAead } from '../ports/aead.js';
import { systemClock, webRng } from '../ports/env.js';
import type { Storage } from '../ports/storage.js';
import { memoryStorage } from '../ports/storage.memory.js';
import { type IdentitySecrets, createSecrets } from './identity.js';
import { Peer } from './peer.js';

export interface Person {
  readonly name: string;
  readonly secrets: IdentitySecrets;
  readonly storage: Storage;
  readonly connector: MemoryConnector;
}

const open: Peer[] = [];

/** A new identity with its own (empty) storage, reaching `relays`. */
export async function person(name: string, relays: readonly MemoryRelay[]): Promise<Person> {
  const secrets = await createSecrets({ ed25519: testEd25519(), clock: systemClock, rng: webRng }, name);
  return { name, secrets, storage: memoryStorage(), connector: new MemoryConnector([...relays]) };
}

/** Opens `p`'s Peer on its storage (again, after a close: a restart). */
export async function peerOf(p: Person, relays: readonly string[]): Promise<Peer> {
  const peer = await Peer.open({
    secrets: p.secrets,
    storage: p.storage,
    connector: p.connector,
    relays: [...relays],
    ed25519: testEd25519(),
    aead: webCryptoAead(),
    clock: systemClock,
    rng: webRng,
  });
  open.push(peer);
  return peer;
}

export async function closeAll(): Promise<void> {
  for (const p of open.splice(0)) await p.close();
}
