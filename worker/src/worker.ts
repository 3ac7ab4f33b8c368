/**
 * The worker's entry: one `Host` serving every tab through Comlink. As a SharedWorker (one per
 * origin) each connecting tab gets the API on its port; as a dedicated worker (where
 * SharedWorker is missing) the API is exposed on the worker itself.
 */
import * as Comlink from 'comlink';
import { Host } from './host.js';

const host = new Host();

interface ConnectEvent {
  readonly ports: readonly MessagePort[];
}
const scope = globalThis as unknown as {
  onconnect?: (e: ConnectEvent) => void;
  constructor: { name: string };
};

if (scope.constructor.name === 'SharedWorkerGlobalScope') {
  host.kind = 'shared';
  scope.onconnect = (e) => {
    const port = e.ports[0];
    if (port === undefined) return;
    host.tabs++;
    Comlink.expose(host, port);
  };
} else {
  host.tabs = 1;
  Comlink.expose(host);
}
