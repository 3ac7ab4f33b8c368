/**
 * The host where the browser has no SharedWorker (Android WebView): every tab runs a dedicated
 * worker, and Web Locks elect one of them the writer (ARCHITECTURE.md section 11). The writer
 * opens the Peer; the others forward every call to it over a BroadcastChannel and relay its
 * live events to their tab. When the writer's tab closes, its lock is released and the next
 * worker in line opens the Peer from the same storage; calls made meanwhile wait for it and are
 * sent again to the new writer, so nothing a tab asked for is dropped.
 */
import type { ConclaveApi, LiveEvent } from './api.js';
import type { Host } from './host.js';

const LOCK = 'conclave-writer';
const CHANNEL = 'conclave-host';

type Message =
  | { readonly t: 'call'; readonly id: string; readonly method: string; readonly args: readonly unknown[] }
  | { readonly t: 'reply'; readonly id: string; readonly result: unknown }
  | { readonly t: 'event'; readonly event: LiveEvent }
  /** A worker took the lock: calls waiting for a writer go to it. */
  | { readonly t: 'writer' };

interface Pending {
  readonly method: string;
  readonly args: readonly unknown[];
  readonly resolve: (v: unknown) => void;
}

type Method = Exclude<keyof ConclaveApi, 'subscribe' | 'unsubscribe'>;

/**
 * A `ConclaveApi` for one tab's dedicated worker: the local `Host` once this worker holds the
 * writer lock, the writer's over the channel until then.
 */
export function electedHost(makeHost: () => Host): ConclaveApi & { readonly isWriter: () => boolean } {
  const channel = new BroadcastChannel(CHANNEL);
  const self = Math.random().toString(36).slice(2);
  let seq = 0;
  let host: Host | undefined;
  const pending = new Map<string, Pending>();
  const listeners = new Map<number, (e: LiveEvent) => void>();
  let nextListener = 1;

  const dispatch = (e: LiveEvent) => {
    for (const l of listeners.values()) {
      try {
        l(e);
      } catch {
        // The tab is going away.
      }
    }
  };

  const send = (m: Message) => {
    channel.postMessage(m);
  };

  channel.onmessage = (ev: MessageEvent<Message>) => {
    const m = ev.data;
    if (m.t === 'call') {
      if (host === undefined) return;
      const h = host as unknown as Record<string, (...a: readonly unknown[]) => Promise<unknown>>;
      const fn = h[m.method];
      if (typeof fn !== 'function') return;
      void fn.apply(host, [...m.args]).then((result) => {
        send({ t: 'reply', id: m.id, result });
      });
    } else if (m.t === 'reply') {
      const p = pending.get(m.id);
      if (p === undefined) return;
      pending.delete(m.id);
      p.resolve(m.result);
    } else if (m.t === 'event') {
      dispatch(m.event);
    } else {
      // A new writer: what waited for the old one (or for any) goes to it.
      for (const [id, p] of pending) send({ t: 'call', id, method: p.method, args: p.args });
    }
  };

  // Held until this worker ends (its tab closes): then the next worker in line gets it.
  void navigator.locks.request(LOCK, async () => {
    const h = makeHost();
    host = h;
    await h.subscribe((e) => {
      dispatch(e);
      send({ t: 'event', event: e });
    });
    send({ t: 'writer' });
    // Calls this tab made while it waited are answered here now.
    for (const [id, p] of [...pending]) {
      pending.delete(id);
      const fn = (h as unknown as Record<string, (...a: readonly unknown[]) => Promise<unknown>>)[p.method];
      if (typeof fn === 'function') p.resolve(await fn.apply(h, [...p.args]));
    }
    await new Promise<never>(() => undefined);
  });

  const call = (method: Method, args: readonly unknown[]): Promise<unknown> => {
    if (host !== undefined) {
      const fn = (host as unknown as Record<string, (...a: readonly unknown[]) => Promise<unknown>>)[method];
      if (typeof fn === 'function') return fn.apply(host, [...args]);
    }
    const id = `${self}-${seq++}`;
    return new Promise((resolve) => {
      pending.set(id, { method, args, resolve });
      send({ t: 'call', id, method, args });
    });
  };

  const api = new Proxy({} as ConclaveApi & { readonly isWriter: () => boolean }, {
    get(_t, prop) {
      if (prop === 'isWriter') return () => host !== undefined;
      if (prop === 'hostInfo') {
        return () =>
          Promise.resolve({ ok: true, value: { kind: 'dedicated', tabs: 1, writer: host !== undefined } });
      }
      if (prop === 'subscribe') {
        return (listener: (e: LiveEvent) => void) => {
          const id = nextListener++;
          listeners.set(id, listener);
          return Promise.resolve(id);
        };
      }
      if (prop === 'unsubscribe') {
        return (id: number) => {
          listeners.delete(id);
          return Promise.resolve();
        };
      }
      if (typeof prop !== 'string' || prop === 'then') return undefined;
      return (...args: unknown[]) => call(prop as Method, args);
    },
  });
  return api;
}
