/**
 * Bad input at the relay's boundaries (ARCHITECTURE.md sections 8 to 10): oversized and
 * malformed frames, requests of the wrong protocol, unknown protocols, over-limit messages and
 * chunks, blobs that do not match their hash, quotas, rate limits and invalid backbone gossip.
 * Each is refused with its status, the offender is penalised where the design says so, and
 * the relay keeps serving a well-behaved client afterwards.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { gossipsub, StrictNoSign } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { Libp2p } from '@libp2p/interface';
import { webSockets } from '@libp2p/websockets';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../shared/src/crypto/sha256.js';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import type { NetworkError, RelayConnector, RelayLink } from '../../shared/src/ports/network.js';
import { type CborValue, encode } from '../../shared/src/protocol/cbor.js';
import { equalBytes, toHex } from '../../shared/src/protocol/ids.js';
import {
  MAX_BLOB_CHUNK_BYTES,
  MAX_FRAME_BYTES,
  MAX_MAILBOX_MESSAGE_BYTES,
  MAX_PAGE_MESSAGES,
} from '../../shared/src/protocol/limits.js';
import {
  BLOB_PROTOCOL,
  Kind,
  MAILBOX_PROTOCOL,
  type Request,
  Status,
  SYNC_PROTOCOL,
  encodeRequest,
} from '../../shared/src/protocol/wire.js';
import { MALFORMED_FRAMES_ALLOWED } from './limiter.js';
import { BACKBONE_PREFIX } from './relay.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { type RawStream, openRaw, rawNode, varint } from './testing/raw.js';
import { address, collect, fakeSealed, message, metric, sealedMessage, until } from './testing/util.js';

/** Requests per second per peer on the relay under test (bursts up to twice that). */
const RATE = 50;
/** Blob chunk size in the quota tests: two fit under the per-peer quota, three do not. */
const CHUNK = 250_000;

const refusals = (reason: string): string => `conclave_relay_refusals_total{reason="${reason}"}`;

function chunk(seed: number, size = CHUNK): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + seed * 7) & 0xff);
}

