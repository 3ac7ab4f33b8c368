/**
 * The commit policy of a Space, read from its state (section 6.3): only admins and moderators
 * change membership, a moderator removes only members of lower rank, and nobody adds a banned
 * user. Self-updates and a member's own leave need no authority.
 */
import type { SpaceState } from '../core/state.js';
import { equalBytes } from '../protocol/ids.js';
import type { CommitPolicy } from './group.js';

const RANK = { member: 0, moderator: 1, admin: 2 } as const;

export function stateCommitPolicy(state: () => SpaceState): CommitPolicy {
  return {
    check(committer, change) {
      const s = state();
      if (change.added.some((m) => s.isBanned(m.user))) return 'banned';
      const rank = RANK[s.roleOf(committer.user)];
      if (rank < RANK.moderator) return 'unauthorized';
      for (const m of change.removed) {
        // A user's own other devices are theirs to remove.
        if (equalBytes(m.user, committer.user)) continue;
        if (RANK[s.roleOf(m.user)] >= rank) return 'unauthorized';
      }
      return 'ok';
    },
  };
}
