import { describe, expect, it } from 'vitest';
import type { PostId } from '../protocol/index.js';
import { createCollab, editCollab, loadAutomerge } from './collab.js';
import { World, newId } from './scenario.js';

// Automerge loads on first need (collab.ts); these tests call it directly.
await loadAutomerge();

const paragraphs = Array.from(
  { length: 12 },
  (_, i) =>
    `Paragraph ${i + 1}. The relay keeps sealed ops for members who are offline, and the ` +
    `client catches up from its cursor when it comes back. Moderators can remove posts, and ` +
    `the audit log keeps every moderation op with its signature.`,
);
const body = paragraphs.join('\n\n');

describe('a collaboratively edited post', () => {
  it('whose first change fills the top padding bucket is accepted by every replica', async () => {
    const w = await World.create(['alice', 'bob']);
    const { chat } = await w.setUp();
    // About 30 KB of text that does not compress: the op goes into the 64 KiB bucket.
    let seed = 7;
    const words: string[] = [];
    for (let i = 0; i < 5000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      words.push(seed.toString(36));
    }
    const long = words.join(' ');
    const post = newId<PostId>();
    const created = await w.post('alice', chat, '', {
      post,
      collab: createCollab(long, w.person('alice').device),
    });
    expect(created.outcome.kind).toBe('accepted');
    expect(created.sealed.length).toBe(64 * 1024);
    const [bob] = await w.deliver('bob', created);
    expect(bob?.kind).toBe('accepted');
    expect(w.replica('bob').state.post(post)?.text).toBe(long);
  });

  it('merges two concurrent edits of a long body on every replica', async () => {
    const w = await World.create(['alice', 'bob', 'carol']);
    const { chat } = await w.setUp();
    const post = newId<PostId>();
    const created = await w.post('alice', chat, '', {
      post,
      collab: createCollab(body, w.person('alice').device),
    });
    expect(created.outcome.kind).toBe('accepted');
    await w.deliver('bob', created);
    await w.deliver('carol', created);
    expect(body.length).toBeGreaterThan(2000);

    // Alice inserts a sentence in paragraph 1; Bob, concurrently, fixes a word in the last one.
    const aliceDoc = w.replica('alice').state.collabDoc(post);
    const bobDoc = w.replica('bob').state.collabDoc(post);
    if (aliceDoc === undefined || bobDoc === undefined) throw new Error('no document');
    const aliceText = body.replace('Paragraph 1.', 'Paragraph 1. Read this first.');
    const bobText = body.replace('Paragraph 12. The relay keeps', 'Paragraph 12. The relays keep');
    const a = editCollab(aliceDoc, aliceText, w.person('alice').device);
    const b = editCollab(bobDoc, bobText, w.person('bob').device);
    if (!a.ok || !b.ok) throw new Error('edit failed');
    const ea = await w.write('alice', 'EditPost', { post, text: null, change: a.change });
    const eb = await w.write('bob', 'EditPost', { post, text: null, change: b.change });
    expect([ea.outcome.kind, eb.outcome.kind]).toEqual(['accepted', 'accepted']);

    await w.deliver('alice', eb);
    await w.deliver('bob', ea);
    await w.deliver('carol', eb, ea);
    const merged = body
      .replace('Paragraph 1.', 'Paragraph 1. Read this first.')
      .replace('Paragraph 12. The relay keeps', 'Paragraph 12. The relays keep');
    for (const n of ['alice', 'bob', 'carol']) {
      const view = w.replica(n).state.post(post);
      expect(view?.text).toBe(merged);
      expect(view?.edited).toBe(true);
    }
    const s = w.replica('alice').state.canonicalState();
    expect(w.replica('bob').state.canonicalState()).toEqual(s);
    expect(w.replica('carol').state.canonicalState()).toEqual(s);
  });

  it('keeps a change that is not Automerge, or that builds on edits outside its causal past, but applies neither', async () => {
    const w = await World.create(['alice', 'bob']);
    const { chat } = await w.setUp();
    const post = newId<PostId>();
    const created = await w.post('alice', chat, '', {
      post,
      collab: createCollab(body, w.person('alice').device),
    });
    await w.deliver('bob', created);
    // Accepted on what every member can check (a member who cannot read the content must
    // agree), and ignored by everyone who can.
    const garbage = await w.write('bob', 'EditPost', { post, text: null, change: new Uint8Array([1, 2, 3]) });
    expect(garbage.outcome).toMatchObject({ kind: 'accepted' });
    expect(w.replica('bob').state.post(post)).toMatchObject({ text: body, edited: false });

    // Alice edits; Bob builds on Alice's change without having received her op.
    const doc = w.replica('alice').state.collabDoc(post);
    if (doc === undefined) throw new Error('no document');
    const first = editCollab(doc, `${body}\n\nA new closing line.`, w.person('alice').device);
    if (!first.ok) throw new Error('edit failed');
    const aliceEdit = await w.write('alice', 'EditPost', { post, text: null, change: first.change });
    const second = editCollab(first.doc, `${body}\n\nA new closing line, improved.`, w.person('bob').device);
    if (!second.ok) throw new Error('edit failed');
    const out = await w.write('bob', 'EditPost', { post, text: null, change: second.change });
    expect(out.outcome).toMatchObject({ kind: 'accepted' });
    expect(w.replica('bob').state.post(post)?.text).toBe(body);
    // Once Alice's edit arrives, Bob sees it; his own change, made outside its causal past,
    // still counts for nobody, so both replicas agree.
    await w.deliver('bob', aliceEdit);
    await w.deliver('alice', garbage, out);
    expect(w.replica('bob').state.post(post)?.text).toBe(`${body}\n\nA new closing line.`);
    expect(w.replica('alice').state.canonicalState()).toEqual(w.replica('bob').state.canonicalState());
  });
});
