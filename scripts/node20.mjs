// Node 20 lacks what libp2p 3 expects from Node 22: `Promise.withResolvers`. Loaded with
// `node --import ./scripts/node20.mjs` before anything that imports libp2p.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
