// V8 flags for the Node processes that run a peer's acceptance pipeline: the `conclave` command
// (cli/bin/conclave.mjs) and the benchmarks that measure the pipeline as it runs there
// (scripts/bench-bundled.mjs for bench:core, bench/catchup-peer.ts for bench:relay's catch-up).
//
// --heap-growing-percent=100: after each full garbage collection the old generation may grow to
// twice what survived before the next one starts. A peer catching up on a Space keeps most of
// what it accepts (the store, the state), so the heap grows steadily, and V8's own choice of
// factor (close to 1.2 in bench:core's runs) started a full collection for every 10 MB or so
// that survived: two per 10,000 ops, each marking the whole heap on a background thread. With a
// factor of 2 a full collection comes once the heap has doubled, so marking costs per op about a
// fifth as much; the price is up to twice the live heap held between collections (V8 itself picks
// up to 4 when it judges the heap cheap to grow). bench:core, 10k runs, 2026-11-27: garbage
// collection 530–715 ms of CPU per run with two full collections, 69–121 ms with none; the
// V8 background threads 33–39 µs of CPU per op against 14–17.
export const NODE_HOST_FLAGS = ['--heap-growing-percent=100'];
