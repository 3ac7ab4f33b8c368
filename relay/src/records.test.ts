/**
 * The kad-dht records of Conclave relays: signed relay announcements under
 * `/conclave/<peer id>`. Every relay checks a record before it stores or serves it, and picks
 * the newest of several.
 */
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { encode } from '../../shared/src/protocol/cbor.js';
import { announcementBody, checkGossip, selectAnnouncement, validateAnnouncement } from './relay.js';
import { fakeSealed, sealedMessage } from './testing/util.js';

const enc = new TextEncoder();

async function announcement(timeMs: number, addrs = ['/ip4/127.0.0.1/tcp/9090/ws']) {
  const key = await generateKeyPair('Ed25519');
  const peer = peerIdFromPrivateKey(key).toString();
  const sig = await key.sign(announcementBody(peer, addrs, timeMs));
  return { key, peer, record: encode([peer, addrs, timeMs, sig]), dhtKey: enc.encode(`/conclave/${peer}`) };
}

describe('relay announcements in the DHT', () => {
  it('accepts a record signed by the relay it names', async () => {
    const a = await announcement(1_000);
    await expect(validateAnnouncement(a.dhtKey, a.record)).resolves.toBeUndefined();
  });

  it('refuses a record under another relay’s key, a changed address list, and garbage', async () => {
    const a = await announcement(1_000);
    const b = await announcement(1_000);
    await expect(validateAnnouncement(b.dhtKey, a.record)).rejects.toThrow(/key/);
    const sig = await a.key.sign(announcementBody(a.peer, ['/ip4/127.0.0.1/tcp/1/ws'], 1_000));
    const forged = encode([a.peer, ['/ip4/10.0.0.1/tcp/1/ws'], 1_000, sig]);
    await expect(validateAnnouncement(a.dhtKey, forged)).rejects.toThrow(/signature/);
    await expect(validateAnnouncement(a.dhtKey, new Uint8Array([0x83, 1, 2]))).rejects.toThrow();
    await expect(validateAnnouncement(a.dhtKey, encode([a.peer, [], 1]))).rejects.toThrow(/4 fields/);
  });

  it('selects the newest of several records, and never an undecodable one', async () => {
    const old = await announcement(1_000);
    const fresh = await announcement(2_000);
    expect(selectAnnouncement(old.dhtKey, [old.record, fresh.record])).toBe(1);
    expect(selectAnnouncement(old.dhtKey, [fresh.record, old.record, new Uint8Array([0xff])])).toBe(0);
  });
});

describe('backbone gossip validation', () => {
  it('takes [address, message, epoch] on the address’s own topic and nothing else', () => {
    const address = new Uint8Array(32).fill(7);
    const topic = `/conclave/backbone/1/${'07'.repeat(32)}`;
    const ok = checkGossip(topic, encode([address, new Uint8Array(300), null]));
    expect(ok.ok).toBe(true);
    expect(checkGossip(topic.replace(/07$/, '08'), encode([address, new Uint8Array(300), null])).ok).toBe(
      false,
    );
    // A message that presents itself as a sealed op must be one of this topic; one of a
    // padding bucket's length that does not (an MLS handshake may be 1,024 bytes) is opaque.
    expect(checkGossip(topic, encode([address, fakeSealed(address, 1024), null])).ok).toBe(false);
    expect(checkGossip(topic, encode([address, sealedMessage(new Uint8Array(32).fill(8), 1), null])).ok).toBe(
      false,
    );
    expect(checkGossip(topic, encode([address, sealedMessage(address, 1), null])).ok).toBe(true);
    expect(checkGossip(topic, encode([address, new Uint8Array(1024), null])).ok).toBe(true);
    expect(checkGossip(topic, encode([address, new Uint8Array(300), -1])).ok).toBe(false);
    expect(checkGossip(topic, new Uint8Array([1, 2, 3])).ok).toBe(false);
  });
});
