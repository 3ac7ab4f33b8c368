import { describe, expect, it } from 'vitest';
import { verifyAuditBundle } from './audit.js';
import { World } from './scenario.js';
import { testEd25519 } from './testkit.js';

describe('the audit log', () => {
  it('lists moderation ops with author, target and reason, and exports a bundle anyone can verify', async () => {
    const w = await World.create(['alice', 'bob', 'carol']);
    const { chat } = await w.setUp();
    const carol = w.person('carol').user;
    await w.write('alice', 'AssignRole', { user: w.person('bob').user, role: 'moderator' });
    const post = await w.post('carol', chat, 'spam spam spam');
    await w.deliver('alice', post);
    await w.write('alice', 'Timeout', { user: carol, untilMs: w.clock.now() + 60_000, reason: 'spam' });
    await w.write('alice', 'DeletePost', { post: post.post, reason: 'spam' });
    await w.post('alice', chat, 'an ordinary post');

    const log = w.replica('alice').state.auditLog();
    expect(log.map((e) => e.kind)).toEqual([
      'CreateSpace',
      'CreateChannel',
      'CreateChannel',
      'AssignRole',
      'Timeout',
      'DeletePost',
    ]);
    const timeout = log[4];
    expect(timeout?.target).toEqual(carol);
    expect(timeout?.reason).toBe('spam');
    expect(timeout?.author).toEqual(w.person('alice').user);

    const bundle = await w.replica('alice').auditBundle();
    expect(bundle).toHaveLength(log.length);
    const checked = await verifyAuditBundle(testEd25519(), w.space, bundle);
    expect(checked.ok).toBe(true);
    if (checked.ok) expect(checked.ops.map((o) => o.kind)).toEqual(log.map((e) => e.kind));

    // One flipped bit anywhere in an entry is caught and located.
    const tampered = bundle.map((b) => b.slice());
    const entry = tampered[4] as Uint8Array;
    entry[entry.length - 70] = (entry[entry.length - 70] as number) ^ 1;
    const bad = await verifyAuditBundle(testEd25519(), w.space, tampered);
    expect(bad).toMatchObject({ ok: false, index: 4 });
    expect(await verifyAuditBundle(testEd25519(), w.space, [new Uint8Array([1, 2, 3])])).toEqual({
      ok: false,
      index: 0,
      reason: 'malformed',
    });
  });
});
