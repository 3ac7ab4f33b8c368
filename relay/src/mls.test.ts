/**
 * The MLS membership flows over real relays: the `Mailbox` port is a `RelayPool` on libp2p.
 * Alice's device uses relay A, Bob's relay B, the relays share the backbone: the invite's
 * join request, the Welcome and the Space's commits cross between them, and the first commit
 * per epoch is sequenced by the relay (a second one for the same epoch is refused).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, testSpaceId } from '../../shared/src/core/testkit.js';
import { topicId } from '../../shared/src/crypto/sha256.js';
import { admitWaiting, follow, pollJoin, requestJoin } from '../../shared/src/mls/flows.js';
import { formatInviteLink, parseInviteLink } from '../../shared/src/mls/invite.js';
import { MlsPeer } from '../../shared/src/mls/mls.testkit.js';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import { RelayPool } from '../../shared/src/net/pool.js';
import { webRng } from '../../shared/src/ports/env.js';
import type { RelayConnector } from '../../shared/src/ports/network.js';
import { memoryStorage } from '../../shared/src/ports/storage.memory.js';
import type { InviteId } from '../../shared/src/protocol/ids.js';
import { type SpawnedRelay, spawnRelay, tempDir } from './testing/spawn.js';
import { until } from './testing/util.js';

const SPACE = testSpaceId(61);

describe('MLS membership over two relays', () => {
  const dirs = [tempDir(), tempDir()];
  const relays: SpawnedRelay[] = [];
  const connectors: RelayConnector[] = [];
  const pools: RelayPool[] = [];
  beforeAll(async () => {
    const a = await spawnRelay({ dataDir: dirs[0]?.dir });
    relays.push(a, await spawnRelay({ dataDir: dirs[1]?.dir, bootstrap: [a.multiaddr] }));
  });
  afterAll(async () => {
    for (const p of pools) await p.close();
    await Promise.all(connectors.map((c) => c.stop()));
    for (const r of relays) await r.stop();
    for (const d of dirs) d.cleanup();
  });

  async function poolOn(relay: SpawnedRelay): Promise<RelayPool> {
    const connector = await libp2pConnector();
    connectors.push(connector);
    const pool = new RelayPool({ connector, relays: [relay.multiaddr], storage: memoryStorage() });
    await pool.start();
    pools.push(pool);
    return pool;
  }

  it('Bob on relay B joins by Alice’s invite through relay A, and both reach the same epoch and key', async () => {
    const [ra, rb] = relays as [SpawnedRelay, SpawnedRelay];
    const clock = new ManualClock(Date.now());
    const alice = await MlsPeer.create('alice', SPACE, clock);
    const bob = await MlsPeer.create('bob', SPACE, clock);
    const viaA = await poolOn(ra);
    const viaB = await poolOn(rb);
    await alice.device.createSpace(SPACE);
    await alice.write('CreateSpace', { name: 'Over relays', description: '' });
    const secret = webRng.randomBytes(32);
    const expiresAtMs = clock.now() + 86_400_000;
    await alice.write('CreateInvite', {
      invite: webRng.randomBytes(16) as InviteId,
      secret,
      expiresAtMs,
      maxUses: 0,
      role: 'member',
    });
    const parsed = parseInviteLink(
      formatInviteLink({ space: SPACE, secret, relays: [ra.multiaddr], expiresAtMs }),
    );
    if (!parsed.ok) throw new Error(parsed.message);

    expect(await requestJoin(bob.ctx(viaB), parsed.link)).toEqual({ status: 'pending' });
    // The request reaches relay A by replication or the backbone; Alice admits once she sees it.
    let admitted = false;
    await until(async () => {
      const reports = await admitWaiting(alice.ctx(viaA));
      admitted ||= reports.some((r) => r.kind === 'admitted');
      return admitted;
    }, 'Alice to see and admit the join request');
    await until(
      async () => (await pollJoin(bob.ctx(viaB), SPACE)).status === 'joined',
      'Bob to get the Welcome',
    );
    expect(bob.group.epoch.epoch).toBe(alice.group.epoch.epoch);
    expect(bob.group.epochKey(bob.group.epoch)).toEqual(alice.group.epochKey(alice.group.epoch));

    // A commit for the current epoch is sequenced by the relay: the first is acknowledged, a
    // second one for the same epoch is refused, over the wire as in the memory mailbox.
    const epoch = alice.group.epoch.epoch + 100;
    const first = await viaA.append(topicId(SPACE), new Uint8Array([1, 2, 3]), { commitEpoch: epoch });
    const second = await viaA.append(topicId(SPACE), new Uint8Array([4, 5, 6]), { commitEpoch: epoch });
    expect(first.kind).toBe('appended');
    expect(second).toEqual({ kind: 'refused', reason: 'epoch-taken' });

    // Bob follows the Space's mailbox through relay B and stays in step with Alice.
    await follow(bob.ctx(viaB));
    expect(bob.group.epoch.epoch).toBe(alice.group.epoch.epoch);
  });
});
