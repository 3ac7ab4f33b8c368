/**
 * Every hard limit of the wire and storage formats, in one place, each with its unit and
 * why it has the value it has. Decoders enforce these before allocating.
 */

/** Bytes. The largest sealed op: the top padding bucket (ARCHITECTURE.md section 3). */
export const MAX_SEALED_BYTES = 64 * 1024;

/** Bytes. Padding buckets for sealed ops; a sealed op is exactly one of these long. */
export const SEAL_BUCKETS: readonly number[] = [256, 1024, 4096, 16 * 1024, 64 * 1024];

/**
 * Bytes. The largest encoded op inside a seal. The seal adds about 100 bytes of envelope
 * and 16 of tag, so this leaves room to fit the top bucket.
 */
export const MAX_OP_BYTES = MAX_SEALED_BYTES - 256;

/** Items. The most elements of one CBOR array or entries of one map we decode. */
export const MAX_ARRAY_LENGTH = 1024;

/** Bytes. The longest CBOR text or byte string we decode (covers an Automerge change). */
export const MAX_STRING_BYTES = 60 * 1024;

/** Levels. The deepest nesting of arrays and maps we decode; ops need 5. */
export const MAX_DEPTH = 16;

/** Bytes (UTF-8). A post's inline text; longer content goes into a blob (section 3). */
export const MAX_POST_TEXT_BYTES = 4000;

/** Bytes (UTF-8). Names of Spaces, channels, threads and roles. */
export const MAX_NAME_BYTES = 100;

/** Bytes (UTF-8). Descriptions, channel topics, moderation reasons. */
export const MAX_DESCRIPTION_BYTES = 1024;

/** Items. Causal predecessors of one op; an author has few heads at once. */
export const MAX_DEPS = 64;

/** Items. Attachments on one post. */
export const MAX_ATTACHMENTS = 10;

/** Bytes (UTF-8). A MIME type or file name on an attachment. */
export const MAX_MIME_BYTES = 100;

/** Bytes. An Automerge change carried by a collaborative EditPost. */
export const MAX_COLLAB_CHANGE_BYTES = 48 * 1024;

/**
 * Ops, and separately predecessor references, in one collaborative change. Automerge's columns
 * are run-length encoded, so a change of under 200 bytes can declare a billion deletions;
 * decoding 10^6 of them took 11 s here. An honest insertion costs at least one byte, so this is
 * the byte limit; a deletion of a larger range at once has to be made in more than one edit.
 */
export const MAX_COLLAB_CHANGE_OPS = MAX_COLLAB_CHANGE_BYTES;
/** Bytes. An opaque KeyHistory payload (MLS-encrypted epoch keys). */
export const MAX_KEY_HISTORY_BYTES = 48 * 1024;

/** Milliseconds. How far an op's HLC wall time may run ahead of the receiver's clock. */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** Ops. The holdback queue's bound; overflow drops the oldest buffered op (section 4). */
export const MAX_HOLDBACK_OPS = 10_000;

/**
 * Entries. Imported public keys kept for `verify`: an importKey per verification costs a
 * third of the throughput (measured on Node 20), and a device sees a bounded set of authors
 * (members of its Spaces), so a few thousand keys cover the working set with bounded memory.
 */
export const VERIFY_KEY_CACHE_ENTRIES = 4096;

/**
 * Signatures per message to a Node host's verifier thread. Small enough that every thread has
 * work and answers come back steadily (a slice of 16 is about 3 ms of verifying here); large
 * enough that the message costs little per signature.
 */
export const VERIFY_BATCH_ITEMS = 16;

/**
 * Unanswered batches a verifier thread holds at most: one it works on and three ready behind it
 * (about 8 ms of verifying here). More signatures wait in the queue and leave in fuller batches.
 * With only one batch behind, a thread ran dry whenever the event loop was busy with a stretch
 * of the pipeline's serial steps or a garbage collection and could not hand it the next batch
 * in time: bench:core's 10k run kept 1.80–1.92 of the 2 cores busy, against 1.93–1.97 with
 * three behind (alternated runs, 2026-11-27).
 */
export const VERIFY_BATCHES_AHEAD = 4;

/**
 * The nice value a Node host's verifier threads take on Linux (0 is normal, 19 the lowest).
 * The event loop, which runs the pipeline's serial steps, then gets a core whenever it has work.
 */
export const VERIFY_THREAD_NICE = 10;

/** At most this many verifier threads (one per core up to it): each holds its own V8 heap. */
export const VERIFY_THREADS_MAX = 8;

/** Bytes. An MLS credential's identity: `[user, createdMs, certSig]` needs about 110. */
export const MAX_MLS_CREDENTIAL_BYTES = 256;

/** Bytes. One MLS message (commit, Welcome, key package) accepted from the network; a commit in a 5,000-member Space is about 1.5 MB. */
export const MAX_MLS_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * Epochs. How many past epochs of MLS receiver state a member keeps (for proposals and
 * late handshake messages); content keys of every epoch are kept separately in the key history.
 */
export const MLS_RETAIN_EPOCHS = 4;

/** Key packages. The stock of unused ones a device keeps ready for invites. */
export const KEY_PACKAGE_STOCK = 5;

/**
 * Key packages. Those sent in join requests and not yet used by a Welcome that a device keeps
 * (their private keys); past this the oldest are forgotten (a request that old is stale).
 */
export const MAX_HANDED_OUT_KEY_PACKAGES = 64;

/** Limits for decoding a saved key history and membership history (our own CBOR, trusted size). */
export const MAX_HISTORY_ENTRIES = 1_000_000;

// --- Relay protocols (ARCHITECTURE.md sections 7 to 9) ---

/**
 * Bytes. The largest message a mailbox takes: an MLS Welcome carries the whole ratchet tree,
 * about 400 bytes per member, so 4 MiB covers a Space of about 10,000 members.
 */
export const MAX_MAILBOX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Bytes. A blob chunk: 256 KiB of content plus the 16-byte AES-GCM tag (section 7). */
export const MAX_BLOB_CHUNK_BYTES = 256 * 1024 + 16;

/** Bytes. Framing around a payload in one relay-protocol frame (kind, ids, seqs, CBOR heads). */
export const FRAME_OVERHEAD_BYTES = 256;

/** Bytes. The largest relay-protocol frame either side decodes; longer length prefixes close the stream. */
export const MAX_FRAME_BYTES = MAX_MAILBOX_MESSAGE_BYTES + FRAME_OVERHEAD_BYTES;

/** Ids. The most `OpId`s one `/conclave/sync/1` request asks for (a page of missing deps). */
export const MAX_SYNC_IDS = 256;

/** Bytes. A sync answer or a mailbox read page stops adding messages past this size. */
export const MAX_PAGE_BYTES = 1024 * 1024;

/** Messages. The most messages one mailbox read page holds. */
export const MAX_PAGE_MESSAGES = 1024;

/**
 * Messages. Credit a subscriber may grant at once: a relay never has more than this many
 * pushed messages of one subscription unacknowledged, so a slow reader costs bounded memory.
 */
export const MAX_SUBSCRIPTION_CREDIT = 4096;

/** Subscriptions. The most open subscriptions on one connection (a device in many Spaces). */
export const MAX_SUBSCRIPTIONS_PER_SESSION = 1024;

/** Requests. The most requests of one session awaiting an answer at a relay. */
export const MAX_PENDING_REQUESTS = 1024;
