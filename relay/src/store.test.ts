import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fdatasync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../shared/src/protocol/ids.js';
import { CRASH_ADDRESS_COUNT, crashAddress } from './store-crash.child.js';
import { RelayStore, STORE_FILE, StoreError, type AppendOutcome, type StoreLimits } from './store.js';

const BIG: StoreLimits = {
  retentionMs: 1e12,
  maxMailboxBytes: 1e12,
  maxBlobBytesPerOwner: 1e12,
  maxBlobStoreBytes: 1e12,
};

const dirs: string[] = [];
const open: RelayStore[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-store-'));
  dirs.push(dir);
  return dir;
}

function openStore(dir: string, limits: Partial<StoreLimits> = {}): RelayStore {
  const store = RelayStore.open(dir, { ...BIG, ...limits });
  open.push(store);
  return store;
}

/**
 * A store whose every sync of the WAL waits in `held` until the test runs it (for real, on the
 * thread pool), to see what the store does while a sync is outstanding.
 */
function heldStore(dir: string): { store: RelayStore; held: (() => void)[] } {
  const held: (() => void)[] = [];
  const store = RelayStore.open(dir, BIG, {
    syncFile: (fd, done) => {
      held.push(() => {
        fdatasync(fd, done);
      });
    },
  });
  open.push(store);
  return { store, held };
}

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const A = new Uint8Array(32).fill(0xaa);
const B = new Uint8Array(32).fill(0xbb);

function msg(text: string, size = text.length): Uint8Array {
  const out = new Uint8Array(size);
  out.set(new TextEncoder().encode(text).subarray(0, size));
  return out;
}

function sha256(b: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(b).digest());
}

function appended(o: AppendOutcome): { seq: number; hash: Uint8Array; duplicate: boolean } {
  if (o.kind !== 'appended') throw new Error(`expected appended, got ${o.kind}`);
  return o;
}

