/**
 * What the host's `suspend`/`resume` (api.ts) read from the peer: the posts held when the app
 * went away, and those that arrived since, from others, as notify.ts takes them.
 */
import type { PoolState } from '../../shared/src/net/pool.js';
import type { Peer } from '../../shared/src/peer/peer.js';
import { idText, nameIn } from '../../shared/src/peer/views.js';
import { bytesKey } from '../../shared/src/protocol/ids.js';
import type { ArrivedPost } from './notify.js';

/** Every post of every Space on the device, as `<space key>/<post key>`. */
export function postKeys(peer: Peer): Set<string> {
  const keys = new Set<string>();
  for (const s of peer.spaces()) {
    const sk = bytesKey(s.spaceId);
    for (const p of peer.state(s.spaceId).allPosts()) keys.add(`${sk}/${bytesKey(p.postId)}`);
  }
  return keys;
}

/** Posts by others that are not in `before`, and the names this person goes by in their Spaces. */
export function arrivedSince(
  peer: Peer,
  before: ReadonlySet<string>,
): { arrived: ArrivedPost[]; names: string[] } {
  const arrived: ArrivedPost[] = [];
  const names = new Set<string>([peer.name]);
  const me = bytesKey(peer.userId);
  for (const s of peer.spaces()) {
    const state = peer.state(s.spaceId);
    names.add(state.nameOf(peer.userId) ?? peer.name);
    const sk = bytesKey(s.spaceId);
    const posts = state.allPosts();
    const byKey = new Map(posts.map((p) => [bytesKey(p.postId), p]));
    for (const p of posts) {
      const pk = bytesKey(p.postId);
      if (before.has(`${sk}/${pk}`) || bytesKey(p.author) === me) continue;
      const parent = p.parent === null ? undefined : byKey.get(bytesKey(p.parent));
      arrived.push({
        spaceId: idText(s.spaceId),
        spaceName: s.name,
        channelId: idText(p.channel),
        postId: idText(p.postId),
        author: idText(p.author),
        authorName: nameIn(state, p.author),
        text: p.deleted ? '' : p.text,
        deleted: p.deleted,
        replyToAuthor: parent === undefined ? null : idText(parent.author),
      });
    }
  }
  return { arrived, names: [...names] };
}

/** Milliseconds `resume` waits for a dial under way to reach a relay (a dial's own timeout is 10 s). */
export const RESUME_DIAL_MS = 10_000;

/** Resolves true once a relay is connected, false after `timeoutMs`. */
export function whenConnected(peer: Peer, timeoutMs: number): Promise<boolean> {
  const connected = (s: PoolState) => s.relays.some((r) => r.status === 'connected');
  if (connected(peer.pool.state)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stop();
      resolve(false);
    }, timeoutMs);
    // Called at once with the state checked above (not connected), then on every change.
    const stop = peer.pool.onState((s) => {
      if (!connected(s)) return;
      clearTimeout(timer);
      queueMicrotask(stop);
      resolve(true);
    });
  });
}

/** Milliseconds without a new post after which a catch-up counts as settled. */
export const SETTLE_QUIET_MS = 500;
/** Milliseconds a catch-up waits at most for that quiet. */
export const SETTLE_MAX_MS = 10_000;

/**
 * Resolves once no op arrived for `SETTLE_QUIET_MS` (or after `SETTLE_MAX_MS`): what the relays
 * delivered right at the end of a catch-up is in before `resume` says what arrived.
 */
export async function settled(peer: Peer): Promise<void> {
  // Ops accepted, not posts listed: listing builds a view of every post, at every step.
  const count = () => peer.spaces().reduce((n, s) => n + peer.state(s.spaceId).size, 0);
  const step = SETTLE_QUIET_MS / 2;
  let last = count();
  let quiet = 0;
  for (let waited = 0; quiet < SETTLE_QUIET_MS && waited < SETTLE_MAX_MS; waited += step) {
    await new Promise((r) => setTimeout(r, step));
    const now = count();
    quiet = now === last ? quiet + step : 0;
    last = now;
  }
}
