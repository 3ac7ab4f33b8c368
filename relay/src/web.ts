/**
 * The relay serves the built web app too (ARCHITECTURE.md section 1), so one process is a whole
 * local deployment: files under `--web-root` by GET, `index.html` for the root and any path
 * without a file (the app routes itself), and `/config.json` naming this relay, which the app
 * uses as its relays on first run. Paths are confined to the folder.
 */
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** Answers a GET for the web app; false when the request is not one (the caller answers it). */
export async function serveWeb(
  root: string,
  relays: readonly string[],
  req: IncomingMessage,
  res: ServerResponse,
): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  let path: string;
  try {
    path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
  } catch {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end('bad request\n');
    return true;
  }
  if (path === '/config.json') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
    res.end(JSON.stringify({ relays }));
    return true;
  }
  const base = resolve(root);
  let file = resolve(join(base, normalize(path)));
  if (file !== base && !file.startsWith(base + sep)) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return true;
  }
  let isFile = false;
  try {
    isFile = (await stat(file)).isFile();
  } catch {
    isFile = false;
  }
  // The app's own routes (and the root) get the page; missing assets are 404.
  if (!isFile) {
    if (extname(path) !== '') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return true;
    }
    file = join(base, 'index.html');
  }
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return true;
  }
  const type = TYPES[extname(file)] ?? 'application/octet-stream';
  const immutable = file.includes(`${sep}assets${sep}`);
  res.writeHead(200, {
    'content-type': type,
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
