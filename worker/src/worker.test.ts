/**
 * The worker host in real Chromium against a real relay: the API over Comlink from a
 * SharedWorker that every tab of the origin shares, IndexedDB storage kept across reloads, the
 * libp2p client in the worker, and two people (two browser contexts) meeting by invite link.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from '../../scripts/chromium.js';
import { type SpawnedRelay, spawnRelay, tempDir } from '../../relay/src/testing/spawn.js';
import type { Api } from './client.js';
import type { LiveEvent, Result } from './api.js';

declare const conclave: Api;
declare const liveEvents: LiveEvent[];

async function bundle(entry: string): Promise<string> {
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [fileURLToPath(new URL(entry, import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'error',
    // Loaded by the worker only when a collaborative post is met (none here).
    external: ['@automerge/automerge'],
  });
  return out.outputFiles[0]?.text ?? '';
}

/** Runs `fn` in the page (where `conclave` is the API) and returns its Result. */
async function ask<T, A = undefined>(
  page: Page,
  fn: (arg: A) => Promise<Result<T>>,
  arg?: A,
): Promise<Result<T>> {
  const run = page.evaluate.bind(page) as (f: (arg: A) => Promise<unknown>, a: A) => Promise<unknown>;
  return (await run(fn, arg as A)) as Result<T>;
}

function value<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
  return r.value;
}

