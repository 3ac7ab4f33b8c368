/**
 * A peer that survives being suspended (issue 7), in real Chromium against a real relay: the
 * app is hidden (page visibility emulated) and its network cut — every connection to the relay
 * killed through a proxy, and the browser set offline — while another person posts 200
 * messages; visible and online again, it shows "Catching up", then all 200 in order, and the
 * indicator goes. A message typed just before the app was hidden reaches the other person; a
 * reply to Alice and a mention of her among the missed ones, taken in while she does not look
 * (online again, still hidden), become notifications, and nothing more once she looks.
 * With the SharedWorker host; as in the Android app (Capacitor's platform emulated: the
 * dedicated worker with its Web Locks election, though this Chromium has SharedWorker); and in a
 * browser without SharedWorker (the dedicated worker again, by feature detection).
 * Also: the desktop PWA's manifest (installable, shortcuts, the web+conclave protocol handler)
 * and the app joining from a protocol-handler URL, opening from a shortcut.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, launchChromium } from '../scripts/chromium.js';
import { type SpawnedRelay, spawnRelay, tempDir } from '../relay/src/testing/spawn.js';
import { type NetCut, netCut, viaProxy } from './netcut.js';
import type { PostId } from '../shared/src/protocol/index.js';
import { type NodePerson, joinAsNodePerson } from './node-peer.js';

const ROOT = join(import.meta.dirname, '..');
const MISSED = 200;

const data = tempDir();
const web = tempDir('conclave-web-');
let relay: SpawnedRelay;
let proxy: NetCut;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
  const { build } = await import('vite');
  await build({
    configFile: join(ROOT, 'vite.config.ts'),
    logLevel: 'error',
    build: { outDir: web.dir, emptyOutDir: true },
  });
  relay = await spawnRelay({ dataDir: data.dir, args: ['--web-root', web.dir] });
  proxy = await netCut(Number(/\/tcp\/(\d+)\//.exec(relay.multiaddr)?.[1]));
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser.close();
  await proxy.close();
  await relay.stop();
  data.cleanup();
  web.cleanup();
});

/**
 * How the page's host runs: `shared` (this Chromium as it is: the SharedWorker), `android` (as in
 * the Android app: Capacitor's bridge present, so the dedicated worker), `fallback` (a browser
 * without SharedWorker: the dedicated worker by feature detection).
 */
type HostCase = 'shared' | 'android' | 'fallback';

/** A browser profile whose app reaches the relay only through the proxy. */
async function profile(host: HostCase = 'shared'): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  await context.route('**/config.json', (route) =>
    route.fulfill({ json: { relays: [viaProxy(relay.multiaddr, proxy.port)] } }),
  );
  // Capacitor's Android bridge, as the native app injects it: the app sees platform `android`.
  if (host === 'android') await context.addInitScript(() => Object.assign(window, { androidBridge: {} }));
  if (host === 'fallback') await context.addInitScript(() => Reflect.deleteProperty(window, 'SharedWorker'));
  // The browser's notifications, allowed, and recorded as the system would show them.
  await context.addInitScript(() => {
    const shown: string[] = [];
    // Called with `new` by the app: a plain function is a constructor.
    function Notification(title: string, options?: { body?: string }): void {
      shown.push(`${title}: ${options?.body ?? ''}`);
    }
    Object.assign(window, {
      shownNotifications: shown,
      Notification: Object.assign(Notification, { permission: 'granted' }),
    });
  });
  const page = await context.newPage();
  await page.goto(`${relay.httpUrl}/`);
  return { context, page };
}

async function onboard(page: Page, name: string): Promise<void> {
  await page.getByLabel('Display name').fill(name);
  await page.getByRole('button', { name: 'Create identity' }).click();
  await expect.poll(() => page.getByRole('navigation', { name: 'Spaces' }).isVisible()).toBe(true);
}

const texts = (page: Page) =>
  page.getByRole('list', { name: 'Messages' }).locator('li .text').allTextContents();

/** Emulates the page going to the background or coming back, as a phone or a minimised window does. */
async function setVisible(page: Page, visible: boolean): Promise<void> {
  await page.evaluate((v) => {
    Object.defineProperty(document, 'visibilityState', {
      configurable: true,
      get: () => (v ? 'visible' : 'hidden'),
    });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => !v });
    document.dispatchEvent(new Event('visibilitychange'));
  }, visible);
}