describe('a relay under hostile input', () => {
  const dir = tempDir();
  let relay: SpawnedRelay;
  const nodes: Libp2p[] = [];
  const connectors: RelayConnector[] = [];
  let fresh = 0;

  beforeAll(async () => {
    relay = await spawnRelay({
      dataDir: dir.dir,
      args: ['--rate-requests', String(RATE), '--blob-quota', '600KiB', '--blob-store', '1MiB'],
    });
  });
  afterAll(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    await Promise.all(nodes.map(async (n) => n.stop()));
    await relay.stop();
    dir.cleanup();
  });

  async function node(): Promise<Libp2p> {
    const n = await rawNode();
    nodes.push(n);
    return n;
  }

  async function client(): Promise<RelayLink> {
    const c = await libp2pConnector({ requestTimeoutMs: 10_000 });
    connectors.push(c);
    return c.connect(relay.multiaddr);
  }

  function mailbox(): Uint8Array {
    fresh++;
    return address(fresh, 0xa7);
  }

  /** A well-behaved peer (new identity) appends to a new mailbox and receives it by subscription. */
  async function assertServesOthers(): Promise<void> {
    const link = await client();
    const addr = mailbox();
    const m = message(0xbeef, fresh, 300);
    const arriving = collect(link, addr, 1, { timeoutMs: 10_000 });
    const r = await link.append(addr, m);
    expect(r).toEqual({ kind: 'appended', seq: 1 });
    const got = await arriving;
    expect(got.seqs).toEqual([1]);
    expect(got.messages).toEqual([m]);
    await link.close();
  }

  const relayPeer = (): string => relay.peerId;
  const connectionsTo = (n: Libp2p): number =>
    n.getConnections().filter((c) => c.remotePeer.toString() === relayPeer()).length;

  async function request(s: RawStream, r: Request): Promise<ReturnType<RawStream['answer']>> {
    s.frame(encodeRequest(r));
    return s.answer(r.id);
  }

  it('resets a stream whose length prefix is over MAX_FRAME_BYTES before its body arrives', async () => {
    const n = await node();
    const s = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    // Only the prefix is sent: a relay that waited to buffer the announced frame would never reset.
    s.raw(varint(MAX_FRAME_BYTES + 1));
    const reason = await Promise.race([
      s.closed,
      new Promise<string>((resolve) =>
        setTimeout(() => {
          resolve('still open after 5 s');
        }, 5_000),
      ),
    ]);
    expect(reason).toBeDefined();
    expect(reason).not.toBe('still open after 5 s');
    expect(s.stream.status).toBe('reset');

    // A length prefix that never ends (over 5 bytes of continuation) is cut off the same way.
    const s2 = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    s2.raw(new Uint8Array(8).fill(0xff));
    expect(await s2.closed).toBeDefined();
    expect(s2.stream.status).toBe('reset');

    // Only the streams were reset: the same connection still carries a new session.
    expect(connectionsTo(n)).toBe(1);
    const s3 = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    expect(await request(s3, { kind: 'read', id: 1, address: mailbox(), afterSeq: 0, limit: 10 })).toEqual({
      kind: 'page',
      id: 1,
      messages: [],
      lastSeq: 0,
    });
    await assertServesOthers();
  });

  it('refuses malformed frames (by id when readable), then cuts off and shuts out a peer that keeps sending them', async () => {
    const n = await node();
    const s = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    const addr = mailbox();
    const m = message(1, 1, 100);
    const before = await metric(relay, refusals('malformed'));

    // Frames whose request id is readable: each answered `refused malformed` under that id.
    const withId: CborValue[] = [
      [Kind.append, 1, 'not bytes', m, null],
      [Kind.append, 2, addr.subarray(0, 31), m, null],
      [Kind.append, 3, addr, m, 'epoch'],
      [Kind.append, 4, addr, m],
      [Kind.subscribe, 5, addr, -1, 10],
      [Kind.read, 6, addr, 0, MAX_PAGE_MESSAGES + 1],
      [99, 7],
      [Kind.append, 8, addr, m, null, 'extra'],
    ];
    for (const f of withId) s.frame(encode(f));
    for (let id = 1; id <= withId.length; id++) {
      expect(await s.answer(id)).toEqual({ kind: 'refused', id, status: Status.malformed });
    }
    // Frames with no readable id: nothing to answer, but each counts.
    const withoutId: Uint8Array[] = [
      Uint8Array.of(0xff), // a break code outside any item
      Uint8Array.of(0x85, 0x01), // an array of 5 with one item
      Uint8Array.of(0x18, 0x01), // a non-shortest integer
      encode(new Map([['kind', 1]])), // a map, not an array
      encode([Kind.append]), // no id
      encode(['append', 9]), // a kind that is not a number
      encode([Kind.read, -3, addr, 0, 1]), // a negative id
      new Uint8Array(0), // an empty frame
    ];
    for (const f of withoutId) s.frame(f);
    const sent = withId.length + withoutId.length;
    expect(sent).toBe(MALFORMED_FRAMES_ALLOWED);
    await until(
      async () => (await metric(relay, refusals('malformed'))) >= before + sent,
      'the malformed frames to be counted',
      5_000,
    );
    expect(await metric(relay, refusals('malformed'))).toBe(before + sent);
    // Only the requests with an id were answered; none of the bad appends was stored: the next
    // good one is the first message of the mailbox, on the same stream, still served.
    expect(s.answers.map((a) => a.id)).toEqual(withId.map((_, i) => i + 1));
    expect(
      await request(s, { kind: 'append', id: 100, address: addr, message: m, commitEpoch: undefined }),
    ).toEqual({ kind: 'ack', id: 100, seq: 1 });

    // One malformed frame more than allowed: the relay closes the peer's connection…
    s.frame(encode([Kind.append, 101, 'still not bytes', m, null]));
    await s.closed;
    await until(() => connectionsTo(n) === 0, 'the relay to close the connection', 5_000);
    // …and refuses a new one from the same peer id, while other peers are served.
    await expect(openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL)).rejects.toThrow();
    expect(connectionsTo(n)).toBe(0);
    await assertServesOthers();
    // Still shut out a while later (the penalty lasts PENALTY_MS, not one attempt).
    await new Promise((r) => setTimeout(r, 1_000));
    await expect(openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL)).rejects.toThrow();
  });

  it('refuses a request of another protocol on a stream and runs none of it', async () => {
    const n = await node();
    const mail = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    const blob = await openRaw(n, relay.multiaddr, BLOB_PROTOCOL);
    const sync = await openRaw(n, relay.multiaddr, SYNC_PROTOCOL);
    const addr = mailbox();
    const c = chunk(1, 1000);
    const hash = sha256(c);
    const m = message(2, 1, 100);
    const refused = (id: number): unknown => ({ kind: 'refused', id, status: Status.malformed });

    expect(await request(mail, { kind: 'blobPut', id: 1, hash, chunk: c })).toEqual(refused(1));
    expect(await request(mail, { kind: 'fetch', id: 2, opIds: [sha256(m)] })).toEqual(refused(2));
    expect(
      await request(blob, { kind: 'append', id: 3, address: addr, message: m, commitEpoch: undefined }),
    ).toEqual(refused(3));
    expect(await request(sync, { kind: 'blobGet', id: 4, hash })).toEqual(refused(4));
    expect(await request(sync, { kind: 'subscribe', id: 5, address: addr, afterSeq: 0, credit: 8 })).toEqual(
      refused(5),
    );

    // Nothing of them ran: the blob is not stored, the mailbox is empty.
    expect(await request(blob, { kind: 'blobGet', id: 6, hash })).toEqual({
      kind: 'refused',
      id: 6,
      status: Status.notFound,
    });
    expect(await request(mail, { kind: 'read', id: 7, address: addr, afterSeq: 0, limit: 10 })).toEqual({
      kind: 'page',
      id: 7,
      messages: [],
      lastSeq: 0,
    });
    await assertServesOthers();
  });

  it('refuses a subscription under an id already in use as duplicateId and keeps the first', async () => {
    const n = await node();
    const s = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    const addr = mailbox();
    s.frame(encodeRequest({ kind: 'subscribe', id: 1, address: addr, afterSeq: 0, credit: 8 }));
    expect(await s.answer(1)).toEqual({ kind: 'live', id: 1, lastSeq: 0 });
    s.frame(encodeRequest({ kind: 'subscribe', id: 1, address: mailbox(), afterSeq: 0, credit: 8 }));
    await until(() => s.answers.length === 2, 'an answer to the second subscribe', 5_000);
    expect(s.answers[1]).toEqual({ kind: 'refused', id: 1, status: Status.duplicateId });
    // The first subscription is still live: an append to its mailbox is pushed under id 1.
    const m = message(9, 1, 100);
    expect(
      await request(s, { kind: 'append', id: 2, address: addr, message: m, commitEpoch: undefined }),
    ).toEqual({ kind: 'ack', id: 2, seq: 1 });
    await until(() => s.answers.length === 4, 'the push', 5_000);
    expect(s.answers.slice(2)).toContainEqual({ kind: 'message', id: 1, seq: 1, message: m });
    await assertServesOthers();
  });

  it('fails negotiation of an unknown protocol and keeps the connection usable', async () => {
    const n = await node();
    const s = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    const connection = n.getConnections()[0];
    await expect(n.dialProtocol(multiaddr(relay.multiaddr), '/conclave/nope/1')).rejects.toThrow();
    await expect(n.dialProtocol(multiaddr(relay.multiaddr), '/not-conclave/1.0.0')).rejects.toThrow();
    expect(n.getConnections()).toEqual([connection]);
    expect(connection?.status).toBe('open');
    // The open stream and a new one both work on it.
    const addr = mailbox();
    const m = message(3, 1, 100);
    expect(
      await request(s, { kind: 'append', id: 1, address: addr, message: m, commitEpoch: undefined }),
    ).toEqual({ kind: 'ack', id: 1, seq: 1 });
    const s2 = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    expect(await request(s2, { kind: 'read', id: 1, address: addr, afterSeq: 0, limit: 10 })).toEqual({
      kind: 'page',
      id: 1,
      messages: [{ seq: 1, message: m }],
      lastSeq: 1,
    });
    await assertServesOthers();
  });

  it('takes a message of exactly MAX_MAILBOX_MESSAGE_BYTES and refuses a chunk over MAX_BLOB_CHUNK_BYTES as tooLarge', async () => {
    const n = await node();
    const mail = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    const blob = await openRaw(n, relay.multiaddr, BLOB_PROTOCOL);
    const addr = mailbox();
    const biggest = message(4, 1, MAX_MAILBOX_MESSAGE_BYTES);
    expect(
      await request(mail, {
        kind: 'append',
        id: 1,
        address: addr,
        message: biggest,
        commitEpoch: undefined,
      }),
    ).toEqual({ kind: 'ack', id: 1, seq: 1 });

    const before = await metric(relay, refusals('tooLarge'));
    const over = chunk(2, MAX_BLOB_CHUNK_BYTES + 1);
    const hash = sha256(over);
    expect(await request(blob, { kind: 'blobPut', id: 2, hash, chunk: over })).toEqual({
      kind: 'refused',
      id: 2,
      status: Status.tooLarge,
    });
    expect(await request(blob, { kind: 'blobGet', id: 3, hash })).toEqual({
      kind: 'refused',
      id: 3,
      status: Status.notFound,
    });
    expect(await metric(relay, refusals('tooLarge'))).toBe(before + 1);
    await assertServesOthers();
  });

  it('refuses a mailbox message over MAX_MAILBOX_MESSAGE_BYTES as tooLarge and stores nothing', async () => {
    const n = await node();
    const mail = await openRaw(n, relay.multiaddr, MAILBOX_PROTOCOL);
    const addr = mailbox();
    // The frame is under MAX_FRAME_BYTES: it is the message limit that must refuse it.
    const over = message(5, 1, MAX_MAILBOX_MESSAGE_BYTES + 1);
    const frame = encodeRequest({
      kind: 'append',
      id: 1,
      address: addr,
      message: over,
      commitEpoch: undefined,
    });
    expect(frame.length).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    mail.frame(frame);
    const answer = await mail.answer(1, 5_000).catch((e: unknown) => (e as Error).message);
    expect(await request(mail, { kind: 'read', id: 2, address: addr, afterSeq: 0, limit: 10 })).toEqual({
      kind: 'page',
      id: 2,
      messages: [],
      lastSeq: 0,
    });
    expect(answer).toEqual({ kind: 'refused', id: 1, status: Status.tooLarge });
    await assertServesOthers();
  });

  it('refuses at append what the backbone refuses: a message that presents itself as a sealed op and is none of its mailbox', async () => {
    const link = await client();
    const addr = mailbox();
    // 1,024 bytes with a sealed op's head and no sealed op, and a sealed op of another mailbox:
    // both refused, nothing stored.
    const refused = { name: 'NetworkError', code: 'refused', status: 'malformed' };
    await expect(link.append(addr, fakeSealed(addr, 1024))).rejects.toMatchObject(refused);
    await expect(link.append(addr, sealedMessage(mailbox(), 2))).rejects.toMatchObject(refused);
    // A sealed op of this mailbox, and opaque messages (one of them a padding bucket's length,
    // as an MLS handshake may be) are stored.
    const sealed = sealedMessage(addr, 3);
    const opaque = [message(0x5e, 4, 1000), message(0x5e, 5, 1024)];
    expect(await link.append(addr, sealed)).toEqual({ kind: 'appended', seq: 1 });
    expect(await link.append(addr, opaque[0] as Uint8Array)).toEqual({ kind: 'appended', seq: 2 });
    expect(await link.append(addr, opaque[1] as Uint8Array)).toEqual({ kind: 'appended', seq: 3 });
    const got = await collect(link, addr, 3, { timeoutMs: 10_000 });
    expect(got.messages.map((m) => toHex(m))).toEqual([sealed, ...opaque].map((m) => toHex(m)));
    await link.close();
  });

  it('refuses a blob chunk that does not hash to its address and stores it under no hash', async () => {
    const link = await client();
    const c = chunk(3, 5000);
    const wrong = sha256(chunk(4, 5000));
    const before = await metric(relay, refusals('hashMismatch'));
    const err = await link.putBlob(wrong, c).then(
      () => undefined,
      (e: unknown) => e as NetworkError,
    );
    expect(err?.code).toBe('refused');
    expect(err?.status).toBe('hashMismatch');
    expect(await metric(relay, refusals('hashMismatch'))).toBe(before + 1);
    expect(await link.getBlob(wrong)).toBeUndefined();
    expect(await link.getBlob(sha256(c))).toBeUndefined();
    expect(await metric(relay, 'conclave_relay_stored_blob_bytes')).toBe(0);
    await assertServesOthers();
  });

  it('refuses blob puts past the per-peer quota and past the relay’s total as quota', async () => {
    const [a, b, c] = [await client(), await client(), await client()];
    const quota = async (link: RelayLink, bytes: Uint8Array): Promise<string | undefined> =>
      link.putBlob(sha256(bytes), bytes).then(
        () => 'ok',
        (e: unknown) => (e as NetworkError).status,
      );
    const before = await metric(relay, refusals('quota'));
    const chunks = [1, 2, 3, 4, 5, 6].map((i) => chunk(10 + i));
    const [c1, c2, c3, c4, c5, c6] = chunks as [
      Uint8Array,
      Uint8Array,
      Uint8Array,
      Uint8Array,
      Uint8Array,
      Uint8Array,
    ];
    // 600 KiB per peer: two chunks of 250,000 bytes fit, a third does not.
    expect(await quota(a, c1)).toBe('ok');
    expect(await quota(a, c2)).toBe('ok');
    expect(await quota(a, c3)).toBe('quota');
    // A chunk already stored costs nothing: putting it again is fine.
    expect(await quota(a, c1)).toBe('ok');
    // Another peer has its own quota; 1 MiB in all fits four chunks…
    expect(await quota(b, c4)).toBe('ok');
    expect(await quota(b, c5)).toBe('ok');
    // …so a third peer, with nothing stored yet, is refused by the relay's total.
    expect(await quota(c, c6)).toBe('quota');
    expect(await metric(relay, refusals('quota'))).toBe(before + 2);
    expect(await metric(relay, 'conclave_relay_stored_blob_bytes')).toBe(4 * CHUNK);
    // What was stored is served; what was refused is not.
    // (Compared with equalBytes: a deep equality over 250,000 elements takes a second.)
    expect(equalBytes((await c.getBlob(sha256(c1))) ?? new Uint8Array(0), c1)).toBe(true);
    expect(equalBytes((await c.getBlob(sha256(c5))) ?? new Uint8Array(0), c5)).toBe(true);
    expect(await c.getBlob(sha256(c3))).toBeUndefined();
    expect(await c.getBlob(sha256(c6))).toBeUndefined();
    await assertServesOthers();
  });

  it('refuses a burst over the peer’s rate as rateLimited, serves others meanwhile, and serves it again later', async () => {
    const link = await client();
    const addr = mailbox();
    const before = await metric(relay, refusals('rateLimited'));
    const burst = 6 * RATE;
    const outcomes = await Promise.all(
      Array.from({ length: burst }, (_, i) =>
        link.append(addr, message(6, i, 100)).then(
          (r) => (r.kind === 'appended' ? 'ok' : r.reason),
          (e: unknown) => (e as NetworkError).status ?? (e as NetworkError).code,
        ),
      ),
    );
    const ok = outcomes.filter((o) => o === 'ok').length;
    const limited = outcomes.filter((o) => o === 'rateLimited').length;
    expect(ok + limited).toBe(burst);
    // A burst of twice the rate is allowed, plus what refills while the burst arrives.
    expect(ok).toBeGreaterThanOrEqual(2 * RATE);
    expect(ok).toBeLessThan(4 * RATE);
    expect(limited).toBeGreaterThan(0);
    expect(await metric(relay, refusals('rateLimited'))).toBe(before + limited);
    // Another peer is not limited by this one.
    await assertServesOthers();
    // Refused appends were not stored: the acknowledged ones are the whole mailbox.
    await new Promise((r) => setTimeout(r, 1_000));
    const page = await link.read(addr, 0);
    expect(page.lastSeq).toBe(ok);
    // After a pause the peer is served again, every request of a burst within its rate.
    for (let i = 0; i < RATE / 2; i++) {
      expect(await link.append(addr, message(7, i, 100))).toEqual({ kind: 'appended', seq: ok + i + 1 });
    }
  });

  it('rejects backbone gossip that is not a valid envelope of its topic, delivers a valid one, and cuts off a peer that keeps sending invalid gossip', async () => {
    const addr = mailbox();
    const topic = BACKBONE_PREFIX + toHex(addr);
    // A subscriber makes the relay follow the address on the backbone.
    const subscriber = await client();
    const delivered: { seq: number; message: Uint8Array }[] = [];
    const sub = subscriber.subscribe(addr, 0, {
      onMessage(seq, m) {
        delivered.push({ seq, message: m });
      },
    });

    const gossiper = await createLibp2p({
      addresses: { listen: [] },
      transports: [webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        pubsub: gossipsub({
          globalSignaturePolicy: StrictNoSign,
          allowPublishToZeroTopicPeers: true,
          scoreParams: { IPColocationFactorWeight: 0 },
        }),
      },
    });
    nodes.push(gossiper);
    const pubsub = gossiper.services.pubsub;
    pubsub.subscribe(topic);
    await gossiper.dial(multiaddr(relay.multiaddr));
    await until(
      () => pubsub.getSubscribers(topic).some((p) => p.toString() === relay.peerId),
      'the relay to follow the address on the backbone',
      10_000,
    );

    const rejected = 'conclave_relay_gossip_messages_total{outcome="rejected"}';
    const before = await metric(relay, rejected);
    const other = address(0xee, 0x01);
    const garbage: Uint8Array[] = [
      Uint8Array.of(0xde, 0xad, 0xbe, 0xef), // not CBOR
      encode([other, message(8, 1, 300), null]), // an envelope of another address
      encode([addr, message(8, 2, 300), -1]), // a negative epoch
      encode([addr, new Uint8Array(0), null]), // an empty message
      encode([addr, fakeSealed(addr, 256), null]), // a sealed op's head and length, but no sealed op
      encode([addr, message(8, 4, 300)]), // two fields
    ];
    for (const g of garbage) await pubsub.publish(topic, g);
    await until(
      async () => (await metric(relay, rejected)) >= before + garbage.length,
      'the relay to reject the invalid gossip',
      10_000,
    );
    expect(await metric(relay, rejected)).toBe(before + garbage.length);

    // The same path with a valid envelope delivers it: validation, not the path, stopped the rest.
    const valid = message(8, 5, 300);
    await pubsub.publish(topic, encode([addr, valid, null]));
    await until(() => delivered.length > 0, 'the valid gossip to be delivered', 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(delivered).toEqual([{ seq: 1, message: valid }]);
    expect((await subscriber.read(addr, 0)).lastSeq).toBe(1);
    expect((await subscriber.read(other, 0)).lastSeq).toBe(0);
    sub.close();
    await assertServesOthers();

    // A peer that keeps publishing invalid gossip is cut off and shut out like one that sends
    // malformed frames.
    expect(connectionsTo(gossiper)).toBe(1);
    for (let i = garbage.length; i <= MALFORMED_FRAMES_ALLOWED; i++) {
      await pubsub.publish(topic, encode([other, message(8, 100 + i, 300), null]));
    }
    await until(() => connectionsTo(gossiper) === 0, 'the relay to cut the gossiper off', 10_000);
    expect(await metric(relay, rejected)).toBe(before + MALFORMED_FRAMES_ALLOWED + 1);
    // (A new connection gets as far as the handshake, then the relay drops it: no stream opens.)
    await expect(openRaw(gossiper, relay.multiaddr, MAILBOX_PROTOCOL)).rejects.toThrow();
    await assertServesOthers();
  });
});
