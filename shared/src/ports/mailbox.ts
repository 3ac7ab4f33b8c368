/**
 * Mailboxes on the Space's relays (ARCHITECTURE.md sections 6.3, 8 and 9): append-only lists
 * of opaque messages at 32-byte addresses (a TopicId, an invite's mailbox, a reply address).
 * The relay issue supplies the network implementation; `memoryMailbox` serves tests and
 * single-process tools.
 */
import { bytesKey } from '../protocol/ids.js';

export type AppendResult =
  | { readonly kind: 'appended'; readonly seq: number }
  /** Soft sequencing: another commit for this epoch was appended first (section 6.3). */
  | { readonly kind: 'refused'; readonly reason: 'epoch-taken' };

export interface MailboxMessage {
  readonly seq: number;
  readonly message: Uint8Array;
}

/** The relays could not be reached; nothing was appended. */
export class MailboxError extends Error {
  override readonly name = 'MailboxError';
}

export interface Mailbox {
  /**
   * Appends `message` at `address`; resolves once it is durable. With `commitEpoch`, the
   * message is a commit on that epoch and is refused when another commit on it came first.
   *
   * @throws MailboxError when no relay could be reached.
   */
  append(address: Uint8Array, message: Uint8Array, options?: { commitEpoch?: number }): Promise<AppendResult>;
  /**
   * The messages after `afterSeq`, oldest first.
   *
   * @throws MailboxError when no relay could be reached.
   */
  read(address: Uint8Array, afterSeq: number): Promise<MailboxMessage[]>;
}

/** An in-memory mailbox host; `offline` makes every call fail as an unreachable relay would. */
export class MemoryMailbox implements Mailbox {
  private readonly boxes = new Map<string, Uint8Array[]>();
  private readonly commits = new Map<string, Set<number>>();
  offline = false;

  append(
    address: Uint8Array,
    message: Uint8Array,
    options: { commitEpoch?: number } = {},
  ): Promise<AppendResult> {
    if (this.offline) return Promise.reject(new MailboxError('relay unreachable'));
    const k = bytesKey(address);
    if (options.commitEpoch !== undefined) {
      let taken = this.commits.get(k);
      if (taken === undefined) this.commits.set(k, (taken = new Set()));
      if (taken.has(options.commitEpoch)) return Promise.resolve({ kind: 'refused', reason: 'epoch-taken' });
      taken.add(options.commitEpoch);
    }
    let box = this.boxes.get(k);
    if (box === undefined) this.boxes.set(k, (box = []));
    box.push(message.slice());
    return Promise.resolve({ kind: 'appended', seq: box.length });
  }

  read(address: Uint8Array, afterSeq: number): Promise<MailboxMessage[]> {
    if (this.offline) return Promise.reject(new MailboxError('relay unreachable'));
    const box = this.boxes.get(bytesKey(address)) ?? [];
    const from = Math.max(0, afterSeq);
    return Promise.resolve(box.slice(from).map((message, i) => ({ seq: from + i + 1, message })));
  }
}