async function until(ready: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ready(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(ready()).toBe(true);
}

function seqs(store: RelayStore, address: Uint8Array): number[] {
  return store.readAfter(address, 0, 1e9, Number.MAX_SAFE_INTEGER).map((m) => m.seq);
}

describe('RelayStore mailboxes', () => {
  it('assigns dense seqs per address and returns the message hash', async () => {
    const store = openStore(tempDir());
    const a1 = appended(await store.append(A, msg('a1')));
    const b1 = appended(await store.append(B, msg('b1')));
    const a2 = appended(await store.append(A, msg('a2')));
    const a3 = appended(await store.append(A, msg('a3')));
    expect([a1.seq, a2.seq, a3.seq, b1.seq]).toEqual([1, 2, 3, 1]);
    expect(a1.duplicate).toBe(false);
    expect(a2.hash).toEqual(sha256(msg('a2')));
    expect(store.lastSeq(A)).toBe(3);
    expect(store.lastSeq(B)).toBe(1);
    expect(store.lastSeq(new Uint8Array(32))).toBe(0);
    expect(store.firstSeq(A)).toBe(1);
    expect(store.firstSeq(new Uint8Array(32))).toBe(1);
    expect(store.readAfter(A, 0, 10, 1e6)).toEqual([
      { seq: 1, message: msg('a1') },
      { seq: 2, message: msg('a2') },
      { seq: 3, message: msg('a3') },
    ]);
    expect(store.addresses()).toEqual([A, B]);
    expect(store.stats()).toEqual({ addresses: 2, messages: 4, messageBytes: 8, blobs: 0, blobBytes: 0 });
  });

  it('makes a duplicate append idempotent: same seq, nothing written', async () => {
    const store = openStore(tempDir());
    appended(await store.append(A, msg('x')));
    appended(await store.append(A, msg('y')));
    const again = appended(await store.append(A, msg('x')));
    expect(again).toEqual({ kind: 'appended', seq: 1, hash: sha256(msg('x')), duplicate: true });
    expect(store.lastSeq(A)).toBe(2);
    expect(store.stats().messages).toBe(2);
    // Same bytes at another address are a different message.
    expect(appended(await store.append(B, msg('x')))).toMatchObject({ seq: 1, duplicate: false });
    // Duplicates inside one group commit.
    const [p, q] = await Promise.all([store.append(A, msg('z')), store.append(A, msg('z'))]);
    expect(p).toMatchObject({ seq: 3, duplicate: false });
    expect(q).toMatchObject({ seq: 3, duplicate: true });
    expect(store.lastSeq(A)).toBe(3);
  });

  it('soft-sequences commits: the first per (address, epoch) wins, others are refused', async () => {
    const store = openStore(tempDir());
    const win = appended(await store.append(A, msg('commit-1a'), { commitEpoch: 1 }));
    expect(await store.append(A, msg('commit-1b'), { commitEpoch: 1 })).toEqual({
      kind: 'refused',
      reason: 'epoch-taken',
    });
    expect(await store.append(A, msg('commit-1a'), { commitEpoch: 1 })).toEqual({ ...win, duplicate: true });
    // Other epochs and other addresses are independent.
    expect(appended(await store.append(A, msg('commit-2'), { commitEpoch: 2 })).seq).toBe(2);
    expect(appended(await store.append(B, msg('commit-1b'), { commitEpoch: 1 })).seq).toBe(1);
    expect(store.lastSeq(A)).toBe(2);
    expect(store.hasMessage(A, sha256(msg('commit-1b')))).toBe(false);
  });

  it('lets exactly one of many concurrent commits for one epoch win', async () => {
    const store = openStore(tempDir());
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.append(A, msg(`c${i}`), { commitEpoch: 7 })),
    );
    const winners = outcomes.flatMap((o, i) => (o.kind === 'appended' ? [i] : []));
    expect(winners).toEqual([0]);
    expect(outcomes.slice(1)).toEqual(
      Array.from({ length: 19 }, () => ({ kind: 'refused', reason: 'epoch-taken' })),
    );
    expect(store.lastSeq(A)).toBe(1);
    expect(store.readAfter(A, 0, 10, 1e6)).toEqual([{ seq: 1, message: msg('c0') }]);
  });

  it('rejects a bad commitEpoch', async () => {
    const store = openStore(tempDir());
    await expect(store.append(A, msg('x'), { commitEpoch: -1 })).rejects.toThrow(RangeError);
    await expect(store.append(A, msg('x'), { commitEpoch: 1.5 })).rejects.toThrow(RangeError);
    expect(store.lastSeq(A)).toBe(0);
  });

  it('pages readAfter by limit and by bytes, always returning at least one', async () => {
    const store = openStore(tempDir());
    for (let i = 1; i <= 10; i++) await store.append(A, msg(`m${i}`, 100));
    expect(store.readAfter(A, 0, 3, 1e6).map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(store.readAfter(A, 3, 3, 1e6).map((m) => m.seq)).toEqual([4, 5, 6]);
    expect(store.readAfter(A, 8, 5, 1e6).map((m) => m.seq)).toEqual([9, 10]);
    expect(store.readAfter(A, 10, 5, 1e6)).toEqual([]);
    expect(store.readAfter(A, 0, 100, 250).map((m) => m.seq)).toEqual([1, 2]);
    expect(store.readAfter(A, 0, 100, 300).map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(store.readAfter(A, 4, 100, 10).map((m) => m.seq)).toEqual([5]);
    expect(store.readAfter(A, 0, 0, 1e6)).toEqual([]);
    expect(store.readAfter(A, 6, 1, 1e6)[0]?.message).toEqual(msg('m7', 100));
    // Paging to the end visits every seq once.
    const visited: number[] = [];
    for (let after = 0; ;) {
      const page = store.readAfter(A, after, 4, 150);
      if (page.length === 0) break;
      visited.push(...page.map((m) => m.seq));
      after = page[page.length - 1]?.seq ?? after;
    }
    expect(visited).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('finds messages by hash across addresses', async () => {
    const store = openStore(tempDir());
    await store.append(A, msg('on A'));
    await store.append(B, msg('on B'));
    expect(store.getByHash(sha256(msg('on B')))).toEqual(msg('on B'));
    expect(store.getByHash(sha256(msg('nowhere')))).toBeUndefined();
    expect(store.hasMessage(A, sha256(msg('on A')))).toBe(true);
    expect(store.hasMessage(B, sha256(msg('on A')))).toBe(false);
    const got = store.getByHash(sha256(msg('on A')));
    expect(got instanceof Buffer).toBe(false);
  });

  it('persists messages, seqs, epochs and blobs across close and reopen', async () => {
    const dir = tempDir();
    const first = RelayStore.open(dir, BIG);
    await first.append(A, msg('one'));
    await first.append(A, msg('two'), { commitEpoch: 3 });
    const blob = msg('chunk');
    expect(await first.putBlob(sha256(blob), blob, 'peer-a')).toEqual({ kind: 'stored' });
    first.close();
    const store = openStore(dir);
    expect(store.readAfter(A, 0, 10, 1e6)).toEqual([
      { seq: 1, message: msg('one') },
      { seq: 2, message: msg('two') },
    ]);
    expect(store.getBlob(sha256(blob))).toEqual(blob);
    expect(await store.append(A, msg('other'), { commitEpoch: 3 })).toEqual({
      kind: 'refused',
      reason: 'epoch-taken',
    });
    expect(appended(await store.append(A, msg('three'))).seq).toBe(3);
    expect(store.stats()).toEqual({ addresses: 1, messages: 3, messageBytes: 11, blobs: 1, blobBytes: 5 });
  });

  it('commits pending appends on close, then refuses use with StoreError closed', async () => {
    const dir = tempDir();
    const store = RelayStore.open(dir, BIG);
    const pending = store.append(A, msg('late'));
    store.close();
    expect(appended(await pending).seq).toBe(1);
    const err = await store.append(A, msg('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('closed');
    await expect(store.putBlob(sha256(msg('b')), msg('b'), 'p')).rejects.toMatchObject({ code: 'closed' });
    expect(() => store.readAfter(A, 0, 1, 1)).toThrow(StoreError);
    store.close();
    expect(openStore(dir).readAfter(A, 0, 10, 1e6)).toEqual([{ seq: 1, message: msg('late') }]);
  });

  it('rejects the whole batch with io when its transaction fails, writing nothing', async () => {
    const dir = tempDir();
    const store = openStore(dir);
    await store.append(A, msg('before'));
    // Another connection holds the write lock past the store's busy timeout.
    const other = new Database(join(dir, STORE_FILE));
    other.exec('BEGIN IMMEDIATE');
    const results = await Promise.allSettled([
      store.append(A, msg('x')),
      store.append(B, msg('y')),
      store.putBlob(sha256(msg('z')), msg('z'), 'p'),
    ]);
    other.exec('ROLLBACK');
    other.close();
    for (const r of results) {
      expect(r.status).toBe('rejected');
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ name: 'StoreError', code: 'io' });
    }
    expect(store.lastSeq(A)).toBe(1);
    expect(store.lastSeq(B)).toBe(0);
    expect(store.hasBlob(sha256(msg('z')))).toBe(false);
    expect(appended(await store.append(A, msg('x'))).seq).toBe(2);
  });

  it('tells its listener of each new message once committed, in seq order, before any caller resumes', async () => {
    const dir = tempDir();
    const store = openStore(dir);
    const heard: string[] = [];
    store.onAppended((address, seq, message) => {
      // Durable when heard: the listener sees what the disk holds.
      expect(store.lastSeq(address)).toBeGreaterThanOrEqual(seq);
      heard.push(`${toHex(address).slice(0, 2)}:${seq}:${new TextDecoder().decode(message)}`);
    });
    const resumed: string[] = [];
    const first = await Promise.all([
      store.append(A, msg('a1')).then(() => resumed.push(`a1 after ${heard.length}`)),
      store.append(B, msg('b1')),
      store.append(A, msg('a2')),
      store.append(A, msg('e5'), { commitEpoch: 5 }),
    ]);
    expect(first).toHaveLength(4);
    // Every message of the batch was heard before the first caller resumed.
    expect(resumed).toEqual(['a1 after 4']);
    expect(heard).toEqual(['aa:1:a1', 'bb:1:b1', 'aa:2:a2', 'aa:3:e5']);
    // A duplicate, a refused commit and a failed batch are not new messages.
    await store.append(A, msg('a1'));
    expect((await store.append(A, msg('x5'), { commitEpoch: 5 })).kind).toBe('refused');
    const other = new Database(join(dir, STORE_FILE));
    other.exec('BEGIN IMMEDIATE');
    await expect(store.append(B, msg('lost'))).rejects.toMatchObject({ code: 'io' });
    other.exec('ROLLBACK');
    other.close();
    expect(heard).toHaveLength(4);
    await store.append(B, msg('b2'));
    expect(heard.at(-1)).toBe('bb:2:b2');
  });

  it('acknowledges, announces and serves an append only once the WAL is synced to disk', async () => {
    const dir = tempDir();
    const { store, held } = heldStore(dir);
    const heard: number[] = [];
    store.onAppended((_, seq) => heard.push(seq));
    const acked: number[] = [];
    const first = store.append(A, msg('one')).then((o) => acked.push(appended(o).seq));
    const onDisk = (): number => {
      const peek = new Database(join(dir, STORE_FILE), { readonly: true });
      const row = peek.prepare('SELECT count(*) AS n FROM messages').get() as { n: number };
      peek.close();
      return row.n;
    };
    await until(() => held.length === 1);
    // Committed (another connection reads it) but not synced: not acknowledged, not announced, and
    // this store serves no seq a power cut could still take back.
    expect(onDisk()).toBe(1);
    const second = store.append(A, msg('two')).then((o) => acked.push(appended(o).seq));
    await new Promise((r) => setTimeout(r, 20));
    expect(acked).toEqual([]);
    expect(heard).toEqual([]);
    expect(store.lastSeq(A)).toBe(0);
    expect(store.firstSeq(A)).toBe(1);
    expect(seqs(store, A)).toEqual([]);
    // The second append waits for the running sync and goes in the next commit.
    expect(onDisk()).toBe(1);
    (held.shift() as () => void)();
    await first;
    expect(acked).toEqual([1]);
    expect(heard).toEqual([1]);
    expect(store.lastSeq(A)).toBe(1);
    expect(seqs(store, A)).toEqual([1]);
    await until(() => held.length === 1);
    expect(onDisk()).toBe(2);
    expect(acked).toEqual([1]);
    (held.shift() as () => void)();
    await second;
    expect(acked).toEqual([1, 2]);
    expect(heard).toEqual([1, 2]);
    expect(seqs(store, A)).toEqual([1, 2]);
  });

  it('tells `committed` of a new message before its sync, and never of a duplicate, a refusal or a failed commit', async () => {
    const dir = tempDir();
    const { store, held } = heldStore(dir);
    const told: string[] = [];
    const tell = (what: string) => (): void => {
      told.push(what);
    };
    const acked: string[] = [];
    const one = store.append(A, msg('one'), { commitEpoch: 7, committed: tell('one') });
    void one.then(() => acked.push('one'));
    await until(() => held.length === 1);
    // Committed, its sync still held: `committed` has run, the caller has no answer yet.
    expect(told).toEqual(['one']);
    expect(acked).toEqual([]);
    // The same message again, and another commit for epoch 7: neither is new.
    const again = store.append(A, msg('one'), { committed: tell('again') });
    const rival = store.append(A, msg('rival'), { commitEpoch: 7, committed: tell('rival') });
    const two = store.append(A, msg('two'), { committed: tell('two') });
    (held.shift() as () => void)();
    await one;
    await until(() => held.length === 1);
    expect(told).toEqual(['one', 'two']);
    (held.shift() as () => void)();
    expect(await again).toMatchObject({ kind: 'appended', seq: 1, duplicate: true });
    expect(await rival).toEqual({ kind: 'refused', reason: 'epoch-taken' });
    expect(appended(await two).seq).toBe(2);
    expect(told).toEqual(['one', 'two']);
    // A commit that fails tells nobody.
    const other = new Database(join(dir, STORE_FILE));
    other.exec('BEGIN IMMEDIATE');
    await expect(store.append(B, msg('lost'), { committed: tell('lost') })).rejects.toMatchObject({
      code: 'io',
    });
    other.exec('ROLLBACK');
    other.close();
    expect(told).toEqual(['one', 'two']);
  });

  it('answers a duplicate once its original is synced, and syncs nothing for a commit that wrote nothing', async () => {
    const { store, held } = heldStore(tempDir());
    const answered: string[] = [];
    const first = store.append(A, msg('one')).then((o) => answered.push(`first ${appended(o).seq}`));
    await until(() => held.length === 1);
    // The same message again while its commit is not synced: a duplicate of seq 1, but not
    // acknowledged before seq 1 is on disk.
    const again = store
      .append(A, msg('one'))
      .then((o) => answered.push(`again ${appended(o).seq} ${String(appended(o).duplicate)}`));
    await new Promise((r) => setTimeout(r, 20));
    expect(answered).toEqual([]);
    (held.shift() as () => void)();
    await Promise.all([first, again]);
    expect(answered).toEqual(['first 1', 'again 1 true']);
    // Later duplicates and refusals write nothing and wait for no sync.
    expect(appended(await store.append(A, msg('one'))).duplicate).toBe(true);
    const chunk = msg('chunk');
    expect(await store.putBlob(sha256(chunk), msg('other'), 'peer')).toEqual({
      kind: 'refused',
      reason: 'hash-mismatch',
    });
    expect(held).toHaveLength(0);
  });

  it('rejects the writes a failed sync covered with io, never announces them, and takes no more writes', async () => {
    const dir = tempDir();
    let fail = true;
    const store = RelayStore.open(dir, BIG, {
      syncFile: (fd, done) => {
        if (fail) done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
        else fdatasync(fd, done);
      },
    });
    open.push(store);
    const heard: number[] = [];
    store.onAppended((_, seq) => heard.push(seq));
    const results = await Promise.allSettled([store.append(A, msg('a')), store.append(B, msg('b'))]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      if (r.status === 'rejected') {
        expect(r.reason).toBeInstanceOf(StoreError);
        expect((r.reason as StoreError).code).toBe('io');
      }
    }
    expect(heard).toEqual([]);
    expect(store.lastSeq(A)).toBe(0);
    expect(seqs(store, A)).toEqual([]);
    // The disk is not trusted any more, even if a later sync would work.
    fail = false;
    await expect(store.append(A, msg('later'))).rejects.toMatchObject({ code: 'io' });
    const chunk = msg('chunk');
    await expect(store.putBlob(sha256(chunk), chunk, 'peer')).rejects.toMatchObject({ code: 'io' });
    expect(heard).toEqual([]);
  });

  it('group-commits 1,000 concurrent appends with distinct dense seqs, each caller its own', async () => {
    const store = openStore(tempDir());
    const messages = Array.from({ length: 1000 }, (_, i) => msg(`concurrent ${i}`, 1024));
    const pending = messages.map((m) => store.append(A, m));
    expect(store.lastSeq(A)).toBe(0); // nothing is written before the flush
    const outcomes = (await Promise.all(pending)).map(appended);
    expect(outcomes.map((o) => o.seq).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
    // Each caller's seq holds its own message, and its hash is that message's.
    const want = messages.map((m) => toHex(sha256(m)));
    expect(outcomes.map((o) => toHex(o.hash))).toEqual(want);
    const atSeq = outcomes.map((o) => {
      const m = store.readAfter(A, o.seq - 1, 1, 1e9)[0];
      return m?.seq === o.seq ? toHex(sha256(m.message)) : 'missing';
    });
    expect(atSeq).toEqual(want);
    expect(store.lastSeq(A)).toBe(1000);
  });
});

describe('RelayStore blobs', () => {
  it('stores a blob under its SHA-256 and reports an existing one', async () => {
    const store = openStore(tempDir());
    const bytes = msg('encrypted chunk', 300);
    expect(await store.putBlob(sha256(bytes), bytes, 'peer-a')).toEqual({ kind: 'stored' });
    expect(await store.putBlob(sha256(bytes), bytes, 'peer-b')).toEqual({ kind: 'exists' });
    expect(store.hasBlob(sha256(bytes))).toBe(true);
    expect(store.getBlob(sha256(bytes))).toEqual(bytes);
    expect(store.getBlob(sha256(msg('other')))).toBeUndefined();
    expect(store.stats()).toMatchObject({ blobs: 1, blobBytes: 300 });
  });

  it('refuses a blob whose bytes do not match its hash and stores nothing', async () => {
    const store = openStore(tempDir());
    const bytes = msg('chunk');
    const wrong = sha256(msg('something else'));
    expect(await store.putBlob(wrong, bytes, 'peer-a')).toEqual({ kind: 'refused', reason: 'hash-mismatch' });
    expect(await store.putBlob(new Uint8Array(3), bytes, 'peer-a')).toMatchObject({
      reason: 'hash-mismatch',
    });
    expect(store.hasBlob(wrong)).toBe(false);
    expect(store.hasBlob(sha256(bytes))).toBe(false);
    expect(store.stats()).toMatchObject({ blobs: 0, blobBytes: 0 });
  });

  it('refuses beyond the owner quota and beyond the store quota', async () => {
    const store = openStore(tempDir(), { maxBlobBytesPerOwner: 100, maxBlobStoreBytes: 150 });
    const a1 = msg('a1', 60);
    const a2 = msg('a2', 50);
    const b1 = msg('b1', 50);
    const b2 = msg('b2', 40);
    const b3 = msg('b3', 41);
    expect(await store.putBlob(sha256(a1), a1, 'alice')).toEqual({ kind: 'stored' });
    expect(await store.putBlob(sha256(a2), a2, 'alice')).toEqual({ kind: 'refused', reason: 'owner-quota' });
    expect(await store.putBlob(sha256(b1), b1, 'bob')).toEqual({ kind: 'stored' });
    expect(await store.putBlob(sha256(b2), b2, 'bob')).toEqual({ kind: 'stored' }); // exactly 150
    expect(await store.putBlob(sha256(b3), b3, 'carol')).toEqual({ kind: 'refused', reason: 'store-quota' });
    expect(store.hasBlob(sha256(a2))).toBe(false);
    expect(store.hasBlob(sha256(b3))).toBe(false);
    expect(store.stats()).toMatchObject({ blobs: 3, blobBytes: 150 });
  });
});

describe('RelayStore prune', () => {
  it('prunes by age and keeps seqs monotonic', async () => {
    const store = openStore(tempDir(), { retentionMs: 2500 });
    for (let i = 1; i <= 5; i++) await store.append(A, msg(`a${i}`, 10), { now: i * 1000 });
    await store.append(B, msg('b1', 10), { now: 1000 });
    expect(store.prune(3000)).toEqual({ messages: 0, bytes: 0 });
    // Cutoff 3500: a1..a3 (1000..3000) and b1 go.
    expect(store.prune(6000)).toEqual({ messages: 4, bytes: 40 });
    expect(store.firstSeq(A)).toBe(4);
    expect(store.lastSeq(A)).toBe(5);
    expect(seqs(store, A)).toEqual([4, 5]);
    expect(store.getByHash(sha256(msg('a1', 10)))).toBeUndefined();
    expect(store.firstSeq(B)).toBe(2);
    expect(store.lastSeq(B)).toBe(1);
    expect(store.addresses()).toEqual([A]);
    expect(store.stats()).toMatchObject({ addresses: 1, messages: 2, messageBytes: 20 });
    expect(appended(await store.append(A, msg('a6', 10), { now: 6000 })).seq).toBe(6);
    expect(appended(await store.append(B, msg('b2', 10), { now: 6000 })).seq).toBe(2);
    // A pruned message appended again is a new message with a new seq.
    expect(appended(await store.append(B, msg('b1', 10), { now: 6000 }))).toMatchObject({
      seq: 3,
      duplicate: false,
    });
    expect(store.prune(6400)).toEqual({ messages: 0, bytes: 0 }); // cutoff 3900, a4 arrived at 4000
    expect(store.prune(20_000)).toEqual({ messages: 5, bytes: 50 });
    expect(store.firstSeq(A)).toBe(7);
    expect(appended(await store.append(A, msg('a7', 10))).seq).toBe(7);
  });

  it('prunes the oldest messages of an address beyond its size limit', async () => {
    const store = openStore(tempDir(), { maxMailboxBytes: 250 });
    for (let i = 1; i <= 5; i++) await store.append(A, msg(`a${i}`, 100));
    await store.append(B, msg('b', 250));
    expect(store.prune(Date.now())).toEqual({ messages: 3, bytes: 300 });
    expect(seqs(store, A)).toEqual([4, 5]);
    expect(store.firstSeq(A)).toBe(4);
    expect(seqs(store, B)).toEqual([1]);
    expect(appended(await store.append(A, msg('a6', 100))).seq).toBe(6);
    expect(store.prune(Date.now())).toEqual({ messages: 1, bytes: 100 });
    expect(seqs(store, A)).toEqual([5, 6]);
    expect(store.stats()).toMatchObject({ messages: 3, messageBytes: 450 });
  });

  it('drops epoch records of pruned messages but keeps their epochs taken', async () => {
    const store = openStore(tempDir(), { retentionMs: 1000 });
    await store.append(A, msg('c1'), { commitEpoch: 1, now: 0 });
    await store.append(A, msg('c2'), { commitEpoch: 2, now: 5000 });
    expect(store.prune(3000)).toEqual({ messages: 1, bytes: 2 });
    expect(await store.append(A, msg('late c1'), { commitEpoch: 1, now: 5000 })).toEqual({
      kind: 'refused',
      reason: 'epoch-taken',
    });
    expect(await store.append(A, msg('other c2'), { commitEpoch: 2, now: 5000 })).toMatchObject({
      kind: 'refused',
    });
    expect(appended(await store.append(A, msg('c3'), { commitEpoch: 3, now: 5000 })).seq).toBe(3);
  });
});

describe('RelayStore open', () => {
  it('creates the directory and a WAL-journaled database in it', async () => {
    const dir = join(tempDir(), 'nested', 'relay');
    const store = openStore(dir);
    await store.append(A, msg('x'));
    const peek = new Database(join(dir, STORE_FILE), { readonly: true });
    expect(peek.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(peek.prepare('SELECT count(*) AS n FROM messages').get()).toEqual({ n: 1 });
    peek.close();
  });

  it('reports a file that is not a database as corrupt', () => {
    const dir = tempDir();
    writeFileSync(join(dir, STORE_FILE), 'this is not a sqlite database, just some text'.repeat(100));
    expect(() => RelayStore.open(dir, BIG)).toThrow(expect.objectContaining({ code: 'corrupt' }) as Error);
  });

  it('reports a directory it cannot create as io', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), 'x');
    expect(() => RelayStore.open(join(dir, 'file', 'sub'), BIG)).toThrow(
      expect.objectContaining({ name: 'StoreError', code: 'io' }) as Error,
    );
  });
});

describe('RelayStore crash safety', () => {
  it('keeps every acknowledged append after SIGKILL mid-write', async () => {
    const dir = tempDir();
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', 'relay/src/store-crash.child.ts', dir], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const ACKS_BEFORE_KILL = 3000;
    let out = '';
    let err = '';
    let lines = 0;
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      const s = d.toString();
      out += s;
      for (const c of s) if (c === '\n') lines++;
      if (lines >= ACKS_BEFORE_KILL) child.kill('SIGKILL');
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 12_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('close', (c, s) => {
        resolve([c, s]);
      }),
    );
    clearTimeout(guard);
    expect(err).toBe('');
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGKILL' });
    // Every complete line is an acknowledged append; a torn last line is ignored.
    const acks = out
      .split('\n')
      .slice(0, -1)
      .map((l) => {
        const [index, seq, hash] = l.split(' ');
        return { index: Number(index), seq: Number(seq), hash: hash ?? '' };
      });
    expect(acks.length).toBeGreaterThanOrEqual(ACKS_BEFORE_KILL);

    const store = openStore(dir);
    for (let index = 0; index < CRASH_ADDRESS_COUNT; index++) {
      const address = crashAddress(index);
      const stored = new Map<number, string>();
      for (let after = 0; ;) {
        const page = store.readAfter(address, after, 1000, 1 << 20);
        if (page.length === 0) break;
        for (const m of page) stored.set(m.seq, toHex(sha256(m.message)));
        after = page[page.length - 1]?.seq ?? after;
      }
      const last = store.lastSeq(address);
      // Dense 1..lastSeq, and nothing acknowledged is missing or different.
      expect([...stored.keys()]).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      const mine = acks.filter((a) => a.index === index);
      expect(mine.length).toBeGreaterThan(ACKS_BEFORE_KILL / CRASH_ADDRESS_COUNT / 2);
      const missing = mine.filter((a) => stored.get(a.seq) !== a.hash);
      expect(missing).toEqual([]);
    }
    // And the store goes on from there.
    const next = store.lastSeq(crashAddress(0)) + 1;
    expect(appended(await store.append(crashAddress(0), msg('after the crash'))).seq).toBe(next);
  }, 30_000);
});