/** Records whether "Catching up" was ever shown (it may show for less than a poll's interval). */
async function recordCatchingUp(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen = { shown: false };
    Object.assign(window, { catchingUpSeen: seen });
    const check = () => {
      for (const el of document.querySelectorAll('[role="status"]'))
        if (el.textContent.includes('Catching up')) seen.shown = true;
    };
    new MutationObserver(check).observe(document.body, {
      childList: true,
      subtree: true,
      characterData: true,
    });
  });
}

const notifications = (page: Page) =>
  page.evaluate(() => [...(window as unknown as { shownNotifications: string[] }).shownNotifications]);

const catchingUpSeen = (page: Page) =>
  page.evaluate(() => (window as unknown as { catchingUpSeen: { shown: boolean } }).catchingUpSeen.shown);

async function survivesSuspension(host: HostCase, space: string): Promise<void> {
  const { context, page } = await profile(host);
  let bob: NodePerson | undefined;
  try {
    // The host this page runs: a dedicated worker of the page, or the SharedWorker.
    const dedicated = () => page.workers().some((w) => w.url().includes('worker-entry'));
    await onboard(page, 'Alice');
    await expect.poll(dedicated).toBe(host !== 'shared');
    await page.getByLabel('Space name').fill(space);
    await page.getByRole('button', { name: 'Create space' }).click();
    await page.getByLabel('Channel name').fill('general');
    await page.getByRole('button', { name: 'Create channel' }).click();
    await page.getByRole('button', { name: 'Create invite' }).click();
    const link = await page.getByLabel('New invite link').inputValue();
    await page.getByRole('button', { name: 'Close' }).click();
    bob = await joinAsNodePerson(link, relay.multiaddr, 'Bob');
    const b = bob;
    await b.peer.post(b.space, b.channel, 'hello Alice');
    await expect.poll(() => texts(page)).toEqual(['hello Alice']);
    await page.getByLabel('Message', { exact: true }).fill('hi Bob');
    await page.getByLabel('Message', { exact: true }).press('Enter');
    await expect.poll(() => b.texts()).toContain('hi Bob');
    const hiBob = b.peer
      .state(b.space)
      .postsIn(b.channel, null)
      .find((p) => p.text === 'hi Bob')?.postId as PostId;

    // Typed just before the app goes to the background, whose network then dies.
    await page.getByLabel('Message', { exact: true }).fill('typed before hiding');
    await page.getByLabel('Message', { exact: true }).press('Enter');
    await setVisible(page, false);
    proxy.cut();
    await context.setOffline(true);
    await expect
      .poll(async () => (await page.getByRole('status').first().textContent()) ?? '')
      .toContain('Offline');

    // Among what Alice misses: a reply to her, and a mention of her.
    await b.peer.post(b.space, b.channel, 'sure, Alice', { reply: hiBob });
    for (let i = 0; i < MISSED; i++) await b.peer.post(b.space, b.channel, `missed ${i}`);
    await b.peer.post(b.space, b.channel, '@alice look at this');
    await b.sent();
    expect((await texts(page)).filter((t) => t.startsWith('missed '))).toEqual([]);

    await recordCatchingUp(page);
    proxy.restore();
    await context.setOffline(false);
    // Online again while still hidden: the catch-up notifies the reply and the mention (the
    // browser's notifications; in the Android app, Local Notifications, which need the native side).
    if (host !== 'android') {
      await expect
        .poll(() => notifications(page), { timeout: 90_000 })
        .toEqual([
          `Bob replied to you in ${space}: sure, Alice`,
          `Bob mentioned you in ${space}: @alice look at this`,
        ]);
    }
    await setVisible(page, true);

    const expected = Array.from({ length: MISSED }, (_, i) => `missed ${i}`);
    await expect
      .poll(async () => (await texts(page)).filter((t) => t.startsWith('missed ')), { timeout: 90_000 })
      .toEqual(expected);
    expect(await catchingUpSeen(page)).toBe(true);
    await expect.poll(() => page.getByRole('status').filter({ hasText: 'Catching up' }).count()).toBe(0);
    await expect.poll(() => b.texts(), { timeout: 60_000 }).toContain('typed before hiding');
    expect(b.texts().indexOf('typed before hiding')).toBeLessThan(b.texts().indexOf('missed 0'));
    // Seen again: nothing more was notified.
    expect(await notifications(page)).toHaveLength(host === 'android' ? 0 : 2);
  } finally {
    await bob?.close();
    await context.close();
  }
}

