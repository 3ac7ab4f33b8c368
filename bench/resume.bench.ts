/**
 * bench:resume — the app coming back after missing 1,000 messages (issue 7), in real Chromium
 * against a real relay (the built app, served by the relay):
 * - Alice's app is hidden (page visibility emulated) and its network cut: a loopback proxy
 *   between her browser and the relay kills her connections and refuses new ones;
 * - Bob (a Node peer, straight to the relay) posts 1,000 messages in the channel she has open;
 * - the proxy lets connections through again and the app is made visible; the figure is the
 *   time from "visible again" to the last of the 1,000 rendered in her timeline (both read
 *   from the page's clock: the visibility change and a MutationObserver on the timeline);
 * - bytes per missed message: every byte the relay sent to her browser through the proxy from
 *   "visible again" until the last one rendered (TCP payload: WebSocket frames, Noise, yamux,
 *   the reconnection's handshakes and anything else the worker pulled), over the sealed size
 *   of Bob's 1,000 ops as his device stored them.
 *
 * Run: npm run bench:resume   (BENCH_RESUME_MISSED changes the count.)
 * Last line: {"resume1000Ms","bytesPerMissedRatio"}
 */
import os from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { bytesKey } from '../shared/src/protocol/ids.js';
import { spawnRelay, tempDir } from '../relay/src/testing/spawn.js';
import { launchChromium } from '../scripts/chromium.js';
import { netCut, viaProxy } from '../e2e/netcut.js';
import { joinAsNodePerson } from '../e2e/node-peer.js';

const ROOT = join(import.meta.dirname, '..');
const MISSED = Number(process.env.BENCH_RESUME_MISSED ?? 1000);
const log = (s: string) => process.stdout.write(`${s}\n`);

async function setVisible(page: Page, visible: boolean): Promise<void> {
  await page.evaluate((v) => {
    // Values, not getters: tsx names functions with a helper the page does not have.
    Object.defineProperty(document, 'visibilityState', {
      configurable: true,
      value: v ? 'visible' : 'hidden',
    });
    Object.defineProperty(document, 'hidden', { configurable: true, value: !v });
    (window as unknown as { visibleAt?: number }).visibleAt = performance.now();
    document.dispatchEvent(new Event('visibilitychange'));
  }, visible);
}

