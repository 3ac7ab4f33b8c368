/**
 * The PWA, in a persistent Chromium profile (an incognito one always reports `in-incognito`):
 * Chromium's own installability verdict over CDP has no errors, and once the service worker
 * has precached the shell, a reload with the network cut opens the app with its Spaces.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS } from '../scripts/chromium.js';
import { type SpawnedRelay, spawnRelay, tempDir } from '../relay/src/testing/spawn.js';

const ROOT = join(import.meta.dirname, '..');

describe('the installable app', () => {
  const data = tempDir();
  const web = tempDir('conclave-web-');
  const profile = tempDir('conclave-profile-');
  let relay: SpawnedRelay;
  let context: BrowserContext;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
    const { build } = await import('vite');
    await build({
      configFile: join(ROOT, 'vite.config.ts'),
      logLevel: 'error',
      build: { outDir: web.dir, emptyOutDir: true },
    });
    relay = await spawnRelay({ dataDir: data.dir, args: ['--web-root', web.dir] });
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(profile.dir, {
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS],
    });
  });
  afterAll(async () => {
    await context.close();
    await relay.stop();
    for (const d of [data, web, profile]) d.cleanup();
  });

  it('is installable, and opens offline with its Spaces after a reload', async () => {
    const page = await context.newPage();
    await page.goto(`${relay.httpUrl}/`);
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    const cdp = await context.newCDPSession(page);
    const verdict = (await cdp.send('Page.getInstallabilityErrors')) as { installabilityErrors: unknown[] };
    expect(verdict.installabilityErrors).toEqual([]);
    const manifest = (await (await fetch(`${relay.httpUrl}/manifest.webmanifest`)).json()) as {
      name: string;
      display: string;
    };
    expect(manifest).toMatchObject({ name: 'Conclave', display: 'standalone' });

    await page.getByLabel('Display name').fill('Olive');
    await page.getByRole('button', { name: 'Create identity' }).click();
    await page.getByLabel('Space name').fill('Offline club');
    await page.getByRole('button', { name: 'Create space' }).click();
    await expect.poll(() => page.getByRole('button', { name: 'Offline club' }).isVisible()).toBe(true);
    // The page is controlled by the service worker once it claimed it (a reload at the latest).
    await page.reload();
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    await expect
      .poll(() => page.evaluate(() => navigator.serviceWorker.controller !== null), { timeout: 30_000 })
      .toBe(true);

    await context.setOffline(true);
    await page.reload();
    await expect
      .poll(() => page.getByRole('button', { name: 'Offline club' }).isVisible(), { timeout: 30_000 })
      .toBe(true);
    expect(await page.getByRole('status').first().textContent()).toContain('Offline');
    await context.setOffline(false);
  });
});
