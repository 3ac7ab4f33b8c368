/**
 * The commit policy of a Space, read from its op log (section 6.3): only admins and moderators
 * change membership, a moderator removes only members of lower rank, and nobody adds a banned
 * user. Self-updates and a member's own leave need no authority.
 *
 * A commit names the committer's op-log heads (its MLS authenticated data), and is judged by
 * the authority in their causal past: every member decides alike, whatever else it has seen,
 * and a member that lacks those ops holds the commit until it has them.
 */
import type { SpaceState } from '../core/state.js';
import { decode, encode } from '../protocol/cbor.js';
import type { OpId } from '../protocol/ids.js';
import { HASH_BYTES, equalBytes } from '../protocol/ids.js';
import type { CommitPolicy } from './group.js';

const RANK = { member: 0, moderator: 1, admin: 2 } as const;
/** Heads a commit may name. */
const MAX_CONTEXT_HEADS = 256;

/** The commit context of a device whose op log has these heads. */
export function commitContext(heads: readonly OpId[]): Uint8Array {
  return encode([...heads]);
}

function headsOf(context: Uint8Array): Uint8Array[] | undefined {
  try {
    const v = decode(context, {
      maxBytes: 16 + MAX_CONTEXT_HEADS * (HASH_BYTES + 2),
      maxArrayLength: MAX_CONTEXT_HEADS,
      maxStringBytes: HASH_BYTES,
      maxDepth: 1,
    });
    if (!Array.isArray(v) || v.length === 0) return undefined;
    const out: Uint8Array[] = [];
    for (const h of v as unknown[]) {
      if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) return undefined;
      out.push(h);
    }
    return out;
  } catch {
    return undefined;
  }
}

export function stateCommitPolicy(state: () => SpaceState): CommitPolicy {
  return {
    check(committer, change, context) {
      const heads = headsOf(context);
      if (heads === undefined) return 'unauthorized';
      const auth = state().authorityAt(heads);
      if (auth === undefined) return 'unknown-context';
      if (change.added.some((m) => auth.isBanned(m.user))) return 'banned';
      const rank = RANK[auth.roleOf(committer.user)];
      if (rank < RANK.moderator) return 'unauthorized';
      for (const m of change.removed) {
        // A user's own other devices are theirs to remove.
        if (equalBytes(m.user, committer.user)) continue;
        if (RANK[auth.roleOf(m.user)] >= rank) return 'unauthorized';
      }
      return 'ok';
    },
    rank(committer, context) {
      const heads = headsOf(context);
      if (heads === undefined) return RANK.member;
      const auth = state().authorityAt(heads);
      return auth === undefined ? undefined : RANK[auth.roleOf(committer.user)];
    },
  };
}
