/**
 * Runs one join and one commit of a Space in a real Chromium page (Debian's /usr/bin/chromium
 * through playwright-core), with the page bundle built here by esbuild and served from
 * 127.0.0.1. Used by `bench:mls` for the browser figures the issue asks for.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import type { PageInput, PageResult } from './mls.page.js';

export const CHROMIUM = process.env.CONCLAVE_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface ChromiumInput {
  readonly welcome: Uint8Array;
  readonly keyPackage: Uint8Array;
  readonly initPrivateKey: Uint8Array;
  readonly hpkePrivateKey: Uint8Array;
  readonly signaturePrivateKey: Uint8Array;
  readonly memberState: Uint8Array;
  readonly commit: Uint8Array;
}

export async function mlsInChromium(input: ChromiumInput): Promise<PageResult> {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('./mls.page.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    write: false,
    logLevel: 'silent',
  });
  const js = bundle.outputFiles[0]?.text ?? '';
  const html =
    '<!doctype html><meta charset="utf-8"><title>bench</title><script type="module" src="/page.js"></script>';
  const server = createServer((req, res) => {
    if (req.url === '/page.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(js);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(html);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => 'conclaveMlsBench' in globalThis);
    const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    const arg: PageInput = {
      welcome: b64(input.welcome),
      keyPackage: b64(input.keyPackage),
      initPrivateKey: b64(input.initPrivateKey),
      hpkePrivateKey: b64(input.hpkePrivateKey),
      signaturePrivateKey: b64(input.signaturePrivateKey),
      memberState: b64(input.memberState),
      commit: b64(input.commit),
    };
    return await page.evaluate(
      (a) =>
        (
          globalThis as unknown as { conclaveMlsBench: (x: PageInput) => Promise<PageResult> }
        ).conclaveMlsBench(a),
      arg,
    );
  } finally {
    await browser.close();
    server.close();
  }
}
