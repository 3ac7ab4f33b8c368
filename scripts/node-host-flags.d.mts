/** V8 flags for the Node processes that run a peer's pipeline (see node-host-flags.mjs). */
export declare const NODE_HOST_FLAGS: readonly string[];
