/**
 * Child process of the crash-safety test in store.test.ts (not a module of the relay).
 * Usage: `node --import tsx relay/src/store-crash.child.ts DIR`
 *
 * Opens a RelayStore in DIR and appends distinct messages to a few addresses as fast as it can,
 * 256 in flight, until MAX_APPENDS. Each acknowledgement is printed as one stdout line
 * `<address index> <seq> <sha256 hex>` only AFTER its append resolved, so every printed line is a
 * write the store promised was durable. The test kills this process with SIGKILL mid-run.
 */
import { randomBytes } from 'node:crypto';
import { toHex } from '../../shared/src/protocol/ids.js';
import { RelayStore } from './store.js';

/** Appends, in total, before exiting normally (the test kills the process long before). */
const MAX_APPENDS = 200_000;
const IN_FLIGHT = 256;
/** Addresses written round-robin; the test derives the same ones from their index. */
export const CRASH_ADDRESS_COUNT = 4;

export function crashAddress(index: number): Uint8Array {
  const a = new Uint8Array(32);
  a.fill(0xc0);
  a[0] = index;
  return a;
}

function main(): void {
  const dir = process.argv[2];
  if (dir === undefined) throw new Error('usage: store-crash.child.ts DIR');
  const store = RelayStore.open(dir, {
    retentionMs: Number.MAX_SAFE_INTEGER,
    maxMailboxBytes: Number.MAX_SAFE_INTEGER,
    maxBlobBytesPerOwner: 0,
    maxBlobStoreBytes: 0,
  });
  let started = 0;
  let done = 0;
  const next = (): void => {
    if (started >= MAX_APPENDS) return;
    const i = started++;
    const index = i % CRASH_ADDRESS_COUNT;
    // Distinct content: the counter, then 64..1087 random bytes.
    const message = new Uint8Array(8 + 64 + (i % 1024));
    new DataView(message.buffer).setFloat64(0, i);
    message.set(randomBytes(message.length - 8), 8);
    store.append(crashAddress(index), message).then(
      (outcome) => {
        if (outcome.kind !== 'appended' || outcome.duplicate) throw new Error(`unexpected ${outcome.kind}`);
        process.stdout.write(`${index} ${outcome.seq} ${toHex(outcome.hash)}\n`);
        if (++done === MAX_APPENDS) store.close();
        next();
      },
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  for (let k = 0; k < IN_FLIGHT; k++) next();
}

if (process.argv[1]?.endsWith('store-crash.child.ts') === true) main();
