/**
 * Automerge (about 1.1 MB of wasm) is loaded only when a collaborative body is met: a replica
 * that accepts and reopens plain ops never loads it; the pipeline loads it for the first op
 * with a collaborative body, before the reducer needs it, and so does reopening a store that
 * holds one. The receiving side runs on a fresh copy of the modules (`vi.resetModules`), so
 * the writer's loading does not count for it.
 */
import { describe, expect, it, vi } from 'vitest';
import { memoryStorage } from '../ports/storage.memory.js';
import type { PostId } from '../protocol/index.js';
import { createCollab, loadAutomerge } from './collab.js';
import { World, newId } from './scenario.js';

describe('Automerge loads on first need', () => {
  it('not for plain ops; for the first collaborative body received, and when reopening a store with one', async () => {
    const w = await World.create(['alice', 'bob']);
    const { chat, ops: setUp } = await w.setUp();
    const hello = await w.post('alice', chat, 'plain text');
    await loadAutomerge();
    const post = newId<PostId>();
    const notes = await w.post('alice', chat, '', {
      post,
      collab: createCollab('shared notes', w.person('alice').device),
    });
    expect(notes.outcome.kind).toBe('accepted');

    // Bob's device, with modules of its own: nothing loaded yet.
    vi.resetModules();
    const collab = await import('./collab.js');
    const testkit = await import('./testkit.js');
    expect(collab.automergeLoaded()).toBe(false);
    const storage = memoryStorage();
    const bob = await testkit.testReplica(w.space, w.group, { clock: w.clock, storage });
    for (const op of [...setUp, hello]) expect((await bob.accept(op.sealed)).kind).toBe('accepted');
    expect(bob.state.postsIn(chat, null).map((p) => p.text)).toEqual(['plain text']);
    const reopened = await testkit.testReplica(w.space, w.group, { clock: w.clock, storage });
    expect(reopened.state.size).toBe(bob.state.size);
    expect(collab.automergeLoaded()).toBe(false);

    expect((await bob.accept(notes.sealed)).kind).toBe('accepted');
    expect(collab.automergeLoaded()).toBe(true);
    expect(bob.state.post(post)?.text).toBe('shared notes');

    // A device restarting on a store that holds a collaborative body loads it while opening.
    vi.resetModules();
    const again = await import('./collab.js');
    const kit = await import('./testkit.js');
    expect(again.automergeLoaded()).toBe(false);
    const restarted = await kit.testReplica(w.space, w.group, { clock: w.clock, storage });
    expect(again.automergeLoaded()).toBe(true);
    expect(restarted.state.post(post)?.text).toBe('shared notes');
  });
});
