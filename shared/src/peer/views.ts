/**
 * What faces show: a Space's posts, members and channels as plain values with ids in their
 * display form (multibase base58btc) and times in ISO 8601. The CLI prints them as JSON; the
 * browser worker hands them to the page. One definition, so both say the same thing.
 */
import type { PostView, SpaceState } from '../core/state.js';
import type { UserId } from '../protocol/index.js';
import { bytesKey } from '../protocol/ids.js';
import { toMultibase } from '../protocol/multibase.js';
import type { MemberView } from './peer.js';

/** An id as people see it. */
export const idText = (b: Uint8Array): string => toMultibase(b);
/** A time (ms since the Unix epoch) in ISO 8601, UTC. */
export const timeText = (ms: number): string => new Date(ms).toISOString();

export interface PostItem {
  readonly postId: string;
  readonly threadId: string | null;
  /** The thread's title, on the first post shown of each thread; null otherwise. */
  readonly title: string | null;
  readonly author: string;
  /** The author's display name in the Space, or the start of their id when they set none. */
  readonly authorName: string;
  /** Empty for a deleted post. */
  readonly text: string;
  readonly replyTo: string | null;
  readonly edited: boolean;
  readonly deleted: boolean;
  readonly lateAfterRemoval: boolean;
  readonly at: string;
  readonly attachments: readonly { blobId: string; name: string; mime: string; size: number }[];
}

export function nameIn(state: SpaceState, user: UserId): string {
  return state.nameOf(user) ?? idText(user).slice(0, 10);
}

/** Posts in the order given (display order), each thread's title on its first post. */
export function postItems(state: SpaceState, posts: readonly PostView[], channel: Uint8Array): PostItem[] {
  const titles = new Map<string, string>();
  for (const t of state.threadsIn(channel)) titles.set(bytesKey(t.threadId), t.title);
  const seen = new Set<string>();
  return posts.map((p) => {
    const tk = p.thread === null ? undefined : bytesKey(p.thread);
    const first = tk !== undefined && !seen.has(tk);
    if (tk !== undefined) seen.add(tk);
    return {
      postId: idText(p.postId),
      threadId: p.thread === null ? null : idText(p.thread),
      title: first ? (titles.get(tk) ?? null) : null,
      author: idText(p.author),
      authorName: nameIn(state, p.author),
      text: p.deleted ? '' : p.text,
      replyTo: p.parent === null ? null : idText(p.parent),
      edited: p.edited,
      deleted: p.deleted,
      lateAfterRemoval: p.lateAfterRemoval,
      at: timeText(p.wallMs),
      attachments: p.attachments.map((a) => ({
        blobId: idText(a.hash),
        name: a.name,
        mime: a.mime,
        size: a.size,
      })),
    };
  });
}

export interface MemberItem {
  readonly userId: string;
  readonly name: string | null;
  readonly roles: readonly string[];
  readonly status: 'member' | 'removed' | 'banned';
  /** ISO time, `"forever"` (until unmuted), or null when not muted. */
  readonly mutedUntil: string | null;
}

export function memberItems(members: readonly MemberView[]): MemberItem[] {
  return members.map((m) => ({
    userId: idText(m.userId),
    name: m.name,
    roles: m.roles,
    status: m.status,
    mutedUntil: m.mutedUntil === null || m.mutedUntil === 'forever' ? m.mutedUntil : timeText(m.mutedUntil),
  }));
}

export interface ChannelItem {
  readonly channelId: string;
  readonly name: string;
  readonly type: 'chat' | 'forum';
  readonly topic: string;
}

export function channelItems(state: SpaceState): ChannelItem[] {
  return state
    .channels()
    .map((c) => ({ channelId: idText(c.channelId), name: c.name, type: c.type, topic: c.topic }));
}
