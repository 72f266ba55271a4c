/**
 * Preloaded into the daemon by the scale bench (`NODE_OPTIONS="--expose-gc
 * --require heap-probe.js"`): on SIGUSR2 it runs a full garbage collection
 * and writes `process.memoryUsage()` as JSON to the file named by
 * GKD_BENCH_HEAP_FILE. RSS alone keeps whatever the V8 heap once grew to;
 * the heap used right after a full collection is what the daemon actually
 * retains, so state kept per instance or per call shows there.
 */
import { renameSync, writeFileSync } from 'node:fs';

const file = process.env.GKD_BENCH_HEAP_FILE;
if (file !== undefined && file !== '') {
  process.on('SIGUSR2', () => {
    (globalThis as { gc?: () => void }).gc?.();
    // Written whole, then renamed: the bench polls for the file and must never read half of it.
    writeFileSync(`${file}.tmp`, JSON.stringify(process.memoryUsage()));
    renameSync(`${file}.tmp`, file);
  });
}
