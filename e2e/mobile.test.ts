/**
 * The Capacitor wrappers from a clean checkout: the files git would hand a fresh clone (tracked
 * and new, nothing ignored: no dist/, no copied web assets) in a temporary folder, then
 * `npm run mobile:sync` there (the Vite build and `cap sync`) and `cap doctor`. The web assets
 * synced into the Android and iOS projects must be the built app, byte for byte.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../relay/src/testing/spawn.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const checkout = tempDir('conclave-mobile-');
const dir = checkout.dir;

/** Every file under `root`, as paths relative to it, sorted. */
function files(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(root, p));
    }
  };
  walk(root);
  return out.sort();
}

let syncOutput = '';

beforeAll(async () => {
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    maxBuffer: 64 * 1024 * 1024,
  });
  for (const f of stdout.split('\0')) {
    // node_modules comes next, linked; a checkout whose node_modules is itself a link lists it.
    if (f === '' || f === 'node_modules' || f.startsWith('node_modules/')) continue;
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    try {
      cpSync(join(ROOT, f), join(dir, f));
    } catch (e) {
      // A file deleted in the working tree but still in the index: a clone would not have it either.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  // The installed dependencies, as `npm ci` would leave them.
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const r = await run('npm', ['run', 'mobile:sync'], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
  syncOutput = r.stdout + r.stderr;
}, 300_000);

afterAll(() => {
  checkout.cleanup();
});

describe('npm run mobile:sync from a clean checkout', () => {
  it('builds the app and copies it into android/ and ios/ byte for byte', () => {
    expect(syncOutput).toContain('Sync finished');
    const built = join(dir, 'dist/web');
    const expected = files(built);
    expect(expected).toContain('index.html');
    expect(expected).toContain('manifest.webmanifest');
    expect(expected.some((f) => f.startsWith('assets/') && f.endsWith('.js'))).toBe(true);
    for (const target of ['android/app/src/main/assets/public', 'ios/App/App/public']) {
      const copied = join(dir, target);
      // Capacitor adds its two Cordova shims beside the app; everything else is the build.
      expect(files(copied), target).toEqual([...expected, 'cordova.js', 'cordova_plugins.js'].sort());
      for (const f of expected) {
        expect(readFileSync(join(copied, f)).equals(readFileSync(join(built, f))), `${target}/${f}`).toBe(
          true,
        );
      }
    }
  });

  it('writes the app id and the plugins the app uses into both projects', () => {
    for (const config of [
      'android/app/src/main/assets/capacitor.config.json',
      'ios/App/App/capacitor.config.json',
    ]) {
      const c = JSON.parse(readFileSync(join(dir, config), 'utf8')) as { appId?: unknown; webDir?: unknown };
      expect(c.appId, config).toBe('org.conclave.app');
    }
    const plugins = JSON.parse(
      readFileSync(join(dir, 'android/app/src/main/assets/capacitor.plugins.json'), 'utf8'),
    ) as { pkg: string }[];
    expect(plugins.map((p) => p.pkg).sort()).toEqual([
      '@capacitor/app',
      '@capacitor/local-notifications',
      '@capacitor/network',
    ]);
    const spm = readFileSync(join(dir, 'ios/App/CapApp-SPM/Package.swift'), 'utf8');
    for (const p of ['CapacitorApp', 'CapacitorLocalNotifications', 'CapacitorNetwork'])
      expect(spm).toContain(p);
  });

  it('cap doctor finds the Android project healthy and every Capacitor package at one version', async () => {
    const r = await run('node', ['scripts/cap.mjs', 'doctor', 'android'], { cwd: dir });
    const out = r.stdout + r.stderr;
    expect(out).toContain('Android looking great');
    const installed = out.slice(out.indexOf('Installed Dependencies'));
    const versions = [...installed.matchAll(/@capacitor\/(cli|core|android|ios): (\S+)/g)].map((m) => m[2]);
    expect(versions).toHaveLength(4);
    expect(new Set(versions).size).toBe(1);
  });
});
