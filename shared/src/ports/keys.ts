import type { DeviceId, EpochRef, SpaceId, UserId } from '../protocol/ids.js';

/**
 * The epoch keys of Spaces (ARCHITECTURE.md section 6.2), 32 bytes each, from the MLS
 * exporter: the control key seals whole ops (every member gets it for every epoch of its
 * history), the content key seals the readable part of posts, threads and edits (a member who
 * joined a Space that hides its history from new members has it only from its join on). The MLS
 * layer supplies the real one; tests use a fixed table.
 */
export interface KeyProvider {
  /** The control key of `epoch` in `space`, or `undefined` when this device does not have it (yet). */
  epochKey(space: SpaceId, epoch: EpochRef): Promise<Uint8Array | undefined>;
  /** The content key of `epoch` in `space`, or `undefined` when this device does not have it. */
  contentKey(space: SpaceId, epoch: EpochRef): Promise<Uint8Array | undefined>;
}

export type MembershipAnswer = 'member' | 'not-member' | 'unknown-epoch';

/**
 * Who was a member of a Space in which epoch: the membership history derived from MLS
 * commits (section 4 step 5). Synchronous: the history is in memory once loaded.
 */
export interface MembershipView {
  /**
   * Whether `device` of `user` was a member of `space` in `epoch`. `unknown-epoch` when the
   * epoch (number and commit hash) is not in this device's history.
   */
  memberAt(space: SpaceId, epoch: EpochRef, user: UserId, device: DeviceId): MembershipAnswer;
}