async function main(): Promise<void> {
  log(
    `bench:resume on ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, node ${process.version}`,
  );
  const web = tempDir('conclave-bench-resume-');
  const data = tempDir();
  const { build } = await import('vite');
  await build({ configFile: join(ROOT, 'vite.config.ts'), logLevel: 'error', build: { outDir: web.dir } });
  const relay = await spawnRelay({ dataDir: data.dir, args: ['--web-root', web.dir] });
  const proxy = await netCut(Number(/\/tcp\/(\d+)\//.exec(relay.multiaddr)?.[1]));
  const browser = await launchChromium();
  const context = await browser.newContext();
  await context.route('**/config.json', (route) =>
    route.fulfill({ json: { relays: [viaProxy(relay.multiaddr, proxy.port)] } }),
  );
  const page = await context.newPage();
  let bob: Awaited<ReturnType<typeof joinAsNodePerson>> | undefined;
  try {
    await page.goto(`${relay.httpUrl}/`);
    await page.getByLabel('Display name').fill('Alice');
    await page.getByRole('button', { name: 'Create identity' }).click();
    await page.getByLabel('Space name').fill('Bench');
    await page.getByRole('button', { name: 'Create space' }).click();
    await page.getByLabel('Channel name').fill('general');
    await page.getByRole('button', { name: 'Create channel' }).click();
    await page.getByRole('button', { name: 'Create invite' }).click();
    const link = await page.getByLabel('New invite link').inputValue();
    await page.getByRole('button', { name: 'Close' }).click();
    bob = await joinAsNodePerson(link, relay.multiaddr, 'Bob');
    await bob.peer.post(bob.space, bob.channel, 'warm-up');
    await page.getByText('warm-up', { exact: true }).waitFor({ timeout: 60_000 });

    await setVisible(page, false);
    proxy.cut();
    const had = new Set<string>();
    for await (const s of bob.storage.listOps(bob.space)) had.add(bytesKey(s.opId));
    const t0 = performance.now();
    for (let i = 0; i < MISSED; i++) await bob.peer.post(bob.space, bob.channel, `missed ${i}`);
    await bob.sent();
    let sealedBytes = 0;
    let ops = 0;
    for await (const s of bob.storage.listOps(bob.space)) {
      if (had.has(bytesKey(s.opId))) continue;
      sealedBytes += s.sealed.length;
      ops++;
    }
    log(
      `Bob posted ${MISSED} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${ops} ops, ` +
        `${sealedBytes} sealed bytes (${(sealedBytes / ops).toFixed(0)} per op)`,
    );

    const last = `missed ${MISSED - 1}`;
    await page.evaluate((lastText) => {
      const w = window as unknown as {
        lastAt?: number;
        firstAt?: number;
        shownAt?: number;
        clearedAt?: number;
      };
      const list = document.querySelector('ol[aria-label="Messages"]');
      new MutationObserver(() => {
        const now = performance.now();
        const shown = [...document.querySelectorAll('[role="status"]')].some((el) =>
          el.textContent.includes('Catching up'),
        );
        if (shown) w.shownAt ??= now;
        else if (w.shownAt !== undefined) w.clearedAt ??= now;
        const rows = [...(list?.querySelectorAll('li .text') ?? [])].map((e) => e.textContent);
        // The first missed message on screen, whichever: a reader at the bottom of a window that
        // a catch-up outgrew is shown the newest page, where 'missed 0' never appears.
        if (rows.some((r) => r.startsWith('missed '))) w.firstAt ??= now;
        if (rows.includes(lastText)) w.lastAt ??= now;
      }).observe(document.body, { childList: true, subtree: true, characterData: true });
    }, last);
    const pushes = async (): Promise<number> => {
      const text = await (await fetch(`${relay.httpUrl}/metrics`)).text();
      return Number(/^conclave_relay_pushes_total(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? NaN);
    };
    const pushesBefore = await pushes();
    const downBefore = proxy.bytesDown;
    proxy.restore();
    await setVisible(page, true);
    await page.waitForFunction(() => (window as unknown as { lastAt?: number }).lastAt !== undefined, null, {
      timeout: 120_000,
      polling: 50,
    });
    const down = proxy.bytesDown - downBefore;
    const pushed = (await pushes()) - pushesBefore;
    // No named functions inside `evaluate`: tsx names them with a helper the page does not have.
    const t = await page.evaluate(() => {
      const w = window as unknown as {
        visibleAt: number;
        lastAt: number;
        firstAt?: number;
        shownAt?: number;
        clearedAt?: number;
      };
      return {
        visible: w.visibleAt,
        last: w.lastAt,
        first: w.firstAt,
        shown: w.shownAt,
        cleared: w.clearedAt,
      };
    });
    const since = (at: number | undefined) => (at === undefined ? null : Math.round(at - t.visible));
    const r = {
      ms: t.last - t.visible,
      first: since(t.first),
      shown: since(t.shown),
      cleared: since(t.cleared),
    };
    const rendered = (
      await page.getByRole('list', { name: 'Messages' }).locator('li .text').allTextContents()
    ).filter((t) => t.startsWith('missed '));
    // The timeline shows a window (the newest page once many arrived): what it shows must be
    // the last messages, consecutive, in order.
    const offset = MISSED - rendered.length;
    const inOrder = rendered.length > 0 && rendered.every((t, i) => t === `missed ${offset + i}`);
    const resumeMs = Math.round(r.ms);
    const ratio = Number((down / sealedBytes).toFixed(3));
    log(
      `visible again → "Catching up" shown at ${r.shown ?? 'never'} ms, first missed message rendered at ` +
        `${r.first ?? '?'} ms, last at ${resumeMs} ms (the ${rendered.length} shown are the last, in order: ${inOrder}); ` +
        `"Catching up" cleared at ${r.cleared ?? 'not yet'} ms`,
    );
    log(
      `downloaded ${down} bytes for ${sealedBytes} sealed bytes: ${(down / MISSED).toFixed(0)} B per missed message, ${ratio}× sealed`,
    );
    log(`the relay pushed ${pushed} mailbox messages to subscribers meanwhile (the rest came as read pages)`);
    log(JSON.stringify({ resume1000Ms: resumeMs, bytesPerMissedRatio: ratio }));
  } finally {
    await bob?.close();
    await browser.close();
    await proxy.close();
    await relay.stop();
    web.cleanup();
    data.cleanup();
  }
}

await main();
