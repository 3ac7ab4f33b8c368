/**
 * Starts real relay processes for tests and benchmarks (127.0.0.1 only): `npm run relay`'s
 * entry under Node with the flags libp2p needs on Node 20, waiting for its `ready` line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = resolve(import.meta.dirname, '../../..');

export interface SpawnedRelay {
  readonly multiaddr: string;
  readonly peerId: string;
  readonly httpUrl: string;
  readonly dataDir: string;
  readonly process: ChildProcess;
  /** stderr lines (JSON logs) seen so far. */
  readonly logs: string[];
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill9(): Promise<void>;
  /** The resident set size of the relay process, in bytes (Linux /proc). */
  rss(): Promise<number>;
}

export interface SpawnOptions {
  readonly dataDir?: string | undefined;
  readonly port?: number | undefined;
  readonly bootstrap?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Extra options for Node itself (e.g. `--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
}

/** Makes a temporary data folder; `cleanup` removes it. */
export function tempDir(prefix = 'conclave-relay-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function spawnRelay(options: SpawnOptions = {}): Promise<SpawnedRelay> {
  const dataDir = options.dataDir ?? tempDir().dir;
  const args = [
    // As `npm run relay` (package.json): V8's young generation capped (relay/README.md, Memory).
    '--max-semi-space-size=4',
    ...(options.nodeArgs ?? []),
    '--experimental-websocket',
    '--import',
    join(ROOT, 'scripts/node20.mjs'),
    '--import',
    'tsx',
    join(ROOT, 'relay/src/main.ts'),
    '--listen',
    `/ip4/127.0.0.1/tcp/${options.port ?? 0}/ws`,
    '--data',
    dataDir,
    '--http',
    '127.0.0.1:0',
    ...(options.bootstrap ?? []).flatMap((b) => ['--bootstrap', b]),
    ...(options.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, CONCLAVE_RELAY_LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  createInterface({ input: child.stderr }).on('line', (l) => {
    if (logs.length < 10_000) logs.push(l);
  });
  const exited = new Promise<number | null>((res) =>
    child.once('exit', (code) => {
      res(code);
    }),
  );
  const lines = createInterface({ input: child.stdout });
  let multiaddr = '';
  let httpUrl = '';
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => {
      rej(new Error(`relay did not start:\n${logs.join('\n')}`));
    }, 30_000);
    lines.on('line', (l) => {
      if (l.startsWith('listening ')) multiaddr ||= l.slice('listening '.length);
      else if (l.startsWith('http ')) httpUrl = l.slice('http '.length);
      else if (l === 'ready') {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`relay exited with ${String(code)} before ready:\n${logs.join('\n')}`));
    });
  });
  const peerId = multiaddr.split('/p2p/')[1] ?? '';
  return {
    multiaddr,
    peerId,
    httpUrl,
    dataDir,
    process: child,
    logs,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async rss() {
      const { readFile } = await import('node:fs/promises');
      const status = await readFile(`/proc/${String(child.pid)}/status`, 'utf8');
      const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
      return Number(kb ?? 0) * 1024;
    },
  };
}
