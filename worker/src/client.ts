/**
 * The page's side: connects to the worker and returns the typed API (api.ts). A SharedWorker
 * where the browser has one, else a dedicated worker.
 */
import * as Comlink from 'comlink';
import type { ConclaveApi, LiveEvent } from './api.js';

export type Api = Comlink.Remote<ConclaveApi>;

export function connect(url: string | URL): Api {
  if (typeof SharedWorker === 'function') {
    const w = new SharedWorker(url, { type: 'module', name: 'conclave' });
    return Comlink.wrap<ConclaveApi>(w.port);
  }
  return Comlink.wrap<ConclaveApi>(new Worker(url, { type: 'module', name: 'conclave' }));
}

/** Subscribes to live events; unsubscribes when the tab goes away. Returns the unsubscriber. */
export async function onLive(api: Api, listener: (e: LiveEvent) => void): Promise<() => Promise<void>> {
  const id = await api.subscribe(Comlink.proxy(listener));
  const stop = () => api.unsubscribe(id);
  addEventListener('pagehide', () => void stop(), { once: true });
  return stop;
}
