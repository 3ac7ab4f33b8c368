export * from './ids.js';
export * from './op.js';
export * from './limits.js';
export * from './errors.js';
export * from './cbor.js';
export * from './seal.js';
