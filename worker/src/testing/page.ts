/**
 * The test page's script: connects to the worker and puts the API and the live events on
 * `window`, for Playwright to drive. Bundled by worker.test.ts.
 */
import { connect, onLive } from '../client.js';
import type { LiveEvent } from '../api.js';

// `?fallback`: a browser without SharedWorker (as Android WebView), to test the dedicated path.
if (location.search.includes('fallback')) Reflect.deleteProperty(globalThis, 'SharedWorker');
const api = connect('/worker.js');
const events: LiveEvent[] = [];
void onLive(api, (e) => {
  events.push(e);
});
Object.assign(globalThis, { conclave: api, liveEvents: events });
