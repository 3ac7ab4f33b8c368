/**
 * Codec benchmark: our canonical CBOR against cbor-x on a typical CreatePost op, and a run-time
 * demonstration of why cbor-x cannot be the canonical codec (floats for large integers, unsorted
 * map keys, lenient decoding). Every fact printed below is observed in this run, not asserted.
 *
 *   npx tsx bench/codec.bench.ts
 *
 * Each case calibrates a batch to about BATCH_MS, then BATCHES rounds run every case once and
 * each keeps its best batch; loops are capped at MAX_ITERATIONS, so a run takes about 10 s.
 * The last line is one JSON object with the headline numbers.
 */
import { performance } from 'node:perf_hooks';
import { Encoder, isNativeAccelerationEnabled } from 'cbor-x';
import { type CborValue, decode, encode, tryDecode } from '../shared/src/protocol/cbor.js';
import {
  type ChannelId,
  type DeviceId,
  type OpId,
  type PostId,
  type SpaceId,
  type UserId,
  toHex,
} from '../shared/src/protocol/ids.js';
import {
  type OpOf,
  CONTENT_NONCE_BYTES,
  CONTENT_TAG_BYTES,
  OP_VERSION,
  canonicalDeps,
  decodeOp,
  encodeContent,
  encodeOp,
} from '../shared/src/protocol/op.js';

const BATCH_MS = 400;
const BATCHES = 3;
const WARMUP_MS = 150;
const MAX_ITERATIONS = 5_000_000;

const cborx = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false });
// cbor-x types its results as `any`; name them `unknown` at the boundary.
const cborxEncode = (v: unknown): Uint8Array => cborx.encode(v);
const cborxDecode = (b: Uint8Array): unknown => cborx.decode(b) as unknown;

function filled(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 31 + i * 17) & 0xff;
  return out;
}

const TEXT =
  'Thanks, that fixed it! For the record: the relay was dropping sealed ops above the 4 KiB ' +
  'bucket because the padding check ran before decompression. Merci à tous — on se voit ' +
  'jeudi pour la démo 🎉. I pushed the patch to the shared branch; please review before ' +
  'Friday so we can tag 0.4.';

/**
 * A typical chat reply: ~300 bytes of mixed-script text, two deps, no attachments. The text
 * travels inside the sealed content, so the op holds that many opaque bytes.
 */
function typicalPost(): OpOf<'CreatePost'> {
  const content = encodeContent('CreatePost', { text: TEXT, body: null, attachments: [], collab: null });
  return {
    v: OP_VERSION,
    space: filled(16, 1) as SpaceId,
    kind: 'CreatePost',
    body: {
      post: filled(16, 2) as PostId,
      channel: filled(16, 3) as ChannelId,
      thread: null,
      parent: filled(16, 4) as PostId,
      collab: false,
      content: filled(CONTENT_NONCE_BYTES + content.length + CONTENT_TAG_BYTES, 12),
    },
    deps: canonicalDeps([filled(32, 5) as OpId, filled(32, 6) as OpId]),
    epoch: { epoch: 42, commitHash: filled(32, 7) },
    hlc: { wallMs: 1764100000000, counter: 3 },
    author: filled(32, 8) as DeviceId,
    cert: { user: filled(32, 9) as UserId, createdMs: 1763000000000, sig: filled(64, 10) },
    sig: filled(64, 11),
  };
}

let sink = 0;

interface Case {
  readonly label: string;
  readonly bytesPerOp: number;
  /** Returns something derived from its work, summed into `sink`, so the work cannot be elided. */
  readonly fn: () => number;
}

interface Rate {
  readonly perSec: number;
  readonly mbPerSec: number;
}

/** Iterations of `fn` for one batch of about BATCH_MS, measured after a warm-up. */
function calibrate(fn: () => number): number {
  let n = 0;
  const warmEnd = performance.now() + WARMUP_MS;
  while (performance.now() < warmEnd && n < MAX_ITERATIONS) {
    sink += fn();
    n++;
  }
  return Math.max(100, Math.min(MAX_ITERATIONS, Math.round((n / WARMUP_MS) * BATCH_MS)));
}

/**
 * Best rate of each case over BATCHES rounds. Rounds interleave the cases, so a burst of load on
 * a shared machine slows one batch of every case rather than every batch of one case.
 */
function measureAll(cases: readonly Case[]): Rate[] {
  const iterations = cases.map((c) => calibrate(c.fn));
  const best = cases.map(() => 0);
  for (let round = 0; round < BATCHES; round++) {
    cases.forEach((c, k) => {
      const n = iterations[k] ?? 0;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) sink += c.fn();
      best[k] = Math.max(best[k] ?? 0, (n / (performance.now() - t0)) * 1000);
    });
  }
  return cases.map((c, k) => {
    const perSec = best[k] ?? 0;
    const rate = { perSec: Math.round(perSec), mbPerSec: (perSec * c.bytesPerOp) / 1e6 };
    console.log(
      `  ${c.label.padEnd(34)} ${rate.perSec.toLocaleString('en-US').padStart(11)} ops/s ${rate.mbPerSec.toFixed(1).padStart(8)} MB/s`,
    );
    return rate;
  });
}

function ourVerdict(b: Uint8Array): string {
  const r = tryDecode(b);
  return r.ok ? `accepts -> ${show(r.value)}` : `rejects (${r.error.code})`;
}

function cborxVerdict(b: Uint8Array): { accepted: boolean; text: string } {
  try {
    return { accepted: true, text: `accepts -> ${show(cborxDecode(b))}` };
  } catch (e) {
    return { accepted: false, text: `rejects (${e instanceof Error ? e.message : String(e)})` };
  }
}

