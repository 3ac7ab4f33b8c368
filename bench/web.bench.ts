/**
 * bench:web — the app in real Chromium against a real relay serving it:
 * - send→render: Alice presses Enter in her tab, Bob's tab (another profile) shows the message;
 *   500 messages one after another, p50 and p99 (both tabs share the browser's clock);
 * - interactive with 10,000 cached messages: a Node peer posts 10,000 messages into the
 *   channel, Bob's device takes them in, then Bob's tab is reloaded; time from the reload to
 *   the channel's last message shown with the composer ready;
 * - gzip sizes of the page's initial JS (what index.html loads) and of the worker bundle.
 *
 * Run: npm run bench:web   (BENCH_WEB_MESSAGES, BENCH_WEB_CACHED change the counts.)
 * Last line: {"sendRenderP50Ms","sendRenderP99Ms","interactive10kMs" (null when not reached),"pageJsGzipKiB","workerJsGzipKiB"}
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { nodeAead } from '../shared/src/crypto/aead.node.js';
import { nodeEd25519 } from '../shared/src/crypto/ed25519.node.js';
import { nodeSha256 } from '../shared/src/crypto/sha256.node.js';
import { parseInviteLink } from '../shared/src/mls/invite.js';
import { libp2pConnector } from '../shared/src/net/libp2p.js';
import { systemClock, webRng } from '../shared/src/ports/env.js';
import { memoryStorage } from '../shared/src/ports/storage.memory.js';
import { createSecrets } from '../shared/src/peer/identity.js';
import { Peer } from '../shared/src/peer/peer.js';
import type { ChannelId } from '../shared/src/protocol/index.js';
import { spawnRelay, tempDir } from '../relay/src/testing/spawn.js';
import { launchChromium } from '../scripts/chromium.js';

const ROOT = join(import.meta.dirname, '..');
const MESSAGES = Number(process.env.BENCH_WEB_MESSAGES ?? 500);
const CACHED = Number(process.env.BENCH_WEB_CACHED ?? 10_000);
const log = (s: string) => process.stdout.write(`${s}\n`);

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function onboard(page: Page, name: string): Promise<void> {
  await page.getByLabel('Display name').fill(name);
  await page.getByRole('button', { name: 'Create identity' }).click();
  await page.getByRole('navigation', { name: 'Spaces' }).waitFor();
}

/** A new invite link from the Space's invite dialog. */
async function invite(page: Page): Promise<string> {
  await page.getByRole('button', { name: 'Create invite' }).click();
  const dialog = page.getByRole('dialog');
  const link = await dialog.getByLabel('New invite link').inputValue();
  await dialog.getByRole('button', { name: 'Close' }).click();
  return link;
}

const messages = (page: Page) => page.getByRole('list', { name: 'Messages' }).locator('li .text');

