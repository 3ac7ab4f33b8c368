/**
 * The worker's entry: one `Host` serving every tab through Comlink. As a SharedWorker (one per
 * origin) each connecting tab gets the API on its port; as a dedicated worker (where
 * SharedWorker is missing) each tab's worker exposes the elected writer's API (election.ts).
 */
import * as Comlink from 'comlink';
import { electedHost } from './election.js';
import { Host } from './host.js';

interface ConnectEvent {
  readonly ports: readonly MessagePort[];
}
const scope = globalThis as unknown as {
  onconnect?: (e: ConnectEvent) => void;
  constructor: { name: string };
};

if (scope.constructor.name === 'SharedWorkerGlobalScope') {
  const host = new Host();
  host.kind = 'shared';
  scope.onconnect = (e) => {
    const port = e.ports[0];
    if (port === undefined) return;
    host.tabs++;
    Comlink.expose(host, port);
  };
} else {
  // No SharedWorker here: this tab's dedicated worker, the writer only if elected (election.ts).
  Comlink.expose(electedHost(() => new Host()));
}