describe('a peer that survives being suspended', () => {
  it('SharedWorker host: hidden and cut off while 200 messages are posted, then catches up', async () => {
    await survivesSuspension('shared', 'Club');
  }, 300_000);

  it('as in the Android app (dedicated worker): the same', async () => {
    await survivesSuspension('android', 'Phone club');
  }, 300_000);

  it('in a browser without SharedWorker (dedicated worker): the same', async () => {
    await survivesSuspension('fallback', 'Old browser club');
  }, 300_000);
});

/**
 * The desktop PWA, in a persistent Chromium profile (an incognito one always reports
 * `in-incognito`): Chromium's installability verdict over CDP, the manifest's window controls
 * overlay, shortcuts and protocol handler; a shortcut's URL and an invite opened through the
 * protocol handler (`/?invite=web+conclave://join/…`, the URL the browser opens) do what they say.
 */
describe('the installed desktop app', () => {
  const dir = tempDir('conclave-profile-');
  let installed: BrowserContext;
  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    installed = await chromium.launchPersistentContext(dir.dir, {
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS],
    });
    await installed.route('**/config.json', (route) =>
      route.fulfill({ json: { relays: [viaProxy(relay.multiaddr, proxy.port)] } }),
    );
  });
  afterAll(async () => {
    await installed.close();
    dir.cleanup();
  });

  it('is installable with shortcuts and a web+conclave handler; joins from an invite the handler opens', async () => {
    const page = await installed.newPage();
    await page.goto(`${relay.httpUrl}/`);
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    const cdp = await installed.newCDPSession(page);
    const verdict = (await cdp.send('Page.getInstallabilityErrors')) as { installabilityErrors: unknown[] };
    expect(verdict.installabilityErrors).toEqual([]);
    const got = (await cdp.send('Page.getAppManifest')) as { errors: unknown[]; data: string };
    expect(got.errors).toEqual([]);
    const manifest = JSON.parse(got.data) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      display_override: ['window-controls-overlay', 'standalone'],
      protocol_handlers: [{ protocol: 'web+conclave', url: '/?invite=%s' }],
    });
    const shortcuts = manifest.shortcuts as { name: string; url: string }[];
    expect(shortcuts.map((s) => [s.name, s.url])).toEqual([
      ['New message', '/?do=message'],
      ['Join space', '/?do=join'],
    ]);

    // An invite opened through the protocol handler, while its Space's admin is online elsewhere.
    const { context: aliceContext, page: alice } = await profile();
    try {
      await onboard(alice, 'Alice');
      await alice.getByLabel('Space name').fill('Desk club');
      await alice.getByRole('button', { name: 'Create space' }).click();
      await alice.getByLabel('Channel name').fill('general');
      await alice.getByRole('button', { name: 'Create channel' }).click();
      await alice.getByRole('button', { name: 'Create invite' }).click();
      const web = await alice.getByLabel('New invite link').inputValue();
      await alice.getByRole('button', { name: 'Close' }).click();
      const payload = web.split('#join=')[1] ?? '';
      const handlerUrl = `${relay.httpUrl}/?invite=${encodeURIComponent(`web+conclave://join/${payload}`)}`;
      await page.goto(handlerUrl);
      await onboard(page, 'Dana');
      await expect
        .poll(() => page.getByRole('region', { name: 'Desk club' }).isVisible(), { timeout: 60_000 })
        .toBe(true);
      expect(new URL(page.url()).search).toBe('');

      // The "Join space" shortcut: the cursor in the invite link field.
      await page.goto(`${relay.httpUrl}/?do=join`);
      await expect
        .poll(() => page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? null))
        .toBe('Invite link');
    } finally {
      await aliceContext.close();
    }
  });
});
