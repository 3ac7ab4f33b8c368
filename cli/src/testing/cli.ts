/**
 * Runs the `conclave` command as a separate process, as a person or a script would: each call
 * is a fresh process on its home folder (so every step is also a restart). For tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type SpawnedRelay, spawnRelay, tempDir } from '../../../relay/src/testing/spawn.js';

const ROOT = resolve(import.meta.dirname, '../../..');
// The bundle cli/build.mjs makes (rebuilt when a source changed): what `conclave` runs.
const build = (await import(join(ROOT, 'cli/build.mjs'))) as { ensureBundle: () => Promise<string> };
const NODE_ARGS = [
  '--experimental-websocket',
  '--no-warnings=ExperimentalWarning',
  '--import',
  join(ROOT, 'scripts/node20.mjs'),
  await build.ensureBundle(),
];

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON (with `--json`), or undefined when it is not JSON. */
  readonly json: unknown;
}

export interface CliOptions {
  /** Relays for this run (`CONCLAVE_RELAYS`); none when empty. */
  readonly relays?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

function envFor(home: string, o: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CONCLAVE_HOME: home, ...(o.env ?? {}) };
  delete env.CONCLAVE_PASSPHRASE;
  delete env.CONCLAVE_BACKUP_PASSPHRASE;
  Object.assign(env, o.env ?? {});
  env.CONCLAVE_RELAYS = (o.relays ?? []).join(',');
  return env;
}

/** Runs `conclave ARGS` on `home` and waits for it to exit. */
export function conclave(home: string, args: readonly string[], o: CliOptions = {}): Promise<CliRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, ...args], {
      cwd: ROOT,
      env: envFor(home, o),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`conclave ${args.join(' ')} did not finish in time\n${stderr}`));
    }, o.timeoutMs ?? 90_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolvePromise({ code, stdout, stderr, json });
    });
  });
}

/** A long-running `conclave` (serve): lines of stdout as they come, and a way to stop it. */
export interface CliProcess {
  readonly process: ChildProcess;
  readonly lines: string[];
  /** Resolves once a stdout line matches. */
  waitFor(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export function startConclave(home: string, args: readonly string[], o: CliOptions = {}): CliProcess {
  const child = spawn(process.execPath, [...NODE_ARGS, ...args], {
    cwd: ROOT,
    env: envFor(home, o),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) !== -1) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters) w();
  });
  child.stderr.resume();
  const exited = new Promise<number | null>((r) => {
    child.on('exit', (code) => {
      r(code);
    });
  });
  return {
    process: child,
    lines,
    waitFor(match, timeoutMs = 60_000) {
      return new Promise((res, rej) => {
        const check = () => {
          const l = lines.find(match);
          if (l !== undefined) {
            waiters.delete(check);
            clearTimeout(t);
            res(l);
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          rej(new Error(`no matching line in time; got:\n${lines.join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** A fingerprint of every file under `dir` (names, sizes, contents): equal means nothing was written. */
export function snapshot(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      h.update('absent');
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = statSync(p);
      h.update(`${n}:${st.size}:`);
      if (st.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/** The JSON a successful `--json` run printed; throws with its output when it failed. */
export function okJson<T>(r: CliRun): T {
  if (r.code !== 0) throw new Error(`exit ${String(r.code)}: ${r.stdout} ${r.stderr}`);
  return r.json as T;
}

/**
 * One relay process and a folder of homes for a test file: the relay starts before the file's
 * tests and stops after them, and both folders are removed. `run(who, args)` runs `conclave`
 * on `who`'s home with `--json`, through the relay.
 */
export function relayAndHomes(prefix: string): {
  readonly home: (name: string) => string;
  readonly run: (who: string, args: readonly string[]) => Promise<CliRun>;
  readonly relay: () => SpawnedRelay;
} {
  const dirs = { relay: tempDir(), homes: tempDir(prefix) };
  let relay: SpawnedRelay | undefined;
  const started = (): SpawnedRelay => {
    if (relay === undefined) throw new Error('the relay starts in beforeAll');
    return relay;
  };
  beforeAll(async () => {
    relay = await spawnRelay({ dataDir: dirs.relay.dir });
  });
  afterAll(async () => {
    await relay?.stop();
    for (const d of Object.values(dirs)) d.cleanup();
  });
  const home = (name: string) => join(dirs.homes.dir, name);
  return {
    home,
    run: (who, args) => conclave(home(who), [...args, '--json'], { relays: [started().multiaddr] }),
    relay: started,
  };
}
