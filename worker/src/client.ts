/**
 * The page's side: connects to the worker and returns the typed API (api.ts). Which host runs
 * is chosen at start (platform.ts): the dedicated worker in the Android app, else a SharedWorker
 * where the browser has one. One connection per page: every caller asking for the same worker
 * (the app, its lifecycle) shares it, so a page never starts a second dedicated worker.
 */
import { Capacitor } from '@capacitor/core';
import * as Comlink from 'comlink';
import type { ConclaveApi, LiveEvent } from './api.js';
import { type HostKind, chooseHost } from './platform.js';

export type Api = Comlink.Remote<ConclaveApi>;

const connections = new Map<string, Api>();

export function connect(
  url: string | URL,
  kind: HostKind = chooseHost(Capacitor.getPlatform(), typeof SharedWorker === 'function'),
): Api {
  const key = `${kind} ${url.toString()}`;
  const open = connections.get(key);
  if (open !== undefined) return open;
  const api =
    kind === 'shared'
      ? Comlink.wrap<ConclaveApi>(new SharedWorker(url, { type: 'module', name: 'conclave' }).port)
      : Comlink.wrap<ConclaveApi>(new Worker(url, { type: 'module', name: 'conclave' }));
  connections.set(key, api);
  return api;
}

/** Subscribes to live events; unsubscribes when the tab goes away. Returns the unsubscriber. */
export async function onLive(api: Api, listener: (e: LiveEvent) => void): Promise<() => Promise<void>> {
  const id = await api.subscribe(Comlink.proxy(listener));
  const stop = () => api.unsubscribe(id);
  addEventListener('pagehide', () => void stop(), { once: true });
  return stop;
}