function show(v: unknown): string {
  if (v instanceof Map) {
    return `{${[...(v as Map<unknown, unknown>)].map(([k, x]) => `${show(k)}: ${show(x)}`).join(', ')}}`;
  }
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v instanceof Uint8Array) return `h'${toHex(v)}'`;
  if (v instanceof Date) return `Date ${v.toISOString()}`;
  // JSON.stringify returns undefined for undefined, functions and symbols, whatever its type says.
  const json = JSON.stringify(v) as string | undefined;
  return json ?? String(v);
}

function main(): void {
  const op = typicalPost();
  const ours = encodeOp(op);
  const wire = decode(ours);
  const theirs = cborxEncode(wire);

  console.log(
    `Conclave codec benchmark (Node ${process.version}, cbor-x native: ${String(isNativeAccelerationEnabled)})`,
  );
  console.log(
    `Typical CreatePost: ${new TextEncoder().encode(TEXT).length}-byte text sealed inside, ${op.deps.length} deps; ` +
      `our encoding ${ours.length} bytes, cbor-x's encoding of the same wire array ${theirs.length} bytes`,
  );

  console.log(`\nThroughput (best of ${BATCHES} interleaved batches):`);
  const n = ours.length;
  const [oursEnc, oursDec, xEnc, xDec] = measureAll([
    { label: 'ours    encode(wire)', bytesPerOp: n, fn: () => encode(wire).length },
    { label: 'ours    decode(bytes)', bytesPerOp: n, fn: () => (decode(ours) as CborValue[]).length },
    { label: 'cbor-x  encode(wire)', bytesPerOp: n, fn: () => cborxEncode(wire).length },
    { label: 'cbor-x  decode(bytes)', bytesPerOp: n, fn: () => (cborxDecode(ours) as unknown[]).length },
    { label: 'ours    encodeOp(op)  (typed)', bytesPerOp: n, fn: () => encodeOp(op).length },
    { label: 'ours    decodeOp(bytes) (validated)', bytesPerOp: n, fn: () => decodeOp(ours).deps.length },
  ]);
  if (oursEnc === undefined || oursDec === undefined || xEnc === undefined || xDec === undefined) {
    throw new Error('unreachable: one rate per case');
  }
  console.log(
    `  ratio cbor-x/ours: encode ${(xEnc.perSec / oursEnc.perSec).toFixed(2)}x, ` +
      `decode ${(xDec.perSec / oursDec.perSec).toFixed(2)}x`,
  );

  console.log('\nWhy cbor-x is not the canonical codec (observed now):');
  const ts = 1764100000000;
  const tsX = toHex(cborxEncode(ts));
  const tsOurs = toHex(encode(ts));
  const timestampIsFloat = tsX.startsWith('fb');
  console.log(`  1. integer ${ts} (a ms timestamp): cbor-x ${tsX}, ours ${tsOurs}`);
  console.log(
    `     -> cbor-x writes a ${timestampIsFloat ? 'float64 (major 7)' : 'non-float'}; our decoder ${ourVerdict(cborxEncode(ts))}`,
  );
  const sameOp = toHex(theirs) === toHex(ours);
  console.log(
    `     -> cbor-x bytes of this op ${sameOp ? 'equal' : 'differ from'} the canonical bytes` +
      (sameOp ? '' : `; our decoder on them: ${ourVerdict(theirs)}`),
  );
  const unsorted = new Map([
    [2, 1],
    [1, 2],
  ]);
  const mapX = toHex(cborxEncode(unsorted));
  const mapOurs = toHex(encode(unsorted));
  const sortsKeys = mapX === mapOurs;
  console.log(`  2. new Map([[2,1],[1,2]]): cbor-x ${mapX}, ours ${mapOurs}`);
  console.log(
    `     -> cbor-x ${sortsKeys ? 'sorts' : 'does not sort'} map keys (insertion order leaks into bytes)`,
  );
  console.log('  3. non-canonical and out-of-subset input:');
  const lenient: [string, string][] = [
    ['1817', 'uint 23 in non-shortest form'],
    ['9f0102ff', 'indefinite-length array'],
    ['a203040102', 'map keys out of order'],
    ['a201020103', 'duplicate map key'],
    ['f93c00', 'float16 1.0'],
    ['c11a514b67b0', 'tag 1 (epoch time)'],
  ];
  const accepted = new Map<string, boolean>();
  for (const [h, what] of lenient) {
    const bytes = new Uint8Array(h.length / 2).map((_, i) => parseInt(h.slice(i * 2, i * 2 + 2), 16));
    const x = cborxVerdict(bytes);
    accepted.set(h, x.accepted);
    console.log(
      `     ${h.padEnd(13)} ${what.padEnd(29)} cbor-x ${x.text.padEnd(40)} ours ${ourVerdict(bytes)}`,
    );
  }
  const acceptsNonCanonical = accepted.get('1817') === true && accepted.get('9f0102ff') === true;
  console.log(`  (checksum ${sink % 1000})`);

  console.log(
    JSON.stringify({
      oursEncodePerSec: oursEnc.perSec,
      oursDecodePerSec: oursDec.perSec,
      cborxEncodePerSec: xEnc.perSec,
      cborxDecodePerSec: xDec.perSec,
      cborxTimestampIsFloat: timestampIsFloat,
      cborxSortsMapKeys: sortsKeys,
      cborxAcceptsNonCanonical: acceptsNonCanonical,
    }),
  );
}

main();
