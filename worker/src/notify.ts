/**
 * Notifications for what arrived while the app was away (ARCHITECTURE.md section 11): a mention
 * of this person or a direct reply to one of their posts, taken in during a catch-up while the
 * app is not seen. Two pure decisions: which arrived posts are notable (`notable`, run by the
 * host, which has the Spaces' state) and what to show for them (`toShow`, run by the page,
 * which knows whether it is seen).
 */

/** A post from someone else that this device accepted during a catch-up. */
export interface ArrivedPost {
  readonly spaceId: string;
  readonly spaceName: string;
  readonly channelId: string;
  readonly postId: string;
  readonly author: string;
  readonly authorName: string;
  /** Empty for a deleted post. */
  readonly text: string;
  readonly deleted: boolean;
  /** The author (user id) of the post this one replies to; null when it is not a reply. */
  readonly replyToAuthor: string | null;
}

/** A post that calls for this person. */
export interface Notice {
  readonly kind: 'mention' | 'reply';
  readonly spaceId: string;
  readonly spaceName: string;
  readonly channelId: string;
  readonly postId: string;
  readonly authorName: string;
  readonly text: string;
}

/** What the page shows: one system notification. */
export interface Shown {
  readonly title: string;
  readonly body: string;
}

/** Notices. Above this many, one summary is shown instead of one notification each. */
export const MAX_SEPARATE_NOTIFICATIONS = 3;
/** Characters of a post's text shown in a notification's body. */
export const NOTIFICATION_TEXT_CHARS = 140;

const WORD = /[\p{L}\p{N}_]/u;

/**
 * Whether `text` mentions `name` as `@name`: the `@` at the start or after a non-word character
 * (an e-mail address is no mention), the name compared without regard to case and followed by
 * the end or a non-word character (`@Al` does not mention Alice).
 */
export function mentions(text: string, name: string): boolean {
  const n = name.trim().toLocaleLowerCase();
  if (n === '') return false;
  const t = text.toLocaleLowerCase();
  for (let i = t.indexOf(`@${n}`); i !== -1; i = t.indexOf(`@${n}`, i + 1)) {
    const before = i === 0 ? '' : (t[i - 1] ?? '');
    const after = t[i + 1 + n.length] ?? '';
    if (!WORD.test(before) && !WORD.test(after)) return true;
  }
  return false;
}

/**
 * The arrived posts that call for this person, in the order given: a reply to one of their
 * posts, or a mention of one of their names (`@name`). Their own posts and deleted ones never.
 */
export function notable(
  arrived: readonly ArrivedPost[],
  me: { readonly userId: string; readonly names: readonly string[] },
): Notice[] {
  const out: Notice[] = [];
  for (const p of arrived) {
    if (p.author === me.userId || p.deleted) continue;
    const kind =
      p.replyToAuthor === me.userId ? 'reply' : me.names.some((n) => mentions(p.text, n)) ? 'mention' : null;
    if (kind === null) continue;
    out.push({
      kind,
      spaceId: p.spaceId,
      spaceName: p.spaceName,
      channelId: p.channelId,
      postId: p.postId,
      authorName: p.authorName,
      text: p.text,
    });
  }
  return out;
}

function clip(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length <= NOTIFICATION_TEXT_CHARS ? t : `${t.slice(0, NOTIFICATION_TEXT_CHARS - 1)}…`;
}

/**
 * What to show for `notices`: nothing while the app is seen (the person sees the timeline);
 * otherwise one notification each, or one summary when there are more than
 * `MAX_SEPARATE_NOTIFICATIONS`.
 */
export function toShow(notices: readonly Notice[], seen: boolean): Shown[] {
  if (seen || notices.length === 0) return [];
  if (notices.length <= MAX_SEPARATE_NOTIFICATIONS) {
    return notices.map((n) => ({
      title:
        n.kind === 'reply'
          ? `${n.authorName} replied to you in ${n.spaceName}`
          : `${n.authorName} mentioned you in ${n.spaceName}`,
      body: clip(n.text),
    }));
  }
  const replies = notices.filter((n) => n.kind === 'reply').length;
  const mentioned = notices.length - replies;
  const parts = [
    ...(mentioned > 0 ? [`${mentioned} mention${mentioned === 1 ? '' : 's'}`] : []),
    ...(replies > 0 ? [`${replies} repl${replies === 1 ? 'y' : 'ies'}`] : []),
  ];
  const spaces = [...new Set(notices.map((n) => n.spaceName))];
  return [{ title: `${parts.join(' and ')} while you were away`, body: clip(`In ${spaces.join(', ')}`) }];
}
