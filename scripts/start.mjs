// `npm start`: a whole local deployment in one process tree. Builds the browser app (web/,
// worker/) into dist/web with Vite, then runs a Conclave relay on 127.0.0.1 with its data under
// ./.conclave/relay that also serves the app. Prints the URL to open, the relay's address and
// its health and metrics URLs, runs until Ctrl-C (or SIGTERM), then stops the relay cleanly.
// Two browser profiles opening the URL are two people; an invite link joins one to the other.
//
// Settings: CONCLAVE_RELAY_LISTEN (default /ip4/127.0.0.1/tcp/9090/ws), CONCLAVE_RELAY_HTTP
// (default 127.0.0.1:8080), and every other CONCLAVE_RELAY_* variable of `npm run relay -- --help`.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dataDir = join(root, '.conclave');
mkdirSync(dataDir, { recursive: true });

const out = (line) => process.stdout.write(`${line}\n`);
out(`Conclave ${version}: building the app…`);
const { build } = await import('vite');
await build({ configFile: join(root, 'vite.config.ts'), logLevel: 'warn' });
out(`Starting a local relay (data in ${join(dataDir, 'relay')})`);

const relay = spawn(
  process.execPath,
  [
    // As `npm run relay` (package.json): V8's young generation capped (relay/README.md, Memory).
    '--max-semi-space-size=4',
    '--experimental-websocket',
    '--import',
    join(root, 'scripts/node20.mjs'),
    '--import',
    'tsx',
    join(root, 'relay/src/main.ts'),
  ],
  {
    cwd: root,
    env: {
      ...process.env,
      CONCLAVE_RELAY_LISTEN: process.env.CONCLAVE_RELAY_LISTEN ?? '/ip4/127.0.0.1/tcp/9090/ws',
      CONCLAVE_RELAY_HTTP: process.env.CONCLAVE_RELAY_HTTP ?? '127.0.0.1:8080',
      CONCLAVE_RELAY_DATA: process.env.CONCLAVE_RELAY_DATA ?? join(dataDir, 'relay'),
      CONCLAVE_RELAY_LOG_LEVEL: process.env.CONCLAVE_RELAY_LOG_LEVEL ?? 'warn',
      CONCLAVE_RELAY_WEB_ROOT: process.env.CONCLAVE_RELAY_WEB_ROOT ?? join(root, 'dist', 'web'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);

let appUrl = '';
createInterface({ input: relay.stdout }).on('line', (line) => {
  if (line.startsWith('listening ')) out(`Relay address (for clients and other relays): ${line.slice(10)}`);
  else if (line.startsWith('http ')) {
    const url = line.slice(5);
    appUrl = `${url}/`;
    out(`Health: ${url}/healthz   Metrics: ${url}/metrics`);
  } else if (line === 'ready') {
    out(`Open Conclave: ${appUrl}`);
    out('Press Ctrl-C to stop.');
  } else out(line);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    relay.kill('SIGTERM');
  });
}
relay.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal === null ? 0 : 1);
});
