// The worker as the app builds it: the host (worker/src/worker.ts), with Automerge loaded the
// browser's way when a collaborative post is first met — the slim entry, and its wasm by URL.
import wasmUrl from '@automerge/automerge/automerge.wasm?url';
import { setAutomergeLoader } from '../../shared/src/core/collab.js';
import '../../worker/src/worker.js';

setAutomergeLoader(async () => {
  const am = await import('@automerge/automerge/slim');
  await am.initializeWasm(wasmUrl);
  return am;
});