describe('the worker host in Chromium', () => {
  const dir = tempDir();
  let relay: SpawnedRelay;
  let server: http.Server;
  let origin = '';
  let browser: Browser;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
    relay = await spawnRelay({ dataDir: dir.dir });
    const files: Record<string, string> = {
      '/worker.js': await bundle('./worker.ts'),
      '/page.js': await bundle('./testing/page.ts'),
    };
    server = http.createServer((req, res) => {
      const js = files[req.url ?? ''];
      res.setHeader('content-type', js === undefined ? 'text/html' : 'text/javascript');
      res.end(js ?? '<!doctype html><title>Conclave</title><script type="module" src="/page.js"></script>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser.close();
    await relay.stop();
    await new Promise((r) => server.close(r));
    dir.cleanup();
  });

  async function open(page: Page, query = ''): Promise<void> {
    await page.goto(`${origin}/${query}`);
    await page.waitForFunction(() => typeof (globalThis as { conclave?: unknown }).conclave !== 'undefined');
  }

  it('two tabs share one host; a second person joins by link; posts arrive live; reloads keep everything', async () => {
    const alice = await browser.newContext();
    const bob = await browser.newContext();
    try {
      const a1 = await alice.newPage();
      await open(a1);
      expect(value(await ask(a1, () => conclave.identity()))).toBeNull();
      value(await ask(a1, (r) => conclave.setRelays([r]), relay.multiaddr));
      const me = value(await ask(a1, () => conclave.createIdentity('Alice')));
      expect(me.name).toBe('Alice');
      const { spaceId } = value(await ask(a1, () => conclave.createSpace('Club')));
      const { channelId } = value(
        await ask(a1, (s) => conclave.createChannel(s, 'general', 'chat'), spaceId),
      );
      const sent = value(
        await ask(a1, ([s, c]) => conclave.post(s, c, 'hello from tab one'), [spaceId, channelId] as const),
      );
      expect(sent.status).toBe('sent');

      // A second tab of the same origin talks to the same host: same identity, same Space.
      const a2 = await alice.newPage();
      await open(a2);
      expect(value(await ask(a2, () => conclave.identity()))?.userId).toBe(me.userId);
      expect(value(await ask(a2, () => conclave.hostInfo()))).toEqual({ kind: 'shared', tabs: 2 });
      const seen = value(await ask(a2, ([s, c]) => conclave.posts(s, c), [spaceId, channelId] as const));
      expect(seen.map((p) => [p.authorName, p.text])).toEqual([['Alice', 'hello from tab one']]);

      // Refused input comes back as a typed error, not an exception.
      const bad = await ask(a2, () => conclave.createSpace(''));
      expect(bad).toMatchObject({ ok: false, error: { code: 'invalid' } });
      const unknown = await ask(a2, ([s]) => conclave.posts(s, 'zNotAChannel'), [spaceId] as const);
      expect(unknown).toMatchObject({ ok: false, error: { code: 'unknown' } });

      // Bob, in another profile, joins by link; Alice's host (online in her tabs) admits him.
      const { link } = value(
        await ask(
          a1,
          (s) => conclave.createInvite(s, { role: 'member', expiresInMs: 3_600_000, maxUses: 1 }),
          spaceId,
        ),
      );
      const b1 = await bob.newPage();
      await open(b1);
      value(await ask(b1, () => conclave.createIdentity('Bob')));
      const joined = value(await ask(b1, (l) => conclave.join(l, 60_000), link));
      expect(joined).toEqual({ spaceId, status: 'joined' });
      const bobSees = value(await ask(b1, ([s, c]) => conclave.posts(s, c), [spaceId, channelId] as const));
      expect(bobSees.map((p) => p.text)).toEqual(['hello from tab one']);

      // Bob posts; it reaches Alice's tabs live (an event, then the post).
      value(await ask(b1, ([s, c]) => conclave.post(s, c, 'hi Alice'), [spaceId, channelId] as const));
      await expect
        .poll(
          async () =>
            value(await ask(a2, ([sp, c]) => conclave.posts(sp, c), [spaceId, channelId] as const)).map(
              (p) => p.text,
            ),
          { timeout: 30_000, interval: 250 },
        )
        .toContain('hi Alice');
      const events = await a2.evaluate(() => liveEvents.map((e) => e.kind));
      expect(events).toContain('changed');
      const members = value(await ask(a1, (s) => conclave.members(s), spaceId));
      expect(members.map((m) => m.name).sort()).toEqual(['Alice', 'Bob']);

      // Bob's post is unread for Alice (her own are not) until she marks the channel read.
      const info = value(await ask(a1, (s) => conclave.space(s), spaceId));
      expect(info.channels.map((c) => [c.name, c.unread])).toEqual([['general', 1]]);
      expect(value(await ask(a1, () => conclave.spaces())).map((s) => s.unread)).toEqual([1]);
      const page = value(
        await ask(a1, ([s, c]) => conclave.timeline(s, c, { limit: 50 }), [spaceId, channelId] as const),
      );
      expect(page.posts.map((p) => p.text)).toEqual(['hello from tab one', 'hi Alice']);
      expect(page).toMatchObject({ older: null, total: 2, unread: 1, firstUnread: page.posts[1]?.postId });
      const read = value(
        await ask(a1, ([s, c, p]) => conclave.markRead(s, c, p), [
          spaceId,
          channelId,
          page.posts[1]?.postId ?? '',
        ] as const),
      );
      expect(read.unread).toBe(0);
      await expect.poll(() => a2.evaluate(() => liveEvents.map((e) => e.kind))).toContain('read');
      // Marking an earlier post read does not move the position back.
      value(
        await ask(a1, ([s, c, p]) => conclave.markRead(s, c, p), [
          spaceId,
          channelId,
          page.posts[0]?.postId ?? '',
        ] as const),
      );
      expect(value(await ask(a2, () => conclave.spaces())).map((s) => s.unread)).toEqual([0]);

      // The same send made twice (a tab closed before the answer) posts once.
      const once = value(
        await ask(a1, ([s, c]) => conclave.post(s, c, 'only once', { sendId: 'send-1' }), [
          spaceId,
          channelId,
        ] as const),
      );
      const twice = value(
        await ask(a2, ([s, c]) => conclave.post(s, c, 'only once', { sendId: 'send-1' }), [
          spaceId,
          channelId,
        ] as const),
      );
      expect(twice.postId).toBe(once.postId);
      // An admin renames the channel; a member may not.
      value(await ask(a1, ([s, c]) => conclave.renameChannel(s, c, 'lobby'), [spaceId, channelId] as const));
      expect(value(await ask(a2, (s) => conclave.space(s), spaceId)).channels.map((c) => c.name)).toEqual([
        'lobby',
      ]);
      await expect
        .poll(
          async () =>
            (await ask(b1, ([s, c]) => conclave.renameChannel(s, c, 'mine'), [spaceId, channelId] as const))
              .ok,
        )
        .toBe(false);

      // Every page reloaded (the worker restarts once no tab holds it): everything is still there.
      await a2.close();
      await a1.reload();
      await a1.waitForFunction(() => typeof (globalThis as { conclave?: unknown }).conclave !== 'undefined');
      expect(value(await ask(a1, () => conclave.identity()))?.userId).toBe(me.userId);
      const after = value(await ask(a1, ([s, c]) => conclave.posts(s, c), [spaceId, channelId] as const));
      expect(after.map((p) => p.text)).toEqual(['hello from tab one', 'hi Alice', 'only once']);
      // The read position was kept on the device.
      expect(value(await ask(a1, () => conclave.spaces())).map((s) => s.unread)).toEqual([0]);
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  it('pages a long timeline: the newest page, older pages by cursor, a window from a post on, deleted posts left out', async () => {
    const dave = await browser.newContext();
    try {
      const d = await dave.newPage();
      await open(d);
      value(await ask(d, () => conclave.createIdentity('Dave')));
      const { spaceId } = value(await ask(d, () => conclave.createSpace('Long')));
      const { channelId } = value(await ask(d, (s) => conclave.createChannel(s, 'chat', 'chat'), spaceId));
      const ok = await d.evaluate(
        async ([s, c]) => {
          for (let i = 1; i <= 120; i++) if (!(await conclave.post(s, c, `m${i}`)).ok) return false;
          return true;
        },
        [spaceId, channelId] as const,
      );
      expect(ok).toBe(true);
      const texts = (p: { posts: readonly { text: string }[] }) => p.posts.map((x) => x.text);
      const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => `m${a + i}`);
      const newest = value(
        await ask(d, ([s, c]) => conclave.timeline(s, c, { limit: 50 }), [spaceId, channelId] as const),
      );
      expect(texts(newest)).toEqual(range(71, 120));
      expect(newest.total).toBe(120);
      expect(newest.older).toBe(newest.posts[0]?.postId);
      const before = newest.older ?? '';
      const second = value(
        await ask(d, ([s, c, b]) => conclave.timeline(s, c, { before: b, limit: 50 }), [
          spaceId,
          channelId,
          before,
        ] as const),
      );
      expect(texts(second)).toEqual(range(21, 70));
      const third = value(
        await ask(d, ([s, c, b]) => conclave.timeline(s, c, { before: b, limit: 50 }), [
          spaceId,
          channelId,
          second.older ?? '',
        ] as const),
      );
      expect(texts(third)).toEqual(range(1, 20));
      expect(third.older).toBeNull();

      // A deleted post leaves the window, and its id still works as a cursor.
      const m100 = newest.posts.find((p) => p.text === 'm100')?.postId ?? '';
      value(await ask(d, ([s, p]) => conclave.deletePost(s, p), [spaceId, m100] as const));
      const from = value(
        await ask(d, ([s, c, f]) => conclave.timeline(s, c, { from: f, limit: 500 }), [
          spaceId,
          channelId,
          m100,
        ] as const),
      );
      expect(texts(from)).toEqual(range(101, 120));
      const upTo = value(
        await ask(d, ([s, c, b]) => conclave.timeline(s, c, { before: b, limit: 3 }), [
          spaceId,
          channelId,
          m100,
        ] as const),
      );
      expect(texts(upTo)).toEqual(range(97, 99));
      // A reply carries the start of the post it answers, even when that post is not in the window.
      const m1 = third.posts[0]?.postId ?? '';
      value(
        await ask(d, ([s, c, r]) => conclave.post(s, c, 'late reply', { replyTo: r }), [
          spaceId,
          channelId,
          m1,
        ] as const),
      );
      const last = value(
        await ask(d, ([s, c]) => conclave.timeline(s, c, { limit: 1 }), [spaceId, channelId] as const),
      );
      expect(last.posts[0]?.quote).toEqual({ authorName: 'Dave', text: 'm1' });
      expect(
        await ask(d, ([s, c]) => conclave.timeline(s, c, { limit: 0 }), [spaceId, channelId] as const),
      ).toMatchObject({
        ok: false,
        error: { code: 'invalid' },
      });
    } finally {
      await dave.close();
    }
  });

  it('without SharedWorker: dedicated workers elect one writer, the others forward to it, and a closed writer is replaced', async () => {
    const carol = await browser.newContext();
    try {
      const c1 = await carol.newPage();
      await open(c1, '?fallback');
      await expect
        .poll(async () => value(await ask(c1, () => conclave.hostInfo())).writer, { timeout: 10_000 })
        .toBe(true);
      expect(value(await ask(c1, () => conclave.hostInfo()))).toEqual({
        kind: 'dedicated',
        tabs: 1,
        writer: true,
      });
      value(await ask(c1, (r) => conclave.setRelays([r]), relay.multiaddr));
      value(await ask(c1, () => conclave.createIdentity('Carol')));
      const { spaceId } = value(await ask(c1, () => conclave.createSpace('Fallback')));
      const { channelId } = value(await ask(c1, (s) => conclave.createChannel(s, 'chat', 'chat'), spaceId));
      value(await ask(c1, ([s, c]) => conclave.post(s, c, 'from the writer'), [spaceId, channelId] as const));

      // A second tab: its worker is not the writer and forwards every call to it.
      const c2 = await carol.newPage();
      await open(c2, '?fallback');
      expect(value(await ask(c2, () => conclave.hostInfo())).writer).toBe(false);
      const seen = value(await ask(c2, ([s, c]) => conclave.posts(s, c), [spaceId, channelId] as const));
      expect(seen.map((p) => p.text)).toEqual(['from the writer']);
      const fwd = value(
        await ask(c2, ([s, c]) => conclave.post(s, c, 'from the follower'), [spaceId, channelId] as const),
      );
      expect(fwd.status).toBe('sent');

      // The writer's tab closes: a call made right then waits, and the next worker, elected,
      // opens the peer from storage and answers it.
      await c1.close();
      const late = value(
        await ask(c2, ([s, c]) => conclave.post(s, c, 'during the handover'), [spaceId, channelId] as const),
      );
      expect(late.status).toBe('sent');
      expect(value(await ask(c2, () => conclave.hostInfo())).writer).toBe(true);
      const all = value(await ask(c2, ([s, c]) => conclave.posts(s, c), [spaceId, channelId] as const));
      expect(all.map((p) => p.text)).toEqual(['from the writer', 'from the follower', 'during the handover']);
    } finally {
      await carol.close();
    }
  });
});
