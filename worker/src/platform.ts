/**
 * Which worker host a page starts (ARCHITECTURE.md section 11), chosen once at start from the
 * Capacitor platform and what the browser offers:
 * - `android` (Capacitor's Android WebView): the dedicated worker with the Web Locks election.
 *   Android's WebView has had no SharedWorker, and where a newer one exposes it, its life is
 *   tied to one WebView process anyway; the dedicated path is the one tested for Android.
 * - anything else (iOS WKWebView, desktop and mobile browsers, the installed PWA): one
 *   SharedWorker for every tab when the browser has it, else the dedicated path.
 */
export type HostKind = 'shared' | 'dedicated';

/** `platform` as `Capacitor.getPlatform()` names it: `android`, `ios` or `web`. */
export function chooseHost(platform: string, hasSharedWorker: boolean): HostKind {
  if (platform === 'android') return 'dedicated';
  return hasSharedWorker ? 'shared' : 'dedicated';
}
