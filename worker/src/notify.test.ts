import { describe, expect, it } from 'vitest';
import { type ArrivedPost, type Notice, mentions, notable, toShow } from './notify.js';

const me = { userId: 'zMe', names: ['Alice'] };

function post(over: Partial<ArrivedPost>): ArrivedPost {
  return {
    spaceId: 'zSpace',
    spaceName: 'Club',
    channelId: 'zChan',
    postId: `zPost${Math.random()}`,
    author: 'zBob',
    authorName: 'Bob',
    text: 'hello',
    deleted: false,
    replyToAuthor: null,
    ...over,
  };
}

describe('mentions', () => {
  it('finds @name anywhere, in any case, at word boundaries', () => {
    expect(mentions('@Alice look', 'Alice')).toBe(true);
    expect(mentions('hey @alice!', 'Alice')).toBe(true);
    expect(mentions('(@ALICE)', 'Alice')).toBe(true);
    expect(mentions('thanks @Alice Smith', 'Alice Smith')).toBe(true);
    expect(mentions('@Éloïse ça va', 'éloïse')).toBe(true);
  });
  it('is not fooled by a longer name, an e-mail address or a bare name', () => {
    expect(mentions('@Alicea hi', 'Alice')).toBe(false);
    expect(mentions('mail bob@alice.example', 'alice')).toBe(false);
    expect(mentions('Alice, hi', 'Alice')).toBe(false);
    expect(mentions('@Al hi', 'Alice')).toBe(false);
    expect(mentions('@ hi', ' ')).toBe(false);
  });
  it('looks past a first @name that does not match to a later one that does', () => {
    expect(mentions('@Alicea and @Alice', 'Alice')).toBe(true);
  });
});

describe('notable', () => {
  it('keeps replies to my posts and mentions of me, in order, and nothing else', () => {
    const reply = post({ postId: 'r', replyToAuthor: 'zMe', text: 'sure' });
    const mention = post({ postId: 'm', text: 'ask @alice' });
    const other = post({ postId: 'o', text: 'unrelated' });
    const replyToSomeoneElse = post({ postId: 'x', replyToAuthor: 'zCarol' });
    expect(notable([reply, other, mention, replyToSomeoneElse], me).map((n) => [n.postId, n.kind])).toEqual([
      ['r', 'reply'],
      ['m', 'mention'],
    ]);
  });
  it('never my own posts, nor deleted ones', () => {
    expect(notable([post({ author: 'zMe', text: '@Alice note to self', replyToAuthor: 'zMe' })], me)).toEqual(
      [],
    );
    expect(notable([post({ deleted: true, text: '', replyToAuthor: 'zMe' })], me)).toEqual([]);
  });
  it('a reply that also mentions me is one notice, a reply', () => {
    expect(notable([post({ replyToAuthor: 'zMe', text: '@Alice yes' })], me).map((n) => n.kind)).toEqual([
      'reply',
    ]);
  });
  it('mentions of any of my names (one per Space) count', () => {
    expect(notable([post({ text: 'hi @Ally' })], { userId: 'zMe', names: ['Alice', 'Ally'] })).toHaveLength(
      1,
    );
  });
});

describe('toShow', () => {
  const n = (kind: Notice['kind'], spaceName = 'Club', text = 'hello'): Notice => ({
    kind,
    spaceId: 's',
    spaceName,
    channelId: 'c',
    postId: 'p',
    authorName: 'Bob',
    text,
  });

  it('shows nothing while the app is seen, or when nothing is notable', () => {
    expect(toShow([n('mention')], true)).toEqual([]);
    expect(toShow([], false)).toEqual([]);
  });
  it('one notification per notice up to three, saying who and where, the text clipped', () => {
    expect(toShow([n('reply'), n('mention', 'Book club', 'x'.repeat(300))], false)).toEqual([
      { title: 'Bob replied to you in Club', body: 'hello' },
      { title: 'Bob mentioned you in Book club', body: `${'x'.repeat(139)}…` },
    ]);
  });
  it('one summary above three', () => {
    expect(toShow([n('reply'), n('mention'), n('mention', 'Chess'), n('mention')], false)).toEqual([
      { title: '3 mentions and 1 reply while you were away', body: 'In Club, Chess' },
    ]);
    expect(toShow([n('reply'), n('reply'), n('reply'), n('reply')], false)).toEqual([
      { title: '4 replies while you were away', body: 'In Club' },
    ]);
  });
});
