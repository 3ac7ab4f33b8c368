import { runChunkStoreTests } from './chunkstore.conformance.js';
import { MemoryChunkMedium, memoryChunkStore } from './chunkstore.memory.js';

runChunkStoreTests('memory', () => {
  const medium = new MemoryChunkMedium();
  return () => Promise.resolve(memoryChunkStore(medium));
});
