/**
 * The native apps' side of the lifecycle (lifecycle.ts), loaded only inside Capacitor: the App
 * plugin's `pause`/`resume`, the Network plugin's status, and Local Notifications.
 */
import { App } from '@capacitor/app';
import type { PluginListenerHandle } from '@capacitor/core';
import { LocalNotifications } from '@capacitor/local-notifications';
import { Network } from '@capacitor/network';
import type { Notifier, Signals } from './lifecycle.js';

export function capacitorSignals(): Signals {
  let active = true;
  return {
    seen: () => active,
    listen(on) {
      const handles: Promise<PluginListenerHandle>[] = [
        App.addListener('pause', () => {
          active = false;
          on('away');
        }),
        App.addListener('resume', () => {
          active = true;
          on('back');
        }),
        Network.addListener('networkStatusChange', (s) => {
          if (s.connected) on('online');
        }),
      ];
      for (const h of handles) h.catch(() => undefined);
      return () => {
        for (const h of handles) void h.then((x) => x.remove()).catch(() => undefined);
      };
    },
  };
}

/** Asks for the notification permission once, at start, while the person is looking (Android 13+, iOS). */
export async function askToNotify(): Promise<void> {
  const p = await LocalNotifications.checkPermissions();
  if (p.display === 'prompt' || p.display === 'prompt-with-rationale')
    await LocalNotifications.requestPermissions();
}

// Capacitor's notification ids are 32-bit integers; start from the time so a restart does not reuse them.
let nextId = Math.floor(Date.now() / 1000) % 1_000_000_000;

export const localNotifier: Notifier = async (shown) => {
  if ((await LocalNotifications.checkPermissions()).display !== 'granted') return;
  await LocalNotifications.schedule({
    notifications: shown.map((s) => ({ id: nextId++, title: s.title, body: s.body })),
  });
};