async function main(): Promise<void> {
  log(
    `bench:web on ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, node ${process.version}; ` +
      `${MESSAGES} messages, ${CACHED} cached`,
  );
  const web = tempDir('conclave-bench-web-');
  const data = tempDir();
  const { build } = await import('vite');
  await build({ configFile: join(ROOT, 'vite.config.ts'), logLevel: 'error', build: { outDir: web.dir } });

  // Sizes: the scripts index.html loads, and the worker's entry chunk.
  const html = readFileSync(join(web.dir, 'index.html'), 'utf8');
  const pageScripts = [...html.matchAll(/src="\/([^"]+\.js)"/g)].map((m) => m[1] ?? '');
  const gz = (file: string) => gzipSync(readFileSync(join(web.dir, file))).length;
  const pageJsGzip = pageScripts.reduce((n, f) => n + gz(f), 0);
  const workerFile = readdirSync(join(web.dir, 'assets')).find((f) => f.startsWith('worker-entry-'));
  const workerJsGzip = workerFile === undefined ? NaN : gz(join('assets', workerFile));
  // libp2p is a chunk of its own, which the worker loads when it opens with relays.
  const libp2pFile = readdirSync(join(web.dir, 'assets')).find((f) => /^libp2p-.*\.js$/.test(f));
  const libp2pJsGzip = libp2pFile === undefined ? NaN : gz(join('assets', libp2pFile));
  log(
    `page JS (initial): ${(pageJsGzip / 1024).toFixed(1)} KiB gzip; worker: ${(workerJsGzip / 1024).toFixed(1)} KiB gzip ` +
      `(its libp2p chunk, loaded when it opens with relays: ${(libp2pJsGzip / 1024).toFixed(1)} KiB gzip)`,
  );

  const relay = await spawnRelay({ dataDir: data.dir, args: ['--web-root', web.dir] });
  const browser = await launchChromium();
  const alice = await browser.newContext();
  const bob = await browser.newContext();
  const a = await alice.newPage();
  const b = await bob.newPage();
  try {
    await a.goto(`${relay.httpUrl}/`);
    await onboard(a, 'Alice');
    await a.getByLabel('Space name').fill('Bench');
    await a.getByRole('button', { name: 'Create space' }).click();
    await a.getByLabel('Channel name').fill('general');
    await a.getByRole('button', { name: 'Create channel' }).click();
    const link = await invite(a);
    await b.goto(link);
    await onboard(b, 'Bob');
    await a.getByLabel('Message', { exact: true }).fill('warm-up');
    await a.getByLabel('Message', { exact: true }).press('Enter');
    await b.getByText('warm-up').waitFor({ timeout: 60_000 });

    // Send → render.
    await a.evaluate(() => {
      const sent = new Map<string, number>();
      Object.assign(globalThis, { sentAt: sent });
      document.addEventListener(
        'keydown',
        (e) => {
          const t = e.target as HTMLTextAreaElement;
          if (e.key === 'Enter' && t.getAttribute('aria-label') === 'Message') sent.set(t.value, Date.now());
        },
        true,
      );
    });
    await b.evaluate(() => {
      const seen = new Map<string, number>();
      Object.assign(globalThis, { seenAt: seen });
      const list = document.querySelector('ol[aria-label="Messages"]');
      new MutationObserver(() => {
        const now = Date.now();
        for (const el of list?.querySelectorAll('li .text') ?? []) {
          const text = el.textContent;
          if (!seen.has(text)) seen.set(text, now);
        }
      }).observe(list ?? document.body, { childList: true, subtree: true, characterData: true });
    });
    const latencies: number[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      const text = `message ${i}`;
      await a.getByLabel('Message', { exact: true }).fill(text);
      await a.getByLabel('Message', { exact: true }).press('Enter');
      await b.waitForFunction(
        (t) => (globalThis as unknown as { seenAt: Map<string, number> }).seenAt.has(t),
        text,
        {
          timeout: 30_000,
          polling: 'raf',
        },
      );
      const sent = await a.evaluate(
        (t) => (globalThis as unknown as { sentAt: Map<string, number> }).sentAt.get(t),
        text,
      );
      const seen = await b.evaluate(
        (t) => (globalThis as unknown as { seenAt: Map<string, number> }).seenAt.get(t),
        text,
      );
      if (sent !== undefined && seen !== undefined) latencies.push(seen - sent);
    }
    latencies.sort((x, y) => x - y);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    log(
      `send→render over ${latencies.length}: p50 ${p50} ms, p99 ${p99} ms, max ${latencies.at(-1) ?? NaN} ms`,
    );

    // 10,000 cached messages: a Node peer writes them, Bob's device takes them in, then reload.
    const secrets = await createSecrets(
      { ed25519: nodeEd25519(), clock: systemClock, rng: webRng },
      'Writer',
    );
    const connector = await libp2pConnector();
    const writer = await Peer.open({
      secrets,
      storage: memoryStorage(),
      connector,
      relays: [relay.multiaddr],
      ed25519: nodeEd25519(),
      aead: nodeAead(),
      clock: systemClock,
      rng: webRng,
      sha256: nodeSha256,
    });
    const link2 = await invite(a);
    const parsed = parseInviteLink(link2);
    if (!parsed.ok) throw new Error(parsed.message);
    await writer.goOnline();
    const joined = await writer.join(parsed.link, 60_000);
    if (joined.status !== 'joined') throw new Error('the writer was not admitted');
    const space = joined.spaceId;
    const channel = writer.state(space).channels()[0]?.channelId as ChannelId;
    const t0 = performance.now();
    for (let i = 0; i < CACHED; i++) await writer.post(space, channel, `cached ${i}`);
    while (writer.network.outbox > 0) await new Promise((r) => setTimeout(r, 100));
    log(`writer posted ${CACHED} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const last = `cached ${CACHED - 1}`;
    await b.getByText(last, { exact: true }).waitFor({ timeout: 600_000 });
    log(`Bob's device has all ${CACHED} (taken in live)`);
    await writer.close();
    await connector.stop();

    // Interactive: the channel's last message shown and the composer ready after a reload. A
    // run that does not get there in INTERACTIVE_LIMIT_MS reports null (and says so).
    const INTERACTIVE_LIMIT_MS = 120_000;
    const start = Date.now();
    let interactive: number | null = null;
    try {
      await b.reload();
      await b.getByRole('button', { name: 'Bench' }).waitFor({ timeout: INTERACTIVE_LIMIT_MS });
      log(`Spaces listed ${Date.now() - start} ms after the reload`);
      await b.getByRole('button', { name: 'Bench' }).click({ timeout: INTERACTIVE_LIMIT_MS });
      await b.getByText(last, { exact: true }).waitFor({ timeout: INTERACTIVE_LIMIT_MS });
      log(`last message shown ${Date.now() - start} ms after the reload`);
      await b.getByLabel('Message', { exact: true }).waitFor({ timeout: INTERACTIVE_LIMIT_MS });
      interactive = Date.now() - start;
      log(`interactive with ${CACHED} cached: ${interactive} ms (from reload, incl. choosing the Space)`);
    } catch (e) {
      log(
        `not interactive within ${INTERACTIVE_LIMIT_MS} ms of the reload: ${(e as Error).message.split('\n')[0] ?? ''}`,
      );
    }
    log(`${await messages(b).count()} rows rendered`);

    log(
      JSON.stringify({
        sendRenderP50Ms: p50,
        sendRenderP99Ms: p99,
        interactive10kMs: interactive,
        pageJsGzipKiB: Number((pageJsGzip / 1024).toFixed(1)),
        workerJsGzipKiB: Number((workerJsGzip / 1024).toFixed(1)),
      }),
    );
  } finally {
    await browser.close();
    await relay.stop();
    web.cleanup();
    data.cleanup();
  }
}

await main();
