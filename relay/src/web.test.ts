/**
 * The relay's web app serving (web.ts): files by GET, the page for the app's own routes,
 * `/config.json` naming the relay, 404 for missing assets, and nothing outside the folder.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './testing/spawn.js';
import { serveWeb } from './web.js';

const dir = tempDir('conclave-webroot-');
const outside = tempDir('conclave-outside-');
let server: http.Server;
let port = 0;

function get(
  path: string,
  method = 'GET',
): Promise<{ status: number; type: string; cache: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers['content-type']),
          cache: String(res.headers['cache-control']),
          body,
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  mkdirSync(join(dir.dir, 'assets'));
  writeFileSync(join(dir.dir, 'index.html'), '<!doctype html><title>app</title>');
  writeFileSync(join(dir.dir, 'assets', 'app-1234.js'), 'console.log(1)');
  writeFileSync(join(outside.dir, 'secret.txt'), 'do not serve');
  server = http.createServer((req, res) => {
    void serveWeb(dir.dir, ['/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWTest'], req, res).then((served) => {
      if (!served) {
        res.writeHead(405);
        res.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  dir.cleanup();
  outside.cleanup();
});

describe('the relay serves the web app', () => {
  it('serves the page, its assets (cached for good) and its own routes', async () => {
    const root = await get('/');
    expect(root).toMatchObject({ status: 200, body: '<!doctype html><title>app</title>', cache: 'no-cache' });
    expect(root.type).toContain('text/html');
    const js = await get('/assets/app-1234.js');
    expect(js).toMatchObject({ status: 200, body: 'console.log(1)' });
    expect(js.type).toContain('text/javascript');
    expect(js.cache).toContain('immutable');
    expect((await get('/space/some-route')).body).toContain('<title>app</title>');
  });

  it('names this relay in /config.json', async () => {
    const c = await get('/config.json');
    expect(JSON.parse(c.body)).toEqual({ relays: ['/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWTest'] });
  });

  it('answers 404 for a missing asset, and never serves a file outside its folder', async () => {
    expect((await get('/assets/missing.js')).status).toBe(404);
    const rel = `/../${outside.dir.split('/').at(-1) ?? ''}/secret.txt`;
    for (const p of [rel, '/..%2f..%2fetc%2fpasswd', '/%2e%2e/%2e%2e/etc/hostname']) {
      const r = await get(p);
      expect(r.body).not.toContain('do not serve');
      expect(r.body).not.toContain('root:');
      expect(r.status === 404 || r.body.includes('<title>app</title>')).toBe(true);
    }
    expect((await get('/', 'POST')).status).toBe(405);
    expect((await get('/%E0%A4%A')).status).toBe(400);
  });
});
